"""Value types shared by several contexts' messages (not messages themselves)."""

from __future__ import annotations

import msgspec


class OrderLine(msgspec.Struct, frozen=True, kw_only=True):
    """A product in an order, with the unit price captured from the catalog at checkout."""

    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price_cents: int


class StockLine(msgspec.Struct, frozen=True, kw_only=True):
    product_id: str
    quantity: int


class Address(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    line1: str
    city: str
    postal_code: str
    country: str
    line2: str = ""
