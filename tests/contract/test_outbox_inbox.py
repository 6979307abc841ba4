"""The outbox, its relay, the inbox and durable timers: the contract every database
backend (and every bus backend, for the relay) must keep.

The relay killed mid-batch by SIGKILL is in test_bus_multiprocess.py.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence

import pytest
from sqlalchemy import select

from eventmart.platform.bus import Bus, OutgoingRecord, Producer
from eventmart.platform.db import Database
from eventmart.platform.messages import now_ms
from eventmart.platform.store import ServiceStore
from eventmart.platform.store.outbox import OutboxRelay
from tests.support import eventually
from tests.support.records import (
    first_occurrences,
    id_of,
    keyed_stream,
    outgoing,
    read_everything,
    seqs_by_key,
)


@pytest.fixture
def store(database: Database) -> ServiceStore:
    s = ServiceStore(database)
    s.create()
    return s


def pending(store: ServiceStore) -> int:
    with store.db.read() as conn:
        return store.outbox.pending(conn)


def add(store: ServiceStore, records: Sequence[OutgoingRecord], per_transaction: int) -> None:
    for i in range(0, len(records), per_transaction):
        with store.db.transaction() as conn:
            store.outbox.add(conn, records[i : i + per_transaction])


def drain(relay: OutboxRelay) -> int:
    """relay_once until the outbox is empty; the number of batches."""
    batches = 0
    while relay.relay_once():
        batches += 1
        assert batches < 10_000
    return batches


# -- outbox and relay -----------------------------------------------------------------
def test_outbox_rows_exist_only_if_their_transaction_commits(
    bus: Bus, store: ServiceStore, unique: Callable[[str], str]
) -> None:
    topic = unique("topic")
    bus.ensure_topic(topic, 2)
    relay = OutboxRelay(store.db, store.outbox, bus.producer())

    with pytest.raises(RuntimeError), store.db.transaction() as conn:
        store.outbox.add(conn, [outgoing(topic, "order-1", 0), outgoing(topic, "order-2", 0)])
        raise RuntimeError("the business change failed")

    assert pending(store) == 0
    assert relay.relay_once() == 0
    assert sum(bus.end_offsets(topic).values()) == 0, "nothing of the rolled-back change"

    with store.db.transaction() as conn:
        store.outbox.add(conn, [outgoing(topic, "order-3", 0)])
    assert relay.relay_once() == 1
    assert [r.key for r in read_everything(bus, topic)] == ["order-3"]


def test_the_relay_publishes_rows_in_order_per_key_and_empties_the_outbox(
    bus: Bus, store: ServiceStore, unique: Callable[[str], str]
) -> None:
    topic = unique("topic")
    bus.ensure_topic(topic, 4)
    keys = [f"order-{i}" for i in range(10)]
    add(store, keyed_stream(topic, keys, 300), per_transaction=9)
    relay = OutboxRelay(store.db, store.outbox, bus.producer(), batch_size=7)

    batches = drain(relay)

    assert batches == 43  # ceil(300 / 7): batches of batch_size
    assert pending(store) == 0
    assert relay.published == 300
    stored = read_everything(bus, topic)
    assert seqs_by_key(stored) == {k: list(range(30)) for k in keys}
    assert {id_of(r) for r in stored} == {f"{k}#{s}" for k in keys for s in range(30)}


class InFlight:
    """Which keys are being sent right now, across producers; a key in two sends at once
    (two relays publishing it concurrently) is a collision."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: Counter[str] = Counter()
        self.collisions: set[str] = set()


class WatchedProducer(Producer):
    """Delegates; each send takes at least `send_s` (a slow bus) and is watched in flight."""

    def __init__(self, inner: Producer, in_flight: InFlight, send_s: float) -> None:
        self.inner = inner
        self.in_flight = in_flight
        self.send_s = send_s

    def send(self, records: Sequence[OutgoingRecord]) -> None:
        keys = {r.key for r in records}
        with self.in_flight.lock:
            self.in_flight.collisions.update(k for k in keys if self.in_flight.keys[k])
            self.in_flight.keys.update(keys)
        try:
            self.inner.send(records)
            time.sleep(self.send_s)
        finally:
            with self.in_flight.lock:
                self.in_flight.keys.subtract(keys)


@pytest.fixture
def relay_threads() -> Iterator[list[tuple[threading.Thread, threading.Event]]]:
    started: list[tuple[threading.Thread, threading.Event]] = []
    yield started
    for thread, stop in started:
        stop.set()
        thread.join(timeout=30)


def test_two_relays_on_one_database_publish_each_key_one_at_a_time_and_together_all(
    bus: Bus,
    store: ServiceStore,
    unique: Callable[[str], str],
    relay_threads: list[tuple[threading.Thread, threading.Event]],
) -> None:
    """Two processes of one service each run a relay. Each key must be published by one
    relay at a time (on SQLite one relay holds a lease; the outbox takes longer to drain
    than a lease lasts, so the holder must renew it while it publishes), and when one
    relay stops the other publishes the rest."""
    topic = unique("topic")
    bus.ensure_topic(topic, 4)
    keys = [f"order-{i}" for i in range(8)]
    add(store, keyed_stream(topic, keys, 600), per_transaction=20)
    in_flight = InFlight()
    relays: list[OutboxRelay] = []
    for _ in range(2):
        db = Database(store.db.url)  # each "process" its own engine and store objects
        other = ServiceStore(db)
        producer = WatchedProducer(bus.producer(), in_flight, send_s=0.02)
        relay = OutboxRelay(db, other.outbox, producer, batch_size=10, lease_s=0.3)
        relays.append(relay)
        stop = threading.Event()
        thread = threading.Thread(target=relay.run, args=(stop,), name="relay")
        relay_threads.append((thread, stop))
        thread.start()

    eventually(
        lambda: sum(r.published for r in relays) >= 400,
        timeout_s=30,
        what=lambda: f"published {[r.published for r in relays]}",
    )
    first = max(range(2), key=lambda i: relays[i].published)
    thread, stop = relay_threads[first]
    stop.set()  # it stops (and releases its lease, if it has one): the other goes on
    thread.join(timeout=30)
    eventually(
        lambda: pending(store) == 0,
        timeout_s=30,
        what=lambda: f"{pending(store)} rows left after the first relay stopped",
    )
    for thread, stop in relay_threads:
        stop.set()
        thread.join(timeout=30)

    assert not in_flight.collisions, f"keys published by two relays at once: {in_flight.collisions}"
    assert relays[1 - first].published > 0, "the other relay published"
    stored = read_everything(bus, topic)
    for key, seqs in seqs_by_key(stored).items():
        assert first_occurrences(seqs) == list(range(75)), f"{key} lost or out of order"
    assert {r.key for r in stored} == set(keys)


def test_a_row_that_commits_after_a_later_numbered_row_was_relayed_is_not_lost(
    bus: Bus, store: ServiceStore, unique: Callable[[str], str]
) -> None:
    """Row ids come from a counter at insert time, so two concurrent transactions can
    commit in the other order (PostgreSQL sequences do this; SQLite serializes writers,
    so there the slow transaction simply blocks the fast one). The relay must not drop
    the slow transaction's row when it deletes what it published."""
    topic = unique("topic")
    bus.ensure_topic(topic, 2)
    slow_added, release_slow, fast_done = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            with store.db.transaction() as conn:
                store.outbox.add(conn, [outgoing(topic, "slow", 0)])
                slow_added.set()
                assert release_slow.wait(30)
        except BaseException as e:
            errors.append(e)

    def fast() -> None:
        try:
            assert slow_added.wait(30)
            with store.db.transaction() as conn:
                store.outbox.add(conn, [outgoing(topic, "fast", 0)])
            fast_done.set()
        except BaseException as e:
            errors.append(e)

    class ReleasingProducer(Producer):
        """Lets the slow transaction commit while the relay is between send and delete."""

        def __init__(self, inner: Producer) -> None:
            self.inner = inner

        def send(self, records: Sequence[OutgoingRecord]) -> None:
            self.inner.send(records)
            if not release_slow.is_set():
                release_slow.set()
                slow_thread.join(timeout=30)

    slow_thread, fast_thread = threading.Thread(target=slow), threading.Thread(target=fast)
    slow_thread.start()
    fast_thread.start()
    relay = OutboxRelay(store.db, store.outbox, ReleasingProducer(bus.producer()))
    try:
        # Where the fast transaction can commit first, it has by now; on SQLite it waits.
        fast_done.wait(0.5)
        drain(relay)
    finally:
        release_slow.set()
        slow_thread.join(timeout=30)
        fast_thread.join(timeout=30)
    assert not errors, errors
    drain(relay)

    assert sorted(r.key for r in read_everything(bus, topic)) == ["fast", "slow"]
    assert pending(store) == 0


# -- inbox ----------------------------------------------------------------------------
def test_claim_returns_only_ids_not_seen_before_by_that_consumer(
    store: ServiceStore, unique: Callable[[str], str]
) -> None:
    inbox, projection, other = store.inbox, unique("projection"), unique("projection")

    with store.db.transaction() as conn:
        assert inbox.claim(conn, projection, ["m1", "m2", "m1"]) == {"m1", "m2"}
        assert inbox.claim(conn, projection, ["m2", "m3", "m3"]) == {"m3"}
    with store.db.transaction() as conn:
        assert inbox.claim(conn, projection, ["m1", "m3", "m4"]) == {"m4"}
        assert inbox.claim(conn, other, ["m1"]) == {"m1"}, "each consumer has its own history"
        assert inbox.claim(conn, projection, []) == set()


def test_claim_handles_batches_larger_than_one_query(
    store: ServiceStore, unique: Callable[[str], str]
) -> None:
    inbox, consumer = store.inbox, unique("group")
    first = [f"m{i}" for i in range(1200)]
    second = [f"m{i}" for i in range(1100, 2500)]

    with store.db.transaction() as conn:
        assert inbox.claim(conn, consumer, first) == set(first)
    with store.db.transaction() as conn:
        assert inbox.claim(conn, consumer, second) == {f"m{i}" for i in range(1200, 2500)}


def test_a_claim_that_rolls_back_is_forgotten(
    store: ServiceStore, unique: Callable[[str], str]
) -> None:
    inbox, consumer = store.inbox, unique("group")

    with pytest.raises(RuntimeError), store.db.transaction() as conn:
        assert inbox.claim(conn, consumer, ["m1", "m2"]) == {"m1", "m2"}
        raise RuntimeError("the handler failed")

    with store.db.transaction() as conn:
        assert inbox.claim(conn, consumer, ["m1", "m2"]) == {"m1", "m2"}


def test_forget_drops_one_consumers_history(
    store: ServiceStore, unique: Callable[[str], str]
) -> None:
    inbox, replayed, kept = store.inbox, unique("projection"), unique("projection")
    with store.db.transaction() as conn:
        inbox.claim(conn, replayed, ["m1", "m2"])
        inbox.claim(conn, kept, ["m1"])

    with store.db.transaction() as conn:
        inbox.forget(conn, replayed)

    with store.db.transaction() as conn:
        assert inbox.claim(conn, replayed, ["m1", "m2"]) == {"m1", "m2"}
        assert inbox.claim(conn, kept, ["m1"]) == set()


# -- timers ---------------------------------------------------------------------------
def timer_ids(store: ServiceStore) -> set[str]:
    with store.db.read() as conn:
        return set(conn.execute(select(store.timers.table.c.timer_id)).scalars())


def test_fire_due_moves_due_timers_into_the_outbox_in_one_transaction(
    bus: Bus, store: ServiceStore, unique: Callable[[str], str]
) -> None:
    topic = unique("topic")
    bus.ensure_topic(topic, 2)
    timers, now = store.timers, now_ms()
    hour = 3_600_000
    with store.db.transaction() as conn:
        timers.schedule(conn, "due", now - 1000, outgoing(topic, "due", 0))
        timers.schedule(conn, "future", now + hour, outgoing(topic, "future", 0))
        timers.schedule(conn, "cancelled", now - 1000, outgoing(topic, "cancelled", 0))
        timers.cancel(conn, "cancelled")
        timers.schedule(conn, "moved", now - 1000, outgoing(topic, "moved", 0))
        timers.schedule(conn, "moved", now + hour, outgoing(topic, "moved", 1))

    with pytest.raises(RuntimeError), store.db.transaction() as conn:
        assert timers.fire_due(conn) == 1
        raise RuntimeError("the poller crashed before its commit")
    assert timer_ids(store) == {"due", "future", "moved"}
    assert pending(store) == 0, "a rolled-back firing left no outbox row"

    with store.db.transaction() as conn:
        assert timers.fire_due(conn) == 1
    with store.db.transaction() as conn:
        assert timers.fire_due(conn) == 0

    assert timer_ids(store) == {"future", "moved"}
    assert pending(store) == 1
    drain(OutboxRelay(store.db, store.outbox, bus.producer()))
    (fired,) = read_everything(bus, topic)
    assert (fired.key, fired.value, fired.headers) == (
        "due",
        outgoing(topic, "due", 0).value,
        outgoing(topic, "due", 0).headers,
    )


def test_fire_due_takes_the_earliest_timers_first_up_to_its_limit(
    bus: Bus, store: ServiceStore, unique: Callable[[str], str]
) -> None:
    topic = unique("topic")
    bus.ensure_topic(topic, 1)
    now = now_ms()
    with store.db.transaction() as conn:
        for seq in (3, 0, 4, 1, 2):  # scheduled out of order, due in seq order
            store.timers.schedule(
                conn, f"t{seq}", now - 10_000 + seq * 1000, outgoing(topic, "saga", seq)
            )

    with store.db.transaction() as conn:
        assert store.timers.fire_due(conn, limit=2) == 2
    assert timer_ids(store) == {"t2", "t3", "t4"}
    with store.db.transaction() as conn:
        assert store.timers.fire_due(conn, limit=10) == 3

    drain(OutboxRelay(store.db, store.outbox, bus.producer()))
    assert seqs_by_key(read_everything(bus, topic)) == {"saga": [0, 1, 2, 3, 4]}
