"""The event store contract (see `eventmart.platform.store.eventstore.EventStore`).

Runs once per database backend of tests/contract/conftest.py, through the port only.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from eventmart.platform.db import Database
from eventmart.platform.errors import ConcurrencyError
from eventmart.platform.store import ServiceStore
from eventmart.platform.store.eventstore import Append, EventStore, NewEvent, Snapshot


@pytest.fixture
def store(database: Database) -> ServiceStore:
    s = ServiceStore(database)
    s.create()
    return s


def events(*names: str) -> list[NewEvent]:
    return [NewEvent(type=n, data=n.encode(), metadata=b"m:" + n.encode()) for n in names]


def append(db: Database, es: EventStore, stream: str, expected: int, *names: str) -> list[int]:
    with db.transaction() as conn:
        return es.append(conn, [Append(stream, expected, events(*names))])


def stream_of(db: Database, es: EventStore, stream: str, after: int = 0) -> list[tuple[int, str]]:
    with db.read() as conn:
        return [(e.version, e.type) for e in es.read_stream(conn, stream, after)]


def test_a_stream_reads_back_in_versions_one_to_n(
    database: Database, store: ServiceStore, unique: Callable[[str], str]
) -> None:
    es, stream = store.events, unique("order")

    assert append(database, es, stream, 0, "Placed", "Paid") == [2]
    assert append(database, es, stream, 2, "Shipped") == [3]

    with database.read() as conn:
        read = es.read_stream(conn, stream)
        assert es.current_version(conn, stream) == 3
        assert es.current_version(conn, unique("order")) == 0
        assert es.read_stream(conn, unique("order")) == []
    assert [(e.stream_id, e.version, e.type) for e in read] == [
        (stream, 1, "Placed"),
        (stream, 2, "Paid"),
        (stream, 3, "Shipped"),
    ]
    assert [(e.data, e.metadata) for e in read] == [
        (b"Placed", b"m:Placed"),
        (b"Paid", b"m:Paid"),
        (b"Shipped", b"m:Shipped"),
    ]
    assert all(e.recorded_at_ms > 0 for e in read)
    assert stream_of(database, es, stream, after=1) == [(2, "Paid"), (3, "Shipped")]


@pytest.mark.parametrize("expected", [1, 3], ids=["stale", "ahead"])
def test_a_wrong_expected_version_raises_and_the_transaction_writes_nothing(
    database: Database, store: ServiceStore, unique: Callable[[str], str], expected: int
) -> None:
    es, stream, other = store.events, unique("order"), unique("order")
    append(database, es, stream, 0, "Placed", "Paid")

    with pytest.raises(ConcurrencyError) as raised, database.transaction() as conn:
        es.append(conn, [Append(other, 0, events("Created"))])  # fine on its own
        es.append(conn, [Append(stream, expected, events("Shipped"))])

    assert (raised.value.stream_id, raised.value.expected) == (stream, expected)
    assert raised.value.actual == 2
    assert stream_of(database, es, stream) == [(1, "Placed"), (2, "Paid")]
    assert stream_of(database, es, other) == [], "the whole transaction rolled back"


def test_a_batch_append_across_streams_is_all_or_nothing(
    database: Database, store: ServiceStore, unique: Callable[[str], str]
) -> None:
    es = store.events
    a, b, c = unique("order"), unique("stock"), unique("stock")
    append(database, es, b, 0, "Received")

    with database.transaction() as conn:
        with pytest.raises(ConcurrencyError):
            es.append(
                conn,
                [
                    Append(a, 0, events("Placed")),
                    Append(b, 0, events("Reserved")),  # b is at 1: the conflict
                    Append(c, 0, events("Received")),
                ],
            )
        # The caller goes on in the same transaction: the failed append left nothing.
        assert es.append(conn, [Append(a, 0, events("Other")), Append(c, 0, [])]) == [1, 0]

    assert stream_of(database, es, a) == [(1, "Other")]
    assert stream_of(database, es, b) == [(1, "Received")]
    assert stream_of(database, es, c) == []

    with database.transaction() as conn:
        versions = es.append(
            conn, [Append(b, 1, events("Reserved", "Released")), Append(c, 0, events("R"))]
        )
    assert versions == [3, 1]


def test_read_all_follows_positions_with_after_and_limit(
    database: Database, store: ServiceStore, unique: Callable[[str], str]
) -> None:
    es = store.events
    with database.read() as conn:
        start = max((e.position for e in es.read_all(conn, 0, 1_000_000)), default=0)
    a, b = unique("order"), unique("order")
    append(database, es, a, 0, "a1", "a2")
    append(database, es, b, 0, "b1")
    append(database, es, a, 2, "a3")
    append(database, es, b, 1, "b2", "b3")

    with database.read() as conn:
        everything = es.read_all(conn, start, 100)
        positions = [e.position for e in everything]
        page = es.read_all(conn, positions[1], 3)
        tail = es.read_all(conn, positions[-1], 100)

    assert [e.type for e in everything] == ["a1", "a2", "b1", "a3", "b2", "b3"]
    assert positions == sorted(set(positions)), "positions strictly increase"
    assert [(e.stream_id, e.version) for e in everything][2:4] == [(b, 1), (a, 3)]
    assert [e.type for e in page] == ["b1", "a3", "b2"]
    assert tail == []


def test_positions_grow_in_commit_order_while_two_writers_append(
    database: Database, store: ServiceStore, unique: Callable[[str], str]
) -> None:
    """A follower that reads `read_all` after the last position it saw, while two threads
    append, ends up with every event: no position becomes visible behind its back."""
    es = store.events
    with database.read() as conn:
        start = max((e.position for e in es.read_all(conn, 0, 1_000_000)), default=0)
    writers_n, appends_n = 2, 60
    hot = unique("hot")  # both writers append here too, retrying on conflicts
    streams = [unique(f"w{i}") for i in range(writers_n)]
    done = threading.Event()
    errors: list[BaseException] = []
    followed: list[tuple[int, str, int]] = []

    def write(i: int) -> None:
        try:
            for n in range(appends_n):
                append(database, es, streams[i], n, f"w{i}-{n}")
                while True:
                    try:
                        with database.transaction() as conn:
                            version = es.current_version(conn, hot)
                            es.append(conn, [Append(hot, version, events(f"hot-{i}-{n}"))])
                        break
                    except ConcurrencyError:
                        continue
        except BaseException as e:
            errors.append(e)

    def follow() -> None:
        try:
            last = start
            while True:
                finished = done.is_set()
                with database.read() as conn:
                    batch = es.read_all(conn, last, 17)
                followed.extend((e.position, e.stream_id, e.version) for e in batch)
                if batch:
                    last = batch[-1].position
                elif finished:
                    return
        except BaseException as e:
            errors.append(e)

    writers = [threading.Thread(target=write, args=(i,)) for i in range(writers_n)]
    follower = threading.Thread(target=follow)
    follower.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    done.set()
    follower.join()
    assert not errors, errors

    with database.read() as conn:
        everything = [
            (e.position, e.stream_id, e.version) for e in es.read_all(conn, start, 10_000)
        ]
        hot_versions = [e.version for e in es.read_stream(conn, hot)]
    assert len(everything) == 2 * writers_n * appends_n
    assert followed == everything, "the follower missed or reordered events"
    assert [p for p, _, _ in everything] == sorted({p for p, _, _ in everything})
    for stream in streams:
        versions = [v for _, s, v in everything if s == stream]
        assert versions == list(range(1, appends_n + 1)), "a writer's appends in its order"
    assert hot_versions == list(range(1, writers_n * appends_n + 1))


def test_snapshots_keep_the_newest_version(
    database: Database, store: ServiceStore, unique: Callable[[str], str]
) -> None:
    es, stream, other = store.events, unique("order"), unique("order")

    def save(version: int, data: bytes, stream_id: str = stream) -> None:
        with database.transaction() as conn:
            es.save_snapshot(conn, Snapshot(stream_id, version, "OrderState", data))

    def load(stream_id: str = stream) -> Snapshot | None:
        with database.read() as conn:
            return es.load_snapshot(conn, stream_id)

    assert load() is None
    save(3, b"three")
    assert load() == Snapshot(stream, 3, "OrderState", b"three")
    save(5, b"five")
    save(4, b"four")  # older than what is there: ignored
    assert load() == Snapshot(stream, 5, "OrderState", b"five")
    save(1, b"one", other)
    assert load(other) == Snapshot(other, 1, "OrderState", b"one")
    assert load() == Snapshot(stream, 5, "OrderState", b"five")
