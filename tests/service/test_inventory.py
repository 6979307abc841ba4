"""inventory: demo stock, reserve/commit/release for the saga, idempotent repeats, expiry,
the admin receipt, and no overselling when 50 orders race for 10 units (one consumer, and
two runtimes contending through optimistic concurrency)."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import pytest

from eventmart.contracts.common import StockLine
from eventmart.contracts.inventory import (
    CommitStock,
    ReleaseStock,
    ReserveStock,
    StockCommitted,
    StockLevelChanged,
    StockReleased,
    StockReservationFailed,
    StockReserved,
)
from eventmart.demo import demo_products
from eventmart.platform.messages import new_id
from eventmart.platform.messaging import dead_letter_topic
from eventmart.platform.settings import Settings
from tests.service.harness import ServiceHarness, running

DEMO = demo_products()


def level(h: ServiceHarness, product_id: str) -> dict[str, Any]:
    response = h.client.get(f"/stock/{product_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def holdings(h: ServiceHarness, order_id: str) -> dict[str, tuple[int, str]]:
    response = h.client.get(f"/reservations/{order_id}")
    assert response.status_code == 200, response.text
    return {ln["product_id"]: (ln["quantity"], ln["state"]) for ln in response.json()["lines"]}


def reserve(order_id: str, *lines: tuple[str, int]) -> ReserveStock:
    return ReserveStock(
        order_id=order_id, lines=[StockLine(product_id=p, quantity=q) for p, q in lines]
    )


def receive(h: ServiceHarness, product_id: str, quantity: int) -> dict[str, Any]:
    response = h.client.post(
        f"/admin/stock/{product_id}/receive", json={"quantity": quantity}, headers=h.token("admin")
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def bare(settings: Settings) -> Settings:
    """No demo stock: the test receives exactly what it needs."""
    return settings.model_copy(update={"demo_data": False})


def test_demo_stock_is_received_once_and_announced(settings: Settings) -> None:
    a, b = DEMO[0], DEMO[-1]
    with running("inventory", settings) as h:
        levels = h.wait_for(StockLevelChanged, count=len(DEMO))
        assert {m.product_id: m.available for m in levels} == {d.product_id: d.stock for d in DEMO}
        assert level(h, a.product_id) == {
            "product_id": a.product_id,
            "on_hand": a.stock,
            "reserved": 0,
            "available": a.stock,
        }
        listed = h.client.get("/stock", params={"product_id": [b.product_id, "nope", a.product_id]})
        assert [s["product_id"] for s in listed.json()] == [b.product_id, a.product_id]
        assert h.client.get("/stock").json() == []
        assert h.client.get("/stock/nope").status_code == 404
        assert h.client.get("/stock/nope/history").status_code == 404
        (entry,) = h.client.get(f"/stock/{a.product_id}/history").json()
        assert (entry["version"], entry["type"], entry["data"]) == (
            1,
            "StockReceived",
            {"quantity": a.stock},
        )
        assert entry["recorded_at"].startswith("20")
    with running("inventory", settings) as h:  # a restart receives nothing more
        assert len(h.emitted(StockLevelChanged)) == len(DEMO)
        assert level(h, a.product_id)["on_hand"] == a.stock


def test_reserve_commit_and_release_move_the_stock(settings: Settings) -> None:
    a, b = DEMO[0], DEMO[1]
    with running("inventory", settings) as h:
        h.publish(reserve("o1", (a.product_id, 2), (b.product_id, 1), (a.product_id, 1)))
        (reserved,) = h.wait_for(StockReserved, key="o1")
        assert {(ln.product_id, ln.quantity) for ln in reserved.lines} == {
            (a.product_id, 3),
            (b.product_id, 1),
        }
        changed = h.wait_for(StockLevelChanged, key=a.product_id, count=2)[-1]
        assert (changed.on_hand, changed.reserved, changed.available) == (a.stock, 3, a.stock - 3)
        assert level(h, a.product_id)["available"] == a.stock - 3
        assert holdings(h, "o1") == {a.product_id: (3, "reserved"), b.product_id: (1, "reserved")}

        h.publish(CommitStock(order_id="o1"))
        h.wait_for(StockCommitted, key="o1")
        assert level(h, a.product_id) == {
            "product_id": a.product_id,
            "on_hand": a.stock - 3,
            "reserved": 0,
            "available": a.stock - 3,
        }
        assert holdings(h, "o1")[a.product_id] == (3, "committed")

        # A cancelled confirmed order gives its sale back.
        h.publish(ReleaseStock(order_id="o1", reason="CUSTOMER_CANCELLED"))
        (released,) = h.wait_for(StockReleased, key="o1")
        assert released.reason == "CUSTOMER_CANCELLED"
        assert level(h, a.product_id)["on_hand"] == a.stock
        assert holdings(h, "o1")[b.product_id] == (1, "returned")

        # A compensated reservation gives its units back.
        h.publish(reserve("o2", (b.product_id, b.stock)))
        h.wait_for(StockReserved, key="o2")
        assert level(h, b.product_id)["available"] == 0
        h.publish(ReleaseStock(order_id="o2", reason="PAYMENT_DECLINED"))
        h.wait_for(StockReleased, key="o2")
        assert level(h, b.product_id) == {
            "product_id": b.product_id,
            "on_hand": b.stock,
            "reserved": 0,
            "available": b.stock,
        }
        assert holdings(h, "o2") == {b.product_id: (b.stock, "released")}

        history = h.client.get(f"/stock/{a.product_id}/history").json()
        assert [e["type"] for e in history] == [
            "StockReceived",
            "StockReserved",
            "ReservationCommitted",
            "SaleReturned",
        ]
        assert history[1]["data"]["order_id"] == "o1"
        assert h.client.get(f"/stock/{a.product_id}/history?after_version=3").json() == history[3:]
        assert h.client.get("/reservations/nobody").status_code == 404


def test_an_order_short_of_stock_fails_whole_and_changes_nothing(settings: Settings) -> None:
    a, b = DEMO[0], DEMO[1]
    with running("inventory", settings) as h:
        h.publish(reserve("o1", (a.product_id, 1), (b.product_id, b.stock + 1), ("ghost", 1)))
        (failed,) = h.wait_for(StockReservationFailed, key="o1")
        assert failed.reason == "OUT_OF_STOCK"
        assert failed.unavailable == [b.product_id, "ghost"]
        h.publish(reserve("o2", ("ghost", 1)))
        (unknown,) = h.wait_for(StockReservationFailed, key="o2")
        assert (unknown.reason, unknown.unavailable) == ("UNKNOWN_PRODUCT", ["ghost"])

        for d in (a, b):
            assert level(h, d.product_id)["available"] == d.stock
            assert len(h.client.get(f"/stock/{d.product_id}/history").json()) == 1
            assert len(h.emitted(StockLevelChanged, key=d.product_id)) == 1
        assert h.emitted(StockReserved) == []
        assert h.client.get("/reservations/o1").status_code == 404


def test_repeats_reannounce_the_outcome_and_change_nothing(settings: Settings) -> None:
    a, b = DEMO[0], DEMO[1]
    with running("inventory", settings) as h:
        command = reserve("o1", (a.product_id, 2))
        record = h.writer.record(command)
        producer = h.platform.bus.producer()
        try:
            producer.send([record])
            producer.send([record])  # a redelivery: the very same message id
        finally:
            producer.close()
        h.publish(command)  # a second command for the same order: a new message id
        # Same key, same partition: once the third reply is out, the duplicate was handled.
        replies = h.wait_for(StockReserved, key="o1", count=2)
        assert len(h.emitted(StockReserved, key="o1")) == 2
        assert replies[0] == replies[1]
        assert level(h, a.product_id)["reserved"] == 2
        assert len(h.emitted(StockLevelChanged, key=a.product_id)) == 2  # seed + one reserve

        h.publish(CommitStock(order_id="o1"), CommitStock(order_id="o1"))
        h.wait_for(StockCommitted, key="o1", count=2)
        assert level(h, a.product_id)["on_hand"] == a.stock - 2
        h.publish(*[ReleaseStock(order_id="o1", reason="CUSTOMER_CANCELLED")] * 2)
        h.wait_for(StockReleased, key="o1", count=2)
        assert level(h, a.product_id) == {
            "product_id": a.product_id,
            "on_hand": a.stock,
            "reserved": 0,
            "available": a.stock,
        }
        # A released order is not reserved again by a late repeat: the outcome is re-announced.
        h.publish(command)
        h.wait_for(StockReserved, key="o1", count=3)
        assert level(h, a.product_id)["reserved"] == 0

        # A failure is decided once, too: more stock later does not change the answer.
        h.publish(reserve("o2", (b.product_id, b.stock + 5)))
        h.wait_for(StockReservationFailed, key="o2")
        receive(h, b.product_id, 10)
        h.publish(reserve("o2", (b.product_id, b.stock + 5)))
        failures = h.wait_for(StockReservationFailed, key="o2", count=2)
        assert failures[0] == failures[1]
        assert level(h, b.product_id)["reserved"] == 0

        # Releasing an order that holds nothing still answers, and bars a late reservation.
        h.publish(ReleaseStock(order_id="o3", reason="PAYMENT_TIMEOUT"))
        h.wait_for(StockReleased, key="o3")
        h.publish(reserve("o3", (a.product_id, 1)))
        (barred,) = h.wait_for(StockReservationFailed, key="o3")
        assert barred.reason == "ORDER_RELEASED"
        assert level(h, a.product_id)["reserved"] == 0


def test_commands_that_can_never_succeed_are_dead_lettered(bare: Settings) -> None:
    with running("inventory", bare) as h:
        h.publish(CommitStock(order_id="never-reserved"), reserve("o-bad", ("p", 0)))
        dlq = dead_letter_topic("inventory")

        def dead_letters() -> list[str]:
            h.platform.bus.ensure_topic(dlq, 1)
            return [r.header("dlq_reason") or "" for r in h.platform.bus.read(dlq, 0, 0, 10)]

        reasons = h.eventually(lambda: len(dead_letters()) == 2 and dead_letters())
        assert any("holds no reservation" in r for r in reasons)
        assert any("greater than zero" in r for r in reasons)


def test_reservations_expire_and_an_expired_one_can_still_be_committed(
    settings: Settings,
) -> None:
    a = DEMO[0]
    with running("inventory", settings.model_copy(update={"reservation_ttl_s": 0.2})) as h:
        h.publish(reserve("o1", (a.product_id, 2)))
        h.wait_for(StockReserved, key="o1")
        (expired,) = h.wait_for(StockReleased, key="o1", timeout_s=5)
        assert expired.reason == "RESERVATION_EXPIRED"
        assert level(h, a.product_id)["available"] == a.stock
        assert holdings(h, "o1") == {a.product_id: (2, "released")}
        # The saga confirmed the order late: the units are taken again while there are any.
        h.publish(CommitStock(order_id="o1"))
        h.wait_for(StockCommitted, key="o1")
        assert level(h, a.product_id)["on_hand"] == a.stock - 2
        assert holdings(h, "o1") == {a.product_id: (2, "committed")}
        assert len(h.emitted(StockReleased, key="o1")) == 1


def test_admin_receives_stock(bare: Settings) -> None:
    with running("inventory", bare) as h:
        url = "/admin/stock/new-product/receive"
        assert h.client.post(url, json={"quantity": 5}).status_code == 401
        assert h.client.post(url, json={"quantity": 5}, headers=h.token()).status_code == 403
        admin = h.token("admin")
        for bad in ({"quantity": 0}, {"quantity": 100_001}, {"quantity": "x"}, {}):
            response = h.client.post(url, json=bad, headers=admin)
            assert response.status_code == 422 and "quantity" in str(response.json()["detail"])
        tampered = h.client.post(url, json={"quantity": 5, "reserved": -5}, headers=admin)
        assert tampered.status_code == 422 and "reserved" in str(tampered.json()["detail"])
        bad_id = h.client.post("/admin/stock/a b/receive", json={"quantity": 5}, headers=admin)
        assert bad_id.status_code == 422 and "product_id" in str(bad_id.json()["detail"])
        assert h.client.get("/stock/new-product").status_code == 404

        assert receive(h, "new-product", 5)["available"] == 5
        assert receive(h, "new-product", 3) == {
            "product_id": "new-product",
            "on_hand": 8,
            "reserved": 0,
            "available": 8,
        }
        levels = h.wait_for(StockLevelChanged, key="new-product", count=2)
        assert [m.on_hand for m in levels] == [5, 8]


@pytest.mark.parametrize("runtimes", [1, 2])
def test_fifty_orders_racing_for_ten_units_never_oversell(bare: Settings, runtimes: int) -> None:
    with ExitStack() as stack:
        hs = [stack.enter_context(running("inventory", bare)) for _ in range(runtimes)]
        h = hs[0]
        if runtimes > 1:
            h.eventually(lambda: owners_split(hs, "inventory.commands", bare.partitions))
        receive(h, "hot", 10)
        orders = [f"race-{i:02d}-{new_id()}" for i in range(50)]
        h.publish(*[reserve(o, ("hot", 1)) for o in orders])

        h.eventually(
            lambda: len(h.emitted(StockReserved)) + len(h.emitted(StockReservationFailed)) >= 50
        )
        won = [m.order_id for _, m in h.emitted(StockReserved)]
        lost = h.emitted(StockReservationFailed)
        assert len(won) == len(set(won)) == 10
        assert len(lost) == 40 and {m.order_id for _, m in lost} == set(orders) - set(won)
        assert all(m.unavailable == ["hot"] and m.reason == "OUT_OF_STOCK" for _, m in lost)
        for hx in hs:
            assert level(hx, "hot") == {
                "product_id": "hot",
                "on_hand": 10,
                "reserved": 10,
                "available": 0,
            }
        assert all(m.available >= 0 for _, m in h.emitted(StockLevelChanged, key="hot"))
        history = h.client.get("/stock/hot/history").json()
        assert [e["type"] for e in history] == ["StockReceived"] + ["StockReserved"] * 10
        if runtimes > 1:  # both consumers really took part
            assert all(hx.runtime.runners[0].processed > 0 for hx in hs)


def owners_split(hs: list[ServiceHarness], topic: str, partitions: int) -> bool:
    """Every member holds some partitions of `topic`, and each partition has one owner."""
    owned = [
        {tp.partition for tp in hx.runtime.runners[0].consumer.assignment() if tp.topic == topic}
        for hx in hs
    ]
    return all(owned) and sum(map(len, owned)) == partitions == len(set().union(*owned))
