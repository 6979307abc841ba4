"""The catalog's rules: what a valid product and a valid price are."""

from __future__ import annotations

from dataclasses import dataclass

MAX_PRICE_CENTS = 10_000_000


class CatalogError(ValueError):
    """A request the catalog refuses; the message names the field."""


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    currency: str = "USD"
    image: str = ""


def check_price(price_cents: int) -> int:
    if price_cents <= 0:
        raise CatalogError("price_cents: must be greater than zero")
    if price_cents > MAX_PRICE_CENTS:
        raise CatalogError(f"price_cents: must be at most {MAX_PRICE_CENTS}")
    return price_cents
