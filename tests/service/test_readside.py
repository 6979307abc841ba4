"""readside: contract events become views, republished events change nothing, and a
rebuild from the log gives identical views, with the service stopped or running."""

from __future__ import annotations

import re
from typing import Any

from eventmart.contracts.basket import BasketCheckedOut
from eventmart.contracts.catalog import ProductAdded, ProductPriceChanged
from eventmart.contracts.common import Address, OrderLine
from eventmart.contracts.inventory import StockLevelChanged
from eventmart.contracts.ordering import (
    OrderCancelled,
    OrderConfirmed,
    OrderDelivered,
    OrderPaymentAuthorized,
    OrderPlaced,
    OrderShipped,
    OrderStockReserved,
)
from eventmart.platform.infra import Platform
from eventmart.platform.messages import Message
from eventmart.platform.settings import Settings
from eventmart.readside.replay import replay
from eventmart.readside.views import PROJECTIONS, open_view_store
from tests.service.harness import ServiceHarness, running

ADDRESS = Address(name="Ada", line1="1 Loop St", city="Lyon", postal_code="69001", country="FR")
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

Snapshot = dict[str, dict[str, list[dict[str, Any]]]]


def catalog() -> list[Message]:
    """Eight products in two categories; one stock level arrives before its product."""
    out: list[Message] = [StockLevelChanged(product_id="p-7", on_hand=3, reserved=0, available=3)]
    for n in range(8):
        category = "kitchen" if n < 5 else "garden"
        out.append(
            ProductAdded(
                product_id=f"p-{n}",
                sku=f"SKU-{n}",
                name=f"{'Enamel Kettle' if n < 5 else 'Folding Trowel'} {n}",
                description=f"item number {n}",
                category=category,
                price_cents=1000 + n,
            )
        )
    out += [
        ProductPriceChanged(product_id="p-1", old_price_cents=1001, new_price_cents=899),
        StockLevelChanged(product_id="p-1", on_hand=10, reserved=2, available=8),
        StockLevelChanged(product_id="p-2", on_hand=1, reserved=1, available=0),
    ]
    return out


def order_life(order_id: str, customer_id: str, cancel: bool = False) -> list[Message]:
    lines = [
        OrderLine(product_id="p-1", sku="SKU-1", name="Enamel Kettle 1", quantity=2,
                  unit_price_cents=899),
        OrderLine(product_id="p-5", sku="SKU-5", name="Folding Trowel 5", quantity=1,
                  unit_price_cents=1005),
    ]  # fmt: skip
    ids = {"order_id": order_id, "customer_id": customer_id}
    out: list[Message] = [
        BasketCheckedOut(
            **ids, lines=lines, total_cents=2803, shipping_address=ADDRESS, card_token="tok_visa"
        ),
        OrderPlaced(**ids, version=1, lines=lines, total_cents=2803, shipping_address=ADDRESS),
        OrderStockReserved(**ids, version=2),
    ]
    if cancel:
        return [
            *out,
            OrderCancelled(**ids, version=3, reason="PAYMENT_DECLINED", detail="card declined"),
        ]
    return [
        *out,
        OrderPaymentAuthorized(**ids, version=3, authorization_id=f"auth-{order_id}"),
        OrderConfirmed(**ids, version=4, total_cents=2803),
        OrderShipped(**ids, version=5, shipment_id=f"s-{order_id}"),
        OrderDelivered(**ids, version=6, shipment_id=f"s-{order_id}"),
    ]


def shop_history() -> list[Message]:
    return [
        *catalog(),
        *order_life("o-1", "ada"),
        *order_life("o-2", "ada", cancel=True),
        *order_life("o-3", "bob"),
    ]


def settled(h: ServiceHarness) -> list[dict[str, Any]]:
    """Wait until every projection has read the whole log; return /projections."""

    def check() -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = h.client.get("/projections").json()
        assert [r["lag"] for r in rows] == [0] * len(PROJECTIONS), rows
        return rows

    result: list[dict[str, Any]] = h.eventually(check)
    return result


def status_of(h: ServiceHarness, order_id: str) -> str | None:
    status: str | None = h.client.get(f"/orders/{order_id}").json().get("status")
    return status


def snapshot(platform: Platform) -> Snapshot:
    views = open_view_store(platform)
    return {p: views.snapshot(p) for p in PROJECTIONS}


def rebuild_all(settings: Settings, generation: int = 2) -> dict[str, list[tuple[int, int]]]:
    """`eventmart replay` for every projection, as another process would run it."""
    platform = Platform(settings)
    try:
        progress: dict[str, list[tuple[int, int]]] = {}
        for p in PROJECTIONS:
            seen: list[tuple[int, int]] = []

            def report(done: int, total: int, seen: list[tuple[int, int]] = seen) -> None:
                seen.append((done, total))

            result = replay(platform, p, report)
            assert (result.generation, result.group) == (generation, f"readside.{p}.g{generation}")
            progress[p] = seen
        return progress
    finally:
        platform.close()


def test_events_become_order_and_product_views(settings: Settings) -> None:
    with running("readside", settings) as h:
        h.publish(*shop_history())
        settled(h)

        delivered = h.client.get("/orders/o-1").json()
        assert (delivered["status"], delivered["version"], delivered["total_cents"]) == (
            "DELIVERED",
            6,
            2803,
        )
        assert delivered["customer_id"] == "ada" and delivered["cancellation_reason"] is None
        assert delivered["items"][0] == {
            "product_id": "p-1",
            "sku": "SKU-1",
            "name": "Enamel Kettle 1",
            "quantity": 2,
            "unit_price_cents": 899,
        }
        timeline = delivered["timeline"]
        assert [(e["type"], e["status"]) for e in timeline] == [
            ("BasketCheckedOut", "PENDING"),
            ("OrderPlaced", "PENDING"),
            ("OrderStockReserved", "STOCK_RESERVED"),
            ("OrderPaymentAuthorized", "PAYMENT_AUTHORIZED"),
            ("OrderConfirmed", "CONFIRMED"),
            ("OrderShipped", "SHIPPED"),
            ("OrderDelivered", "DELIVERED"),
        ]
        assert all(ISO_UTC.match(e["at"]) for e in timeline)
        assert delivered["updated_at"] == timeline[-1]["at"]

        cancelled = h.client.get("/orders/o-2").json()
        assert (cancelled["status"], cancelled["cancellation_reason"]) == (
            "CANCELLED",
            "PAYMENT_DECLINED",
        )
        assert cancelled["cancellation_detail"] == "card declined"
        assert h.client.get("/orders/o-404").status_code == 404

        mine = h.client.get("/orders", params={"customer_id": "ada"}).json()
        assert mine["total"] == 2 and {o["id"] for o in mine["items"]} == {"o-1", "o-2"}
        # Both were placed within the same millisecond or so: newest first, then by id.
        assert [o["id"] for o in mine["items"]] in (["o-2", "o-1"], ["o-1", "o-2"])

        kettle = h.client.get("/products/p-1").json()
        assert (kettle["price_cents"], kettle["available"], kettle["in_stock"]) == (899, 8, True)
        sold_out = h.client.get("/products/p-2").json()
        assert (sold_out["available"], sold_out["in_stock"]) == (0, False)
        early_stock = h.client.get("/products/p-7").json()  # its level came first
        assert (early_stock["available"], early_stock["in_stock"]) == (3, True)
        unstocked = h.client.get("/products/p-0").json()
        assert (unstocked["available"], unstocked["in_stock"]) == (0, False)
        assert h.client.get("/products/p-404").status_code == 404


def test_paging_filtering_and_bad_input(settings: Settings) -> None:
    with running("readside", settings) as h:
        h.publish(*shop_history(), *order_life("o-4", "ada"), *order_life("o-5", "ada"))
        settled(h)

        page = h.client.get("/products", params={"category": "kitchen", "page_size": 2}).json()
        assert page["total"] == 5 and [p["sku"] for p in page["items"]] == ["SKU-0", "SKU-1"]
        last = h.client.get(
            "/products", params={"category": "kitchen", "page_size": 2, "page": 3}
        ).json()
        assert [p["sku"] for p in last["items"]] == ["SKU-4"]
        found = h.client.get("/products", params={"q": "TROWEL"}).json()
        assert found["total"] == 3 and all("Trowel" in p["name"] for p in found["items"])
        assert h.client.get("/products", params={"q": "number 6"}).json()["total"] == 1

        orders = h.client.get("/orders", params={"customer_id": "ada", "page_size": 3}).json()
        second = h.client.get(
            "/orders", params={"customer_id": "ada", "page_size": 3, "page": 2}
        ).json()
        assert orders["total"] == second["total"] == 4
        assert len(orders["items"]) == 3 and len(second["items"]) == 1
        assert {o["id"] for o in orders["items"] + second["items"]} == {"o-1", "o-2", "o-4", "o-5"}

        bad_queries: list[tuple[str, dict[str, str | int], str]] = [
            ("/products", {"page_size": 101}, "page_size"),
            ("/products", {"page_size": 0}, "page_size"),
            ("/products", {"page": 0}, "page"),
            ("/orders", {}, "customer_id"),
            ("/orders", {"customer_id": "ada", "page_size": 101}, "page_size"),
        ]
        for path, params, field in bad_queries:
            bad = h.client.get(path, params=params)
            assert bad.status_code == 422, (path, params)
            assert field in str(bad.json()["detail"]), (path, params)


def test_republished_events_change_nothing(settings: Settings) -> None:
    with running("readside", settings) as h:
        history = shop_history()
        h.publish(*history)
        settled(h)
        before = snapshot(h.platform)
        h.publish(*history)  # the same events again, with new message ids
        settled(h)
        assert snapshot(h.platform) == before


def test_a_restarted_service_carries_on_in_its_group(settings: Settings) -> None:
    """A stopped service leaves its groups, so a restart owns every partition at once."""
    with running("readside", settings) as h:
        h.publish(*order_life("o-1", "ada"))
        settled(h)
    with running("readside", settings) as h:
        h.publish(*order_life("o-2", "ada", cancel=True))
        h.eventually(lambda: status_of(h, "o-2") == "CANCELLED", timeout_s=5)
        assert status_of(h, "o-1") == "DELIVERED"
        assert [r["generation"] for r in settled(h)] == [1, 1]


def test_replay_with_the_service_stopped_gives_identical_views(settings: Settings) -> None:
    with running("readside", settings) as h:
        h.publish(*shop_history())
        settled(h)
        before = snapshot(h.platform)
    assert sum(len(rows) for tables in before.values() for rows in tables.values()) > 20

    progress = rebuild_all(settings)
    for p in PROJECTIONS:
        done, total = progress[p][-1]
        assert done == total > 0 and progress[p][0][0] < total

    with running("readside", settings) as h:
        assert snapshot(h.platform) == before
        rows = settled(h)
        assert [(r["name"], r["generation"], r["group"]) for r in rows] == [
            (p, 2, f"readside.{p}.g2") for p in PROJECTIONS
        ]
        # The restarted service consumes in the new generation's group.
        h.publish(*order_life("o-9", "cy"))
        h.eventually(lambda: status_of(h, "o-9") == "DELIVERED")


def test_replay_while_the_service_runs_gives_identical_views(settings: Settings) -> None:
    with running("readside", settings) as h:
        h.publish(*shop_history())
        settled(h)
        before = snapshot(h.platform)
        new_group = "readside.orders.g2"

        def service_consumes_new_group() -> None:
            owners = {r.owner or "" for r in h.platform.bus.lag(new_group)}
            assert any(o.startswith("readside-") and "replay" not in o for o in owners), owners

        calls: list[tuple[int, int]] = []

        def with_live_traffic(done: int, total: int) -> None:
            """On the rebuild's first report: orders keep coming, and the running service
            joins the new group, so both consume it at once."""
            calls.append((done, total))
            if len(calls) == 1:
                h.publish(*order_life("o-8", "cy"))
                h.eventually(service_consumes_new_group)

        platform = Platform(settings)
        try:
            replay(platform, "orders", with_live_traffic)
            replay(platform, "products", None)
        finally:
            platform.close()
        rows = settled(h)
        assert [r["group"] for r in rows] == [f"readside.{p}.g2" for p in PROJECTIONS]
        assert status_of(h, "o-8") == "DELIVERED"
        live = snapshot(h.platform)
        assert live["products"] == before["products"]
        assert live["orders"] != before["orders"]  # o-8 is in

    # The views the service and the rebuild made together are those of a rebuild alone.
    rebuild_all(settings, generation=3)
    platform = Platform(settings)
    try:
        assert snapshot(platform) == live
    finally:
        platform.close()
