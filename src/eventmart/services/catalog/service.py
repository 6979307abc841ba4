"""catalog: composition root."""

from __future__ import annotations

from eventmart.contracts.catalog import ProductAdded, ProductPriceChanged
from eventmart.demo import demo_products
from eventmart.platform.infra import Platform
from eventmart.platform.runtime import Service, service_app
from eventmart.platform.store import ServiceStore
from eventmart.services.catalog.adapters import ProductTable
from eventmart.services.catalog.api import added_event, router
from eventmart.services.catalog.domain import Product

NAME = "catalog"


def build(platform: Platform) -> Service:
    store = ServiceStore(platform.database(NAME), migrations=NAME)
    products = ProductTable(store.metadata)
    app = service_app(NAME, platform.settings)
    service = Service(name=NAME, store=store, app=app, produces=[ProductAdded, ProductPriceChanged])
    app.include_router(router(service, products))

    def seed() -> None:
        """First start with demo data: add the demo catalog (events go out via the outbox)."""
        if not platform.settings.demo_data:
            return
        with service.uow() as uow:
            if products.count(uow.conn):
                return
            items = [
                Product(
                    product_id=d.product_id,
                    sku=d.sku,
                    name=d.name,
                    description=d.description,
                    category=d.category,
                    price_cents=d.price_cents,
                )
                for d in demo_products()
            ]
            products.add(uow.conn, items)
            for p in items:
                uow.publish(added_event(p))

    service.on_start.append(seed)
    return service
