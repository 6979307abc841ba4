"""catalog: products, categories and prices."""

from __future__ import annotations

from eventmart.platform.messages import Event


class CatalogEvent(Event, frozen=True, kw_only=True):
    abstract = True
    namespace = "eventmart.catalog"
    topic = "catalog.events"
    key_field = "product_id"


class ProductAdded(CatalogEvent, frozen=True, kw_only=True):
    product_id: str
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    currency: str = "USD"
    image: str = ""


class ProductPriceChanged(CatalogEvent, frozen=True, kw_only=True):
    product_id: str
    old_price_cents: int
    new_price_cents: int
