"""What each client type gets: the web sees everything; a phone gets compact cards.

Each shape comes with the pydantic models of its answers (`ShapeModels`): the routes
declare them as their `response_model`, so each BFF's OpenAPI schema says what it
returns. The web models allow extra fields (the web shape passes the services' answers
on as they are, and a field a service adds must not be lost); the mobile ones do not
(the mobile shape builds every field itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


# -- the web shape's answers ---------------------------------------------------------------
class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class WebProduct(_Open):
    """A product with its availability: catalog details plus live stock (inventory), or
    the read side's copy of both."""

    product_id: str
    sku: str
    name: str
    description: str = ""
    category: str
    price_cents: int
    currency: str = "USD"
    image: str = ""
    available: int | None = Field(
        default=None, description="units that can be ordered now; null when unknown"
    )
    in_stock: bool | None = Field(default=None, description="null when availability is unknown")
    notices: list[str] = Field(
        default_factory=list, description="what the answer lacks (a service was unavailable)"
    )


class WebProductPage(_Open):
    items: list[WebProduct]
    page: int
    page_size: int
    total: int
    notice: str | None = Field(
        default=None, description="set when availability is unknown (listed from the catalog)"
    )


class WebBasketLine(_Open):
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price_cents: int
    line_total_cents: int


class WebBasket(_Open):
    customer_id: str
    items: list[WebBasketLine]
    total_cents: int
    item_count: int


class OrderItem(_Open):
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price_cents: int


class TimelineEntry(_Open):
    type: str
    status: str | None = None
    at: str | int = Field(description="ISO 8601 (UTC) or epoch milliseconds")


class WebOrderSummary(_Open):
    """An order as the read side keeps it."""

    id: str
    customer_id: str
    status: str
    items: list[OrderItem]
    total_cents: int
    currency: str | None = None
    cancellation_reason: str | None = None
    cancellation_detail: str | None = None
    timeline: list[TimelineEntry]
    version: int | None = None
    updated_at: str | None = None


class WebOrder(WebOrderSummary):
    pending_projection: bool = Field(
        default=False,
        description="true right after checkout, before the read side has the order: the "
        "status comes from ordering and the timeline is still empty",
    )


class WebOrderPage(_Open):
    items: list[WebOrderSummary]
    page: int
    page_size: int
    total: int


# -- the mobile shape's answers ------------------------------------------------------------
class _Closed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MobileCard(_Closed):
    id: str
    name: str
    price_cents: int
    image: str
    in_stock: bool | None = Field(description="null when availability is unknown")


class MobileProduct(MobileCard):
    description: str
    available: int | None
    notices: list[str]


class MobileProductPage(_Closed):
    cards: list[MobileCard]
    page: int
    total: int
    notice: str | None = None


class MobileBasketLine(_Closed):
    id: str
    name: str
    qty: int
    line_total_cents: int


class MobileBasket(_Closed):
    lines: list[MobileBasketLine]
    total_cents: int


class MobileOrder(_Closed):
    id: str
    status: str
    total_cents: int
    items: int = Field(description="how many units the order holds")
    cancellation_reason: str | None
    updated: str | int | None
    pending_projection: bool = False


class MobileOrderLine(_Closed):
    id: str
    status: str
    total_cents: int


class MobileOrderPage(_Closed):
    orders: list[MobileOrderLine]
    page: int


@dataclass(frozen=True, slots=True)
class ShapeModels:
    """The response models of one shape, one per kind of answer."""

    product: type[BaseModel]
    product_page: type[BaseModel]
    basket: type[BaseModel]
    order: type[BaseModel]
    orders: type[BaseModel]


# -- the shapes ----------------------------------------------------------------------------
class WebShape:
    """The full answers, as the services give them."""

    models = ShapeModels(WebProduct, WebProductPage, WebBasket, WebOrder, WebOrderPage)

    def product(self, product: dict[str, Any]) -> dict[str, Any]:
        return product

    def product_page(self, page: dict[str, Any]) -> dict[str, Any]:
        return page

    def basket(self, basket: dict[str, Any]) -> dict[str, Any]:
        return basket

    def order(self, order: dict[str, Any]) -> dict[str, Any]:
        return order

    def orders(self, page: dict[str, Any]) -> dict[str, Any]:
        return page


def _card(p: dict[str, Any]) -> dict[str, Any]:
    available = p.get("available")
    return {
        "id": p["product_id"],
        "name": p["name"],
        "price_cents": p["price_cents"],
        "image": p.get("image", ""),
        "in_stock": None if available is None else bool(available),
    }


class MobileShape:
    """Trimmed for a phone: product cards, totals, and just the latest status."""

    models = ShapeModels(
        MobileProduct, MobileProductPage, MobileBasket, MobileOrder, MobileOrderPage
    )

    def product(self, product: dict[str, Any]) -> dict[str, Any]:
        card = _card(product)
        card["description"] = product.get("description", "")[:280]
        card["available"] = product.get("available")
        card["notices"] = product.get("notices", [])
        return card

    def product_page(self, page: dict[str, Any]) -> dict[str, Any]:
        out = {
            "cards": [_card(p) for p in page["items"]],
            "page": page["page"],
            "total": page["total"],
        }
        if "notice" in page:
            out["notice"] = page["notice"]
        return out

    def basket(self, basket: dict[str, Any]) -> dict[str, Any]:
        return {
            "lines": [
                {
                    "id": i["product_id"],
                    "name": i["name"],
                    "qty": i["quantity"],
                    "line_total_cents": i["line_total_cents"],
                }
                for i in basket["items"]
            ],
            "total_cents": basket["total_cents"],
        }

    def order(self, order: dict[str, Any]) -> dict[str, Any]:
        latest = order["timeline"][-1] if order.get("timeline") else None
        return {
            "id": order["id"],
            "status": order["status"],
            "total_cents": order["total_cents"],
            "items": sum(i["quantity"] for i in order.get("items", [])),
            "cancellation_reason": order.get("cancellation_reason"),
            "updated": latest["at"] if latest else None,
            "pending_projection": bool(order.get("pending_projection", False)),
        }

    def orders(self, page: dict[str, Any]) -> dict[str, Any]:
        return {
            "orders": [
                {"id": o["id"], "status": o["status"], "total_cents": o["total_cents"]}
                for o in page["items"]
            ],
            "page": page["page"],
        }
