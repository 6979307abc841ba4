"""The invariant checker run after every end-to-end test.

An auditor: it reads each service's state through that service's own internal API (and the
ordering event store for the list of orders), and asserts the rules that must hold once the
shop is quiet, whatever the test did:
- no stock below zero;
- reserved stock equals the sum held by orders still waiting for payment;
- every authorization ends captured (order confirmed) or voided/refunded (order cancelled);
- every order reaches a terminal or shipped state;
- each customer sees exactly their own orders.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from typing import Any, Protocol

import httpx
from sqlalchemy import select

from eventmart.platform.settings import Settings
from eventmart.platform.store import ServiceStore
from eventmart.services.ordering.adapters import OrderRepository
from eventmart.services.ordering.domain import Order
from tests.e2e.client import TERMINAL_OR_SHIPPED, Shopper
from tests.e2e.shop import Shop

PENDING_PAYMENT = {"PENDING", "STOCK_RESERVED", "PAYMENT_AUTHORIZED"}
PAID = {"CONFIRMED", "SHIPPED", "DELIVERED"}


class AuditedShop(Protocol):
    """What the checker needs of a running shop: its settings (service URLs), ordering's
    orders, a way to wait until it is quiet, and an administrator's credentials. `Shop`
    (every service in this process) and the system tests' shop of OS processes both
    provide it."""

    @property
    def settings(self) -> Settings: ...

    def orders(self) -> dict[str, Order]: ...

    def quiesce(self, timeout_s: float = 30.0) -> None: ...

    def admin_headers(self) -> dict[str, str]: ...


def orders_in_store(store: ServiceStore) -> dict[str, Order]:
    """Every order in ordering's event store, folded from its stream: id -> Order."""
    repo = OrderRepository(store)
    events = store.events.events
    with store.db.read() as conn:
        ids = [
            row[0][len("order-") :]
            for row in conn.execute(
                select(events.c.stream_id).where(events.c.stream_id.like("order-%")).distinct()
            )
        ]
        loaded = {i: repo.load(conn, i) for i in ids}
    return {i: order for i, order in loaded.items() if order is not None}


def all_orders(shop: Shop) -> dict[str, Any]:
    """Every order ordering knows, folded from its event store: id -> Order."""
    store = shop.runtimes["ordering"].service.store
    assert store is not None
    return dict(orders_in_store(store))


class _InProcess:
    """`Shop` seen as an `AuditedShop`."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    @property
    def settings(self) -> Settings:
        return self.shop.settings

    def orders(self) -> dict[str, Order]:
        return all_orders(self.shop)

    def quiesce(self, timeout_s: float = 30.0) -> None:
        self.shop.quiesce(timeout_s)

    def admin_headers(self) -> dict[str, str]:
        return self.shop.admin_headers()


def _get(client: httpx.Client, url: str, **params: Any) -> Any:
    r = client.get(url, params=params)
    assert r.status_code == 200, f"{url}: {r.status_code} {r.text}"
    return r.json()


def check_invariants(
    shop: Shop | AuditedShop, shoppers: list[Shopper], settle_s: float = 30.0
) -> None:
    """Wait until the shop is quiet and every order settled, then assert the rules."""
    audited: AuditedShop = _InProcess(shop) if isinstance(shop, Shop) else shop
    # Let deadlines, shipping timers and the read side finish, then look.
    deadline = time.monotonic() + settle_s
    while True:
        audited.quiesce(timeout_s=max(1.0, deadline - time.monotonic()))
        orders = audited.orders()
        open_orders = [o for o in orders.values() if o.status.value not in TERMINAL_OR_SHIPPED]
        if not open_orders:
            break
        assert time.monotonic() < deadline, (
            "orders stuck outside a terminal or shipped state: "
            + ", ".join(f"{o.order_id}={o.status.value}" for o in open_orders)
        )
        time.sleep(0.1)
    audited.quiesce()
    s = audited.settings
    headers = audited.admin_headers()
    with httpx.Client(headers=headers, timeout=10) as c:
        # -- stock ------------------------------------------------------------------
        product_ids: list[str] = []
        page = 1
        while True:
            data = _get(c, f"{s.service_url('catalog')}/products", page=page, page_size=100)
            product_ids += [p["product_id"] for p in data["items"]]
            if page * 100 >= data["total"]:
                break
            page += 1
        levels: dict[str, dict[str, int]] = {}
        for i in range(0, len(product_ids), 50):
            chunk = product_ids[i : i + 50]
            r = c.get(
                f"{s.service_url('inventory')}/stock", params=[("product_id", pid) for pid in chunk]
            )
            assert r.status_code == 200, r.text
            for level in r.json():
                levels[level["product_id"]] = level
        for pid, level in levels.items():
            assert level["on_hand"] >= 0 and level["reserved"] >= 0 and level["available"] >= 0, (
                f"negative stock for {pid}: {level}"
            )
            assert level["available"] == level["on_hand"] - level["reserved"], level
        held: dict[str, int] = defaultdict(int)
        for order_id, order in orders.items():
            reservation = c.get(f"{s.service_url('inventory')}/reservations/{order_id}")
            if reservation.status_code == 404:
                continue
            for line in reservation.json()["lines"]:
                if line["state"] == "reserved":
                    assert order.status.value in PENDING_PAYMENT, (
                        f"order {order_id} is {order.status.value} but still holds stock"
                    )
                    held[line["product_id"]] += line["quantity"]
                if line["state"] == "committed":
                    assert order.status.value in PAID, (
                        f"order {order_id} is {order.status.value} but its stock was sold"
                    )
        for pid, level in levels.items():
            assert level["reserved"] == held.get(pid, 0), (
                f"{pid}: reserved {level['reserved']} but pending orders hold {held.get(pid, 0)}"
            )

        # -- payments ---------------------------------------------------------------
        for order_id, order in orders.items():
            r = c.get(f"{s.service_url('payment')}/payments/{order_id}")
            status = order.status.value
            if r.status_code == 404:
                assert status == "CANCELLED" and order.reason in {
                    "OUT_OF_STOCK",
                    "CUSTOMER_CANCELLED",
                }, f"order {order_id} is {status} ({order.reason}) with no payment"
                continue
            payment = r.json()["status"]
            assert payment not in {"AUTHORIZED", "PENDING"}, (
                f"payment of order {order_id} left {payment} (order {status})"
            )
            if payment == "CAPTURED":
                assert status in PAID, f"order {order_id} is {status} but its payment was captured"
            else:
                assert status == "CANCELLED", (
                    f"order {order_id} is {status} but its payment is {payment}"
                )
            if status in PAID:
                assert payment == "CAPTURED", f"order {order_id} is {status}, payment {payment}"

    # -- each customer sees exactly their own orders ----------------------------------
    rng = random.Random(len(shoppers))
    for shopper in shoppers:
        assert shopper.my_orders() == set(shopper.orders), (
            f"{shopper.email} sees {shopper.my_orders()} but placed {shopper.orders}"
        )
        # Reading someone else's order by id is "not found" (a sample, not all pairs).
        others = [o for other in shoppers if other is not shopper for o in other.orders]
        for order_id in rng.sample(others, min(3, len(others))):
            assert shopper.order(order_id).status_code == 404
