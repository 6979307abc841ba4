"""End-to-end on both profiles, over the public web API: checkouts and their
outcomes, idempotency, concurrency on the last units, bad input. The invariant checker
runs after every test."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventmart.platform.settings import Settings
from tests.e2e.client import ADDRESS, TERMINAL_OR_SHIPPED, Shopper
from tests.e2e.invariants import check_invariants
from tests.e2e.shop import Shop, e2e_settings, running_shop

PAID = {"CONFIRMED", "SHIPPED", "DELIVERED"}


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory, profile: dict[str, Any]) -> Iterator[Shop]:
    base = Settings(data_dir=tmp_path_factory.mktemp("e2e") / "data", environment="test")
    with running_shop(e2e_settings(base, **profile)) as s:
        yield s


@pytest.fixture(scope="module")
def shoppers(shop: Shop) -> list[Shopper]:
    """The shoppers of one shop (one list per profile: their clients close with it)."""
    return []


@pytest.fixture(scope="module")
def web(shop: Shop) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop.web_url, timeout=15) as client:
        yield client


@pytest.fixture
def new_shopper(web: httpx.Client, shoppers: list[Shopper]) -> Iterator[Shopper]:
    shopper = Shopper(web).register()
    shoppers.append(shopper)
    yield shopper


@pytest.fixture(autouse=True)
def _invariants(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "shop" in request.fixturenames:
        check_invariants(request.getfixturevalue("shop"), request.getfixturevalue("shoppers"))


def _product_with_stock(shop: Shop, web: httpx.Client, units: int, price_cents: int = 1000) -> str:
    admin = shop.admin_headers()
    sku = f"E2E-{uuid.uuid4().hex[:8]}"
    r = web.post(
        "/api/admin/products",
        headers=admin,
        json={
            "sku": sku,
            "name": f"Limited {sku}",
            "category": "limited",
            "price_cents": price_cents,
        },
    )
    assert r.status_code == 201, r.text
    product_id = str(r.json()["product_id"])
    if units:
        received = web.post(
            f"/api/admin/inventory/{product_id}/receive", headers=admin, json={"quantity": units}
        )
        assert received.status_code == 200, received.text
    # The basket learns a product (and its price) from the catalog's events: a shopper can
    # add it once that event is consumed, as on a real shop a moment after it is listed.
    shop.quiesce()
    return product_id


def _available(web: httpx.Client, product_id: str) -> int:
    r = web.get(f"/api/products/{product_id}")
    assert r.status_code == 200, r.text
    return int(r.json()["available"])


def test_happy_path_confirms_and_ships(shop: Shop, new_shopper: Shopper, web: httpx.Client) -> None:
    found = new_shopper.products(q="kettle")
    assert found["total"] >= 1
    first, second = new_shopper.products(category="books")["items"][:2]
    stock_before = _available(web, first["product_id"])
    new_shopper.add(first["product_id"], 2)
    basket = new_shopper.add(second["product_id"], 1)
    expected_total = 2 * first["price_cents"] + second["price_cents"]
    assert basket["total_cents"] == expected_total
    order_id = new_shopper.checkout("tok_visa")
    assert new_shopper.basket()["items"] == []
    order = new_shopper.wait_for(order_id, PAID)
    assert order["total_cents"] == expected_total
    assert order["cancellation_reason"] is None
    final = new_shopper.wait_for(order_id, {"SHIPPED", "DELIVERED"})
    statuses = [t["status"] for t in final["timeline"]]
    steps = [s for i, s in enumerate(statuses) if i == 0 or statuses[i - 1] != s]
    assert steps[:4] == ["PENDING", "STOCK_RESERVED", "PAYMENT_AUTHORIZED", "CONFIRMED"]
    assert final["timeline"][0]["type"] == "BasketCheckedOut"
    assert _available(web, first["product_id"]) == stock_before - 2
    mail = httpx.get(
        f"{shop.settings.service_url('notification')}/mail",
        params={"order_id": order_id},
        timeout=5,
    ).json()
    assert any("confirmed" in m["subject"].lower() for m in mail)


def test_out_of_stock_cancels(shop: Shop, new_shopper: Shopper, web: httpx.Client) -> None:
    product_id = _product_with_stock(shop, web, units=1)
    new_shopper.add(product_id, 2)
    order_id = new_shopper.checkout()
    order = new_shopper.wait_for(order_id, {"CANCELLED"})
    assert order["cancellation_reason"] == "OUT_OF_STOCK"
    assert _available(web, product_id) == 1


def test_declined_card_cancels_and_releases_stock(
    shop: Shop, new_shopper: Shopper, web: httpx.Client
) -> None:
    product_id = _product_with_stock(shop, web, units=5)
    new_shopper.add(product_id, 3)
    order_id = new_shopper.checkout("tok_declined")
    order = new_shopper.wait_for(order_id, {"CANCELLED"})
    assert order["cancellation_reason"] == "PAYMENT_DECLINED"
    shop.quiesce()
    assert _available(web, product_id) == 5


def test_payment_timeout_cancels_and_compensates(
    shop: Shop, new_shopper: Shopper, web: httpx.Client
) -> None:
    product_id = _product_with_stock(shop, web, units=4)
    new_shopper.add(product_id, 4)
    order_id = new_shopper.checkout("tok_timeout")
    new_shopper.wait_for(order_id, {"STOCK_RESERVED"})
    assert _available(web, product_id) == 0  # held while payment is awaited
    order = new_shopper.wait_for(order_id, {"CANCELLED"}, timeout_s=20)
    assert order["cancellation_reason"] == "PAYMENT_TIMEOUT"
    shop.quiesce()
    assert _available(web, product_id) == 4
    payment = httpx.get(
        f"{shop.settings.service_url('payment')}/payments/{order_id}", timeout=5
    ).json()
    assert payment["status"] == "VOIDED"


def test_slow_card_still_confirms(shop: Shop, new_shopper: Shopper, web: httpx.Client) -> None:
    product_id = _product_with_stock(shop, web, units=2)
    new_shopper.add(product_id, 1)
    order_id = new_shopper.checkout("tok_slow")
    assert new_shopper.wait_for(order_id, PAID)["cancellation_reason"] is None


def test_retried_checkout_gives_one_order(
    shop: Shop, new_shopper: Shopper, web: httpx.Client
) -> None:
    product_id = _product_with_stock(shop, web, units=3)
    new_shopper.add(product_id, 1)
    key = uuid.uuid4().hex
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: new_shopper.checkout_response(key=key), range(4)))
    assert all(r.status_code == 202 for r in responses), [r.text for r in responses]
    order_ids = {r.json()["order_id"] for r in responses}
    assert len(order_ids) == 1
    order_id = new_shopper.checkout(key=key)  # and once more, later
    assert order_ids == {order_id}
    new_shopper.wait_for(order_id, PAID)
    assert _available(web, product_id) == 2


def test_fifty_shoppers_race_for_ten_units(
    shop: Shop, web: httpx.Client, shoppers: list[Shopper]
) -> None:
    product_id = _product_with_stock(shop, web, units=10)
    racers = [Shopper(web).register() for _ in range(50)]
    shoppers.extend(racers)
    for s in racers:
        s.add(product_id, 1)
    with ThreadPoolExecutor(16) as pool:
        order_ids = list(pool.map(lambda s: s.checkout(), racers))
    outcomes = [
        s.wait_for(o, TERMINAL_OR_SHIPPED | {"CONFIRMED"}, timeout_s=60)
        for s, o in zip(racers, order_ids, strict=True)
    ]
    paid = [o for o in outcomes if o["status"] in PAID]
    cancelled = [o for o in outcomes if o["status"] == "CANCELLED"]
    assert len(paid) == 10
    assert len(cancelled) == 40
    assert {o["cancellation_reason"] for o in cancelled} == {"OUT_OF_STOCK"}
    shop.quiesce()
    level = httpx.get(
        f"{shop.settings.service_url('inventory')}/stock/{product_id}", timeout=5
    ).json()
    assert (level["on_hand"], level["reserved"], level["available"]) == (0, 0, 0)


def test_bad_input_is_refused_and_changes_nothing(
    shop: Shop, new_shopper: Shopper, web: httpx.Client
) -> None:
    product = new_shopper.products(category="toys")["items"][0]
    new_shopper.add(product["product_id"], 1)
    before = new_shopper.basket()
    h = new_shopper.headers

    def refused(r: httpx.Response, status: int, word: str) -> None:
        assert r.status_code == status, r.text
        assert word in r.text, r.text

    refused(
        web.put(f"/api/basket/items/{product['product_id']}", json={"quantity": 0}, headers=h),
        422,
        "quantity",
    )
    refused(
        web.put(f"/api/basket/items/{product['product_id']}", json={"quantity": -3}, headers=h),
        422,
        "quantity",
    )
    refused(
        web.put("/api/basket/items/no-such-product", json={"quantity": 1}, headers=h),
        404,
        "product",
    )
    tampered = {"shipping_address": ADDRESS, "card_token": "tok_visa", "total_cents": 1}
    refused(
        web.post("/api/basket/checkout", json=tampered, headers={**h, "Idempotency-Key": "x1"}),
        422,
        "total_cents",
    )
    tampered_line = {"quantity": 1, "unit_price_cents": 1}
    refused(
        web.put(f"/api/basket/items/{product['product_id']}", json=tampered_line, headers=h),
        422,
        "unit_price_cents",
    )
    refused(
        web.post(
            "/api/basket/checkout",
            json={"shipping_address": ADDRESS, "card_token": "visa"},
            headers={**h, "Idempotency-Key": "x2"},
        ),
        422,
        "card_token",
    )
    refused(
        web.post(
            "/api/basket/checkout",
            content=b"{" + b" " * 100_000 + b"}",
            headers={**h, "Idempotency-Key": "x3", "Content-Type": "application/json"},
        ),
        413,
        "larger than",
    )
    refused(
        web.post(
            "/api/basket/checkout",
            json={"shipping_address": ADDRESS, "card_token": "tok_visa"},
            headers=h,
        ),
        422,  # the header is required in the schema: the 422 names it
        "Idempotency-Key",
    )
    assert web.get("/api/basket").status_code == 401
    assert new_shopper.basket() == before
    new_shopper.http.delete(f"/api/basket/items/{product['product_id']}", headers=h)
    refused(new_shopper.checkout_response(), 409, "empty")


def test_customer_cancel_before_shipping(tmp_path: Path, profile: dict[str, Any]) -> None:
    """A shop that ships slowly, so the order waits CONFIRMED long enough to cancel."""
    base = Settings(data_dir=tmp_path / "data", environment="test")
    with (
        running_shop(e2e_settings(base, shipping_dispatch_delay_s=60.0, **profile)) as slow_shop,
        httpx.Client(base_url=slow_shop.web_url, timeout=15) as web,
    ):
        shopper = Shopper(web).register()
        product_id = _product_with_stock(slow_shop, web, units=3)
        shopper.add(product_id, 2)
        order_id = shopper.checkout()
        shopper.wait_for(order_id, {"CONFIRMED"})
        assert _available(web, product_id) == 1
        r = web.post(f"/api/orders/{order_id}/cancel", headers=shopper.headers)
        assert r.status_code == 202, r.text
        order = shopper.wait_for(order_id, {"CANCELLED"})
        assert order["cancellation_reason"] == "CUSTOMER_CANCELLED"
        slow_shop.quiesce()
        assert _available(web, product_id) == 3
        payment = httpx.get(
            f"{slow_shop.settings.service_url('payment')}/payments/{order_id}", timeout=5
        ).json()
        assert payment["status"] == "REFUNDED"
        check_invariants(slow_shop, [shopper])
