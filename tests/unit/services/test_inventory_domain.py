"""inventory's StockItem: the invariants, the arithmetic of each event, and that a fold
(from the first event or from a snapshot) gives back the live state."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import msgspec
import pytest

from eventmart.platform.db import Database
from eventmart.platform.errors import ConcurrencyError
from eventmart.platform.store import ServiceStore
from eventmart.platform.store.eventstore import Snapshot
from eventmart.services.inventory.adapters import (
    SNAPSHOT_EVERY,
    SNAPSHOT_TYPE,
    StockStreams,
    decode_event,
)
from eventmart.services.inventory.domain import (
    MAX_RECEIVE,
    InsufficientStockError,
    InventoryError,
    ReservationCommitted,
    ReservationReleased,
    SaleReturned,
    StockItem,
    StockReceived,
    StockReserved,
    StockState,
    stream_id,
)


def stocked(quantity: int = 10) -> StockItem:
    item = StockItem("p1")
    item.receive(quantity)
    return item


def state(item: StockItem) -> tuple[int, StockState]:
    return item.current_version, item.snapshot()


def test_receive_adds_stock_and_refuses_non_positive_or_huge_deliveries() -> None:
    item = stocked(10)
    item.receive(5)
    assert (item.on_hand, item.reserved, item.available) == (15, 0, 15)
    for bad in (0, -3, MAX_RECEIVE + 1):
        with pytest.raises(InventoryError, match="p1"):
            item.receive(bad)
    assert item.on_hand == 15 and item.changes == [StockReceived(10), StockReceived(5)]


def test_reserve_only_what_is_available() -> None:
    item = stocked(10)
    item.reserve("o1", 7, expires_at_ms=123)
    assert (item.on_hand, item.reserved, item.available) == (10, 7, 3)
    before = state(item)
    with pytest.raises(InsufficientStockError, match="4 wanted, 3 available"):
        item.reserve("o2", 4, expires_at_ms=123)
    with pytest.raises(InventoryError, match="greater than zero"):
        item.reserve("o2", 0, expires_at_ms=123)
    with pytest.raises(InventoryError, match="already holds"):
        item.reserve("o1", 1, expires_at_ms=123)
    assert state(item) == before  # a refused command records nothing
    item.reserve("o2", 3, expires_at_ms=123)
    assert item.available == 0 and not item.can_reserve(1)
    assert item.reservations == {"o1": 7, "o2": 3}


def test_release_gives_the_reservation_back() -> None:
    item = stocked(10)
    item.reserve("o1", 4, expires_at_ms=0)
    event = item.release("o1", "PAYMENT_DECLINED")
    assert event == ReservationReleased(order_id="o1", quantity=4, reason="PAYMENT_DECLINED")
    assert (item.on_hand, item.reserved, item.available, item.reservations) == (10, 0, 10, {})
    with pytest.raises(InventoryError, match="holds no reservation"):
        item.release("o1", "again")


def test_commit_turns_a_reservation_into_a_sale_and_a_return_undoes_it() -> None:
    item = stocked(10)
    item.reserve("o1", 4, expires_at_ms=0)
    item.reserve("o2", 1, expires_at_ms=0)
    assert item.commit("o1") == ReservationCommitted(order_id="o1", quantity=4)
    assert (item.on_hand, item.reserved, item.available) == (6, 1, 5)
    assert item.committed == {"o1": 4} and item.reservations == {"o2": 1}
    with pytest.raises(InventoryError, match="holds no reservation"):
        item.commit("o1")
    with pytest.raises(InventoryError, match="holds no sale"):
        item.return_sale("o2")
    assert item.return_sale("o1") == SaleReturned(order_id="o1", quantity=4)
    assert (item.on_hand, item.reserved, item.available, item.committed) == (10, 1, 9, {})


def random_history(seed: int, steps: int) -> StockItem:
    """A long random life of one product; every refused command must leave no trace."""
    rng = random.Random(seed)
    item = StockItem("p1")
    orders = [f"o{i}" for i in range(12)]
    for _ in range(steps):
        order = rng.choice(orders)
        before = state(item)
        try:
            match rng.randrange(5):
                case 0:
                    item.receive(rng.randint(1, 5))
                case 1:
                    item.reserve(order, rng.randint(1, 6), expires_at_ms=0)
                case 2:
                    item.release(order, "CUSTOMER_CANCELLED")
                case 3:
                    item.commit(order)
                case _:
                    item.return_sale(order)
        except InventoryError:
            assert state(item) == before
        assert 0 <= item.reserved <= item.on_hand
        assert item.reserved == sum(item.reservations.values())
    return item


def test_rebuilding_from_the_events_gives_the_live_state() -> None:
    live = random_history(seed=7, steps=400)
    assert any(isinstance(e, StockReserved) for e in live.changes)
    rebuilt = StockItem.rebuild("p1", live.changes)
    assert rebuilt.version == live.current_version
    assert rebuilt.snapshot() == live.snapshot()
    assert rebuilt.changes == []


def test_rebuilding_from_a_snapshot_plus_later_events_gives_the_live_state() -> None:
    live = random_history(seed=11, steps=300)
    cut = 120
    at_cut = StockItem.rebuild("p1", live.changes[:cut])
    resumed = StockItem.rebuild(
        "p1", live.changes[cut:], snapshot=at_cut.snapshot(), snapshot_version=cut
    )
    assert (resumed.version, resumed.snapshot()) == (live.current_version, live.snapshot())


@pytest.fixture
def store(tmp_path: Path) -> ServiceStore:
    store = ServiceStore(Database(f"sqlite:///{tmp_path / 'inventory.db'}"))
    store.create()
    return store


def test_streams_snapshot_every_50_events_and_load_from_the_snapshot(store: ServiceStore) -> None:
    streams, db, es = StockStreams(store.events), store.db, store.events
    live = random_history(seed=3, steps=500)
    events = list(live.changes)
    assert len(events) > 2 * SNAPSHOT_EVERY
    item = StockItem("p1")
    with db.transaction() as conn:
        for e in events:  # one event per save, as most handlers do
            item.apply(e)
            item.changes.append(e)
            streams.save(conn, [item])
    with db.read() as conn:
        snap = es.load_snapshot(conn, stream_id("p1"))
        stored = es.read_stream(conn, stream_id("p1"))
        loaded = streams.load(conn, "p1")
    assert snap is not None and snap.type == SNAPSHOT_TYPE
    assert snap.version == len(events) // SNAPSHOT_EVERY * SNAPSHOT_EVERY
    assert [decode_event(s) for s in stored] == events  # the msgspec JSON round-trip
    assert loaded is not None
    assert (loaded.version, loaded.snapshot()) == (live.current_version, live.snapshot())
    snapped = msgspec.json.decode(snap.data, type=StockState)
    assert snapped == StockItem.rebuild("p1", events[: snap.version]).snapshot()

    # The load really starts from the snapshot: a doctored one shows through...
    doctored = msgspec.json.encode(dataclasses.replace(snapped, on_hand=snapped.on_hand + 1000))
    with db.transaction() as conn:
        conn.execute(es.snapshots.delete())
        es.save_snapshot(conn, Snapshot(stream_id("p1"), snap.version, SNAPSHOT_TYPE, doctored))
    with db.read() as conn:
        from_doctored = streams.load(conn, "p1")
    assert from_doctored is not None and from_doctored.on_hand == live.on_hand + 1000
    # ...and one of another shape version is ignored: the stream is folded from the start.
    with db.transaction() as conn:
        conn.execute(es.snapshots.delete())
        es.save_snapshot(conn, Snapshot(stream_id("p1"), snap.version, "StockState.v0", b"?"))
    with db.read() as conn:
        refolded = streams.load(conn, "p1")
    assert refolded is not None and refolded.snapshot() == live.snapshot()


def test_streams_save_with_a_stale_version_conflicts(store: ServiceStore) -> None:
    streams, db = StockStreams(store.events), store.db
    with db.transaction() as conn:
        assert streams.load(conn, "p1") is None
        first = stocked(5)
        streams.save(conn, [first])
    with db.transaction() as conn:
        a, b = streams.load(conn, "p1"), streams.load(conn, "p1")
        assert a is not None and b is not None
        a.reserve("o1", 5, expires_at_ms=0)
        streams.save(conn, [a])
        b.reserve("o2", 5, expires_at_ms=0)  # b still believes 5 are available
        with pytest.raises(ConcurrencyError):
            streams.save(conn, [b])
