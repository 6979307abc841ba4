"""What each client type gets: the web sees everything; a phone gets compact cards."""

from __future__ import annotations

from typing import Any


class WebShape:
    """The full answers, as the services give them."""

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
        }

    def orders(self, page: dict[str, Any]) -> dict[str, Any]:
        return {
            "orders": [
                {"id": o["id"], "status": o["status"], "total_cents": o["total_cents"]}
                for o in page["items"]
            ],
            "page": page["page"],
        }
