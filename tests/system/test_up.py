"""`eventmart up` for real: the shop as OS processes under the supervisor.

A fresh data directory becomes a working shop; a checkout confirms; 30 shoppers check out
at once while ordering is killed with SIGKILL, and after the supervisor restarts it every
order is confirmed exactly once, paid exactly once, and the stock fell by exactly what was
sold; with `--instances ordering=2`, two ordering processes share the checkouts.
"""

from __future__ import annotations

import os
import re
import signal
import stat
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from eventmart.contracts.ordering import OrderConfirmed, OrderPlaced
from eventmart.contracts.payment import PaymentCaptured
from eventmart.platform.messages import Envelope
from eventmart.services import SERVICE_INDEX
from tests.e2e.client import Shopper
from tests.e2e.invariants import PAID, check_invariants
from tests.system.running import RunningShop, ShopOptions

pytestmark = [pytest.mark.system, pytest.mark.timeout(600)]

TWO_ORDERINGS = ShopOptions(instances=("ordering=2",))


@pytest.fixture
def web(eventmart: RunningShop) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=eventmart.web_url, timeout=30) as client:
        yield client


def product_with_stock(shop: RunningShop, web: httpx.Client, units: int, price: int) -> str:
    """A new product with `units` in stock, through the admin API (as the real admin)."""
    admin = shop.admin_headers()
    sku = f"SYS-{uuid.uuid4().hex[:8]}"
    r = web.post(
        "/api/admin/products",
        headers=admin,
        json={"sku": sku, "name": f"System {sku}", "category": "system", "price_cents": price},
    )
    assert r.status_code == 201, r.text
    product_id = str(r.json()["product_id"])
    r = web.post(
        f"/api/admin/inventory/{product_id}/receive", headers=admin, json={"quantity": units}
    )
    assert r.status_code == 200, r.text
    # The read side learns of the product from the log; baskets price from the catalog.
    deadline = time.monotonic() + 20
    while web.get(f"/api/products/{product_id}").json().get("available") != units:
        assert time.monotonic() < deadline, f"product {product_id} never showed {units} units"
        time.sleep(0.1)
    return product_id


def stock(shop: RunningShop, product_id: str) -> dict[str, int]:
    r = httpx.get(f"{shop.service_url('inventory')}/stock/{product_id}", timeout=10)
    assert r.status_code == 200, r.text
    return dict(r.json())


def register_many(web: httpx.Client, count: int) -> list[Shopper]:
    # A few at a time: identity spends ~0.15 s of CPU per argon2 hash; many concurrent
    # sign-ups overrun the gateway's downstream timeout and answer 503.
    with ThreadPoolExecutor(4) as pool:
        return list(pool.map(lambda _: Shopper(web).register(), range(count)))


def test_a_fresh_data_dir_becomes_a_running_shop(eventmart: RunningShop) -> None:
    with httpx.Client(timeout=5) as c:
        for name, url in eventmart.ready_urls().items():
            r = c.get(url)
            assert r.status_code == 200, f"{name}: {r.status_code} {r.text}"
            assert c.get(url.replace("/readyz", "/healthz")).status_code == 200, name
        subjects = c.get(f"{eventmart.registry_url}/subjects")
        assert subjects.status_code == 200, subjects.text
        assert "eventmart.ordering.OrderPlaced" in subjects.json()
        assert c.get(f"{eventmart.web_url}/").status_code == 200  # the storefront
    # One OS process per service, gateway and the registry, all children of the supervisor.
    services = Counter(child.service for child in eventmart.children())
    expected = Counter({"registry": 1, "web": 1, "mobile": 1, **dict.fromkeys(SERVICE_INDEX, 1)})
    assert services == expected
    out = eventmart.output()
    email, password = re.escape(eventmart.admin_email), re.escape(eventmart.admin_password)
    for printed in (
        rf"storefront\s+{eventmart.web_url}\s",
        rf"ops console\s+{eventmart.web_url}/ops\s",
        rf"admin login\s+{email} / {password}",
    ):
        assert re.search(printed, out), f"{printed!r} not in the output:\n{out}"
    credentials = eventmart.data_dir / "admin-credentials"
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    assert eventmart.admin_token()  # the printed login works


def test_a_web_checkout_confirms_and_ships(eventmart: RunningShop, web: httpx.Client) -> None:
    shopper = Shopper(web).register()
    assert shopper.products(q="kettle")["total"] >= 1  # the demo catalog is searchable
    product_id = product_with_stock(eventmart, web, units=10, price=2500)
    shopper.add(product_id, 3)
    order_id = shopper.checkout("tok_visa")
    order = shopper.wait_for(order_id, PAID, timeout_s=60)
    assert order["total_cents"] == 7500
    assert order["cancellation_reason"] is None
    shopper.wait_for(order_id, {"SHIPPED", "DELIVERED"}, timeout_s=60)
    level = stock(eventmart, product_id)
    assert (level["on_hand"], level["reserved"]) == (7, 0)
    check_invariants(eventmart, [shopper], settle_s=60)


def test_a_burst_of_checkouts_survives_ordering_killed(
    eventmart: RunningShop, web: httpx.Client
) -> None:
    units = 200
    products = [product_with_stock(eventmart, web, units, price=1000 + 100 * i) for i in range(3)]
    shoppers = register_many(web, 30)
    bought: dict[str, int] = defaultdict(int)
    for i, shopper in enumerate(shoppers):
        first, second = products[i % 3], products[(i + 1) % 3]
        shopper.add(first, 1 + i % 3)
        bought[first] += 1 + i % 3
        if i % 2:
            shopper.add(second, 2)
            bought[second] += 2
    [victim] = eventmart.pids("ordering")
    began = time.monotonic()

    # All 30 check out at once; ordering is killed once a third of them are through, i.e.
    # while it is consuming the first checkouts and the rest keep arriving.
    start = threading.Barrier(len(shoppers) + 1)
    done = threading.Semaphore(0)
    killed_at: list[float] = []

    def checkout(shopper: Shopper) -> httpx.Response:
        start.wait()
        try:
            return shopper.checkout_response("tok_visa")
        finally:
            done.release()

    def killer() -> None:
        start.wait()
        for _ in range(10):
            done.acquire()
        os.kill(victim, signal.SIGKILL)
        killed_at.append(time.monotonic())

    with ThreadPoolExecutor(len(shoppers) + 1) as pool:
        kill = pool.submit(killer)
        responses = list(pool.map(checkout, shoppers))
        kill.result(timeout=60)
    assert [r.status_code for r in responses] == [202] * len(shoppers), [
        r.text for r in responses if r.status_code != 202
    ]
    order_ids = [str(r.json()["order_id"]) for r in responses]
    for shopper, order_id in zip(shoppers, order_ids, strict=True):
        shopper.orders.append(order_id)
    assert len(set(order_ids)) == len(shoppers)

    # The supervisor notices and starts a new ordering process, which becomes ready.
    [successor] = eventmart.wait_for_pids("ordering", 1, exclude={victim}, timeout_s=30)
    eventmart.wait_ready(["ordering"], timeout_s=60)
    restarted_after = time.monotonic() - killed_at[0]
    out = eventmart.output()
    assert "ordering exited (code -9)" in out, out[-2000:]
    assert "ordering restarted (restart #1)" in out, out[-2000:]
    assert successor != victim

    # Every order goes through, once.
    for shopper, order_id in zip(shoppers, order_ids, strict=True):
        shopper.wait_for(order_id, PAID, timeout_s=120)
    check_invariants(eventmart, shoppers, settle_s=90)
    settled = time.monotonic()

    orders = eventmart.orders()
    ours = {s.user_id for s in shoppers}
    assert {oid for oid, o in orders.items() if o.customer_id in ours} == set(order_ids)
    counts = eventmart.order_event_counts()
    for order_id in order_ids:
        assert counts[order_id][OrderPlaced.type_name()] == 1, (order_id, counts[order_id])
        assert counts[order_id][OrderConfirmed.type_name()] == 1, (order_id, counts[order_id])
        assert orders[order_id].status.value in PAID

    captures: dict[str, set[str]] = defaultdict(set)
    amounts: dict[str, int] = {}
    codec = eventmart.platform.codec
    for record in eventmart.topic_records(PaymentCaptured.topic):
        env = Envelope.from_record(record)
        if env.type == PaymentCaptured.type_name() and record.key in order_ids:
            captures[record.key].add(env.message_id)
            captured = codec.decode(env.type, record.value)
            assert isinstance(captured, PaymentCaptured)
            amounts[record.key] = captured.amount_cents
    assert {oid: len(ids) for oid, ids in captures.items()} == dict.fromkeys(order_ids, 1)
    for order_id in order_ids:
        assert amounts[order_id] == orders[order_id].total_cents

    for product_id in products:
        level = stock(eventmart, product_id)
        assert (level["on_hand"], level["reserved"]) == (units - bought[product_id], 0), (
            product_id,
            level,
            bought[product_id],
        )
    print(
        f"ordering ready {restarted_after:.1f}s after SIGKILL; "
        f"burst to all paid and audited in {settled - began:.1f}s"
    )


@pytest.mark.parametrize("eventmart", [TWO_ORDERINGS], indirect=True, ids=["ordering=2"])
def test_two_ordering_processes_share_the_checkouts(
    eventmart: RunningShop, web: httpx.Client
) -> None:
    pids = eventmart.pids("ordering")
    assert len(pids) == 2, eventmart.children()
    bus = eventmart.platform.bus

    def owners() -> dict[tuple[str, int], tuple[str | None, int]]:
        return {
            (r.topic, r.partition): (r.owner, r.committed)
            for r in bus.lag("ordering")
            if r.topic == "basket.events"
        }

    # Both members hold a share of basket.events (the group settled after start-up).
    deadline = time.monotonic() + 30
    while len({owner for owner, _ in owners().values() if owner}) < 2:
        assert time.monotonic() < deadline, f"ordering's partitions: {owners()}"
        time.sleep(0.2)
    before = owners()

    product_id = product_with_stock(eventmart, web, units=100, price=1500)
    shoppers = register_many(web, 16)
    for shopper in shoppers:
        shopper.add(product_id, 1)
    with ThreadPoolExecutor(16) as pool:
        order_ids = list(pool.map(lambda s: s.checkout("tok_visa"), shoppers))
    for shopper, order_id in zip(shoppers, order_ids, strict=True):
        shopper.wait_for(order_id, PAID, timeout_s=60)
    after = owners()

    # Credit each member with the partitions it held throughout and moved forward.
    consumed: dict[str, int] = defaultdict(int)
    for tp, (owner, committed) in after.items():
        if owner and before.get(tp, (None, 0))[0] == owner:
            consumed[owner] += committed - before[tp][1]
    assert len([m for m, n in consumed.items() if n > 0]) == 2, (before, after)
    assert sorted(eventmart.pids("ordering")) == sorted(pids)  # nobody crashed meanwhile
    check_invariants(eventmart, shoppers, settle_s=60)
    level = stock(eventmart, product_id)
    assert (level["on_hand"], level["reserved"]) == (100 - len(shoppers), 0)
