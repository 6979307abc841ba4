"""End-to-end guarantees of the messaging itself: a shop where the log delivers every
message twice behaves exactly like one that delivers once, and read models rebuilt from
the log equal the live ones."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventmart.platform.bus import Bus, Consumer, OutgoingRecord, PartitionLag, Producer, Record
from eventmart.platform.settings import Settings
from eventmart.readside.replay import replay
from eventmart.readside.views import open_view_store
from tests.e2e.client import Shopper
from tests.e2e.invariants import all_orders, check_invariants
from tests.e2e.shop import Shop, e2e_settings

PAID = {"CONFIRMED", "SHIPPED", "DELIVERED"}


class _TwiceProducer(Producer):
    def __init__(self, inner: Producer) -> None:
        self.inner = inner

    def send(self, records: Sequence[OutgoingRecord]) -> None:
        self.inner.send(records)
        self.inner.send(records)  # the same records (same ids) once more

    def close(self) -> None:
        self.inner.close()


class TwiceBus(Bus):
    """Every record published twice: what at-least-once delivery may do at any hop."""

    def __init__(self, inner: Bus) -> None:
        self.inner = inner

    def producer(self) -> Producer:
        return _TwiceProducer(self.inner.producer())

    def ensure_topic(self, name: str, partitions: int | None = None) -> None:
        self.inner.ensure_topic(name, partitions)

    def topics(self) -> dict[str, int]:
        return self.inner.topics()

    def consumer(self, group: str, topics: Sequence[str], member_id: str | None = None) -> Consumer:
        return self.inner.consumer(group, topics, member_id)

    def end_offsets(self, topic: str) -> dict[int, int]:
        return self.inner.end_offsets(topic)

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        return self.inner.read(topic, partition, offset, limit)

    def lag(self, group: str | None = None) -> list[PartitionLag]:
        return self.inner.lag(group)

    def groups(self) -> list[str]:
        return self.inner.groups()

    def reset_group(self, group: str, topics: Sequence[str]) -> None:
        self.inner.reset_group(group, topics)

    def close(self) -> None:
        self.inner.close()


def _shop(tmp_path: Path, twice: bool, profile: dict[str, Any]) -> Shop:
    shop = Shop(e2e_settings(Settings(data_dir=tmp_path / "data", environment="test"), **profile))
    if twice:
        shop.platform.__dict__["bus"] = TwiceBus(shop.platform.bus)
    return shop.start()


def _run_orders(shop: Shop) -> tuple[list[Shopper], dict[str, tuple[str, str | None]]]:
    """Three shoppers, four orders with every kind of outcome."""
    outcomes: dict[str, tuple[str, str | None]] = {}
    with httpx.Client(base_url=shop.web_url, timeout=15) as web:
        shoppers = [Shopper(web).register() for _ in range(3)]
        books = shoppers[0].products(category="books", page_size=3)["items"]
        plan = [
            (shoppers[0], "tok_visa"),
            (shoppers[1], "tok_declined"),
            (shoppers[2], "tok_timeout"),
            (shoppers[0], "tok_visa"),
        ]
        for i, (shopper, card) in enumerate(plan):
            shopper.add(books[i % 3]["product_id"], 1 + i % 2)
            order_id = shopper.checkout(card)
            view = shopper.wait_for(order_id, {"SHIPPED", "DELIVERED", "CANCELLED"})
            outcomes[order_id] = (view["status"], view["cancellation_reason"])
        check_invariants(shop, shoppers)
        for s in shoppers:
            s.http = httpx.Client(base_url=shop.web_url, timeout=15)
    return shoppers, outcomes


@pytest.fixture
def twice_shop(tmp_path: Path, profile: dict[str, Any]) -> Iterator[Shop]:
    shop = _shop(tmp_path, twice=True, profile=profile)
    try:
        yield shop
    finally:
        shop.stop()


def test_every_message_delivered_twice_changes_nothing(twice_shop: Shop) -> None:
    shoppers, outcomes = _run_orders(twice_shop)
    reasons = sorted(r or "" for _, r in outcomes.values())
    assert reasons == ["", "", "PAYMENT_DECLINED", "PAYMENT_TIMEOUT"]
    twice_shop.quiesce()
    # Each effect once: no repeated event in any order's stream, one mail per event, and
    # the read side agrees with the write side.
    orders = all_orders(twice_shop)
    store = twice_shop.runtimes["ordering"].service.store
    assert store is not None
    with store.db.read() as conn:
        streams = {o: store.events.read_stream(conn, f"order-{o}") for o in outcomes}
    for order_id, stored in streams.items():
        types = [e.type for e in stored]
        assert len(types) == len(set(types)), f"{order_id} has repeated events: {types}"
        owner = next(s for s in shoppers if order_id in s.orders)
        assert owner.order(order_id).json()["status"] == orders[order_id].status.value
    mail = httpx.get(f"{twice_shop.settings.service_url('notification')}/mail", timeout=5).json()
    kinds = [(m["order_id"], m["kind"]) for m in mail]
    assert len(kinds) == len(set(kinds))
    assert len(list((twice_shop.settings.data_dir / "mail").glob("*.eml"))) == len(mail)
    # The log really did hold every order event twice.
    published = sum(twice_shop.platform.bus.end_offsets("ordering.events").values())
    assert published == 2 * sum(len(stored) for stored in streams.values())


def test_rebuilt_read_models_equal_live_ones(tmp_path: Path, profile: dict[str, Any]) -> None:
    shop = _shop(tmp_path, twice=False, profile=profile)
    try:
        _run_orders(shop)
        shop.quiesce()
        views = open_view_store(shop.platform)
        live = {p: views.snapshot(p) for p in ("orders", "products")}
        assert live["orders"] and any(live["orders"].values())
        for projection in ("orders", "products"):
            result = replay(shop.platform, projection)
            assert result.messages > 0
        shop.quiesce()
        rebuilt = {p: views.snapshot(p) for p in ("orders", "products")}
        assert rebuilt == live
    finally:
        shop.stop()
