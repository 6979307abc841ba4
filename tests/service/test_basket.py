"""basket: prices from the catalog's events, quantities, limits, tampering, and a
checkout that happens once per Idempotency-Key."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from eventmart.contracts.basket import BasketCheckedOut
from eventmart.contracts.catalog import ProductAdded, ProductPriceChanged
from eventmart.contracts.common import Address, OrderLine
from eventmart.platform.dlq import DeadLetters
from eventmart.platform.messages import new_id
from eventmart.platform.settings import Settings
from eventmart.services.basket.adapters import CheckoutTable
from eventmart.services.basket.domain import MAX_DISTINCT_PRODUCTS
from tests.service.harness import ServiceHarness, running

ADDRESS = {
    "name": "Ann Lee",
    "line1": "1 Main St",
    "city": "Springfield",
    "postal_code": "12345",
    "country": "US",
}
CHECKOUT = {"shipping_address": ADDRESS, "card_token": "tok_visa"}


def _product(sku: str, price_cents: int) -> ProductAdded:
    return ProductAdded(
        product_id=new_id(),
        sku=sku,
        name=f"Product {sku}",
        description="",
        category="home",
        price_cents=price_cents,
    )


def _price_seen(h: ServiceHarness, product_id: str) -> int | None:
    assert h.service.store is not None
    with h.service.store.db.read() as conn:
        return conn.execute(
            text("SELECT price_cents FROM products WHERE product_id = :p"), {"p": product_id}
        ).scalar()


def _stock(h: ServiceHarness, *products: ProductAdded) -> None:
    """Publish products as the catalog would and wait until the basket's price list has them."""
    h.publish(*products)
    h.eventually(lambda: all(_price_seen(h, p.product_id) is not None for p in products))


def _put(h: ServiceHarness, auth: dict[str, str], product_id: str, quantity: Any) -> Any:
    return h.client.put(f"/basket/items/{product_id}", json={"quantity": quantity}, headers=auth)


def _checkout(h: ServiceHarness, auth: dict[str, str], key: str, body: Any = None) -> Any:
    return h.client.post(
        "/basket/checkout", json=body or CHECKOUT, headers={**auth, "Idempotency-Key": key}
    )


@pytest.fixture
def h(settings: Settings) -> Iterator[ServiceHarness]:
    with running("basket", settings) as harness:
        yield harness


def test_prices_come_from_catalog_events(h: ServiceHarness) -> None:
    kettle, mug = _product("KET-1", 2_500), _product("MUG-1", 799)
    _stock(h, kettle, mug)
    auth = h.token()
    assert _put(h, auth, kettle.product_id, 2).status_code == 200
    basket = _put(h, auth, mug.product_id, 3).json()
    assert [(i["sku"], i["quantity"], i["unit_price_cents"]) for i in basket["items"]] == [
        ("KET-1", 2, 2_500),
        ("MUG-1", 3, 799),
    ]
    assert (basket["total_cents"], basket["item_count"]) == (2 * 2_500 + 3 * 799, 5)

    h.publish(
        ProductPriceChanged(
            product_id=kettle.product_id, old_price_cents=2_500, new_price_cents=1_999
        )
    )
    h.eventually(lambda: _price_seen(h, kettle.product_id) == 1_999)
    basket = h.client.get("/basket", headers=auth).json()
    assert basket["items"][0] == {
        "product_id": kettle.product_id,
        "sku": "KET-1",
        "name": "Product KET-1",
        "quantity": 2,
        "unit_price_cents": 1_999,
        "line_total_cents": 3_998,
    }
    assert basket["total_cents"] == 3_998 + 3 * 799


def test_price_change_for_a_product_never_added_is_dead_lettered(h: ServiceHarness) -> None:
    ghost = new_id()
    h.publish(ProductPriceChanged(product_id=ghost, old_price_cents=1, new_price_cents=2))
    (letter,) = h.eventually(lambda: DeadLetters(h.platform.bus).list("basket"))
    assert letter.key == ghost and "never saw added" in letter.reason
    assert _price_seen(h, ghost) is None


def test_quantities_set_remove_and_refuse(h: ServiceHarness) -> None:
    kettle, mug = _product("KET-2", 2_500), _product("MUG-2", 799)
    _stock(h, kettle, mug)
    auth = h.token()
    _put(h, auth, kettle.product_id, 5)
    _put(h, auth, mug.product_id, 1)
    basket = _put(h, auth, kettle.product_id, 1).json()  # sets, does not add; keeps its place
    assert [(i["sku"], i["quantity"]) for i in basket["items"]] == [("KET-2", 1), ("MUG-2", 1)]

    for bad in (0, -1, 100, "2", 1.5, None):
        refused = _put(h, auth, kettle.product_id, bad)
        assert refused.status_code == 422, bad
        assert refused.json()["detail"][0]["loc"] == ["body", "quantity"]
    unknown = _put(h, auth, new_id(), 1)
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "product_id: unknown product"

    after = h.client.delete(f"/basket/items/{mug.product_id}", headers=auth)
    assert after.status_code == 200
    assert [i["sku"] for i in after.json()["items"]] == ["KET-2"]
    again = h.client.delete(f"/basket/items/{mug.product_id}", headers=auth)
    assert again.status_code == 404 and "product_id" in again.json()["detail"]
    assert h.client.get("/basket", headers=auth).json()["item_count"] == 1
    assert h.client.get("/basket").status_code == 401


def test_at_most_fifty_distinct_products(h: ServiceHarness) -> None:
    products = [_product(f"LIM-{i}", 100 + i) for i in range(MAX_DISTINCT_PRODUCTS + 1)]
    _stock(h, *products)
    auth = h.token()
    for p in products[:MAX_DISTINCT_PRODUCTS]:
        assert _put(h, auth, p.product_id, 1).status_code == 200
    full = _put(h, auth, products[-1].product_id, 1)
    assert full.status_code == 409 and str(MAX_DISTINCT_PRODUCTS) in full.json()["detail"]
    assert _put(h, auth, products[0].product_id, 9).status_code == 200  # changing one is fine
    assert len(h.client.get("/basket", headers=auth).json()["items"]) == MAX_DISTINCT_PRODUCTS


def test_price_tampering_is_refused_and_changes_nothing(h: ServiceHarness) -> None:
    kettle = _product("KET-3", 2_500)
    _stock(h, kettle)
    auth = h.token()
    _put(h, auth, kettle.product_id, 2)
    before = h.client.get("/basket", headers=auth).json()

    tampered_put = h.client.put(
        f"/basket/items/{kettle.product_id}",
        json={"quantity": 9, "unit_price_cents": 1},
        headers=auth,
    )
    assert tampered_put.status_code == 422
    assert [e["loc"] for e in tampered_put.json()["detail"]] == [["body", "unit_price_cents"]]
    tampered_bodies: list[tuple[dict[str, Any], list[str]]] = [
        ({**CHECKOUT, "total_cents": 1}, ["body", "total_cents"]),
        ({**CHECKOUT, "lines": [{"product_id": kettle.product_id}]}, ["body", "lines"]),
        (
            {**CHECKOUT, "shipping_address": {**ADDRESS, "price_cents": 1}},
            ["body", "shipping_address", "price_cents"],
        ),
    ]
    for body, loc in tampered_bodies:
        refused = _checkout(h, auth, new_id(), body)
        assert refused.status_code == 422
        assert [e["loc"] for e in refused.json()["detail"]] == [loc]
    assert h.client.get("/basket", headers=auth).json() == before
    assert h.emitted(BasketCheckedOut) == []


def test_checkout_input_is_checked(h: ServiceHarness) -> None:
    kettle = _product("KET-4", 2_500)
    _stock(h, kettle)
    auth = h.token()
    empty = _checkout(h, auth, "k-empty")
    assert empty.status_code == 409 and empty.json()["detail"] == "basket is empty"
    _put(h, auth, kettle.product_id, 1)

    missing = h.client.post("/basket/checkout", json=CHECKOUT, headers=auth)
    assert missing.status_code == 400
    assert missing.json()["detail"] == "Idempotency-Key header is required"
    too_long = _checkout(h, auth, "k" * 101)
    assert too_long.status_code == 422 and "Idempotency-Key" in too_long.json()["detail"]
    for token in ("visa", "tok_", "tok_VISA", "tok_" + "a" * 41):
        bad = _checkout(h, auth, new_id(), {**CHECKOUT, "card_token": token})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "card_token"]
    no_city = {**CHECKOUT, "shipping_address": {**ADDRESS, "city": "  "}}
    bad_address = _checkout(h, auth, new_id(), no_city)
    assert bad_address.status_code == 422
    assert bad_address.json()["detail"][0]["loc"] == ["body", "shipping_address", "city"]
    assert h.client.get("/basket", headers=auth).json()["item_count"] == 1
    assert h.emitted(BasketCheckedOut) == []
    # The refused attempt under "k-empty" left no trace: the key is still free.
    assert _checkout(h, auth, "k-empty").status_code == 202


def test_checkout_captures_prices_once_per_key(h: ServiceHarness) -> None:
    kettle, mug = _product("KET-5", 2_500), _product("MUG-5", 799)
    _stock(h, kettle, mug)
    customer = new_id()
    auth = h.token(user_id=customer)
    _put(h, auth, kettle.product_id, 2)
    _put(h, auth, mug.product_id, 1)
    h.publish(
        ProductPriceChanged(product_id=mug.product_id, old_price_cents=799, new_price_cents=899)
    )
    h.eventually(lambda: _price_seen(h, mug.product_id) == 899)

    accepted = _checkout(h, auth, "key-1")
    assert accepted.status_code == 202
    order_id = accepted.json()["order_id"]
    assert h.client.get("/basket", headers=auth).json()["items"] == []
    retried = _checkout(h, auth, "key-1")  # the basket is empty now: still the same order
    assert retried.status_code == 202 and retried.json() == {"order_id": order_id}

    (event,) = h.wait_for(BasketCheckedOut, key=order_id)
    assert event.customer_id == customer
    assert event.lines == [
        OrderLine(
            product_id=kettle.product_id,
            sku="KET-5",
            name="Product KET-5",
            quantity=2,
            unit_price_cents=2_500,
        ),
        OrderLine(
            product_id=mug.product_id,
            sku="MUG-5",
            name="Product MUG-5",
            quantity=1,
            unit_price_cents=899,
        ),
    ]
    assert (event.total_cents, event.currency, event.card_token) == (5_899, "USD", "tok_visa")
    assert event.shipping_address == Address(**ADDRESS)
    assert len(h.emitted(BasketCheckedOut)) == 1

    other = _checkout(h, auth, "key-1", {**CHECKOUT, "card_token": "tok_declined"})
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
    assert _checkout(h, auth, "key-2").status_code == 409  # a new key, an empty basket


def test_concurrent_checkouts_with_one_key_make_one_order(h: ServiceHarness) -> None:
    kettle = _product("KET-6", 2_500)
    _stock(h, kettle)
    auth = h.token()
    _put(h, auth, kettle.product_id, 1)
    start = threading.Barrier(4)
    answers: list[Any] = []

    def attempt() -> None:
        start.wait()
        answers.append(_checkout(h, auth, "same-key"))

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [202] * 4
    order_ids = {a.json()["order_id"] for a in answers}
    assert len(order_ids) == 1
    h.wait_for(BasketCheckedOut, key=order_ids.pop())
    assert len(h.emitted(BasketCheckedOut)) == 1


def test_the_loser_of_a_race_answers_with_the_winners_order(
    h: ServiceHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL two requests can both miss each other's checkout row; then the unique
    key decides. Simulate that: the second request's lookup misses the first's row."""
    kettle = _product("KET-7", 2_500)
    _stock(h, kettle)
    auth = h.token()
    _put(h, auth, kettle.product_id, 1)
    won = _checkout(h, auth, "race").json()["order_id"]
    _put(h, auth, kettle.product_id, 3)  # something a second checkout could wrongly order

    real_find = CheckoutTable.find
    misses = [True]

    def find_missing_once(self: CheckoutTable, conn: Any, customer: str, key: str) -> Any:
        if misses and misses.pop():
            return None
        return real_find(self, conn, customer, key)

    monkeypatch.setattr(CheckoutTable, "find", find_missing_once)
    lost = _checkout(h, auth, "race")
    assert lost.status_code == 202 and lost.json() == {"order_id": won}
    assert not misses  # the race really was simulated
    # The loser's transaction rolled back whole: the basket is untouched, nothing announced.
    assert h.client.get("/basket", headers=auth).json()["item_count"] == 3
    h.wait_for(BasketCheckedOut, key=won)
    assert len(h.emitted(BasketCheckedOut)) == 1


def test_one_customer_never_sees_another_customers_basket(h: ServiceHarness) -> None:
    kettle, mug = _product("KET-8", 2_500), _product("MUG-8", 799)
    _stock(h, kettle, mug)
    ann, bob = h.token(user_id="ann"), h.token(user_id="bob")
    _put(h, ann, kettle.product_id, 2)
    _put(h, bob, mug.product_id, 1)
    assert [i["sku"] for i in h.client.get("/basket", headers=ann).json()["items"]] == ["KET-8"]
    bobs = h.client.get("/basket", headers=bob).json()
    assert bobs["customer_id"] == "bob" and [i["sku"] for i in bobs["items"]] == ["MUG-8"]
    assert h.client.delete(f"/basket/items/{kettle.product_id}", headers=bob).status_code == 404

    # Idempotency keys are per customer: the same key makes two different orders.
    ann_order = _checkout(h, ann, "shared-key").json()["order_id"]
    bob_order = _checkout(h, bob, "shared-key").json()["order_id"]
    assert ann_order != bob_order
    (ann_event,) = h.wait_for(BasketCheckedOut, key=ann_order)
    (bob_event,) = h.wait_for(BasketCheckedOut, key=bob_order)
    assert [(ln.sku, ln.quantity) for ln in ann_event.lines] == [("KET-8", 2)]
    assert [(ln.sku, ln.quantity) for ln in bob_event.lines] == [("MUG-8", 1)]
    assert ann_event.customer_id == "ann" and bob_event.customer_id == "bob"
