"""Event store: eventmart's SqlEventStore on SQLite against raw sqlite3 and `eventsourcing`.

Workload, the same for every contender: N aggregates get k events each, in k rounds of one
event per aggregate (round 1 creates the streams, later rounds append to existing streams
at their expected version), 100 aggregates per transaction. Each event's payload is a
small struct (product id, quantity, price) serialized by the contender's usual means.

- eventmart: `SqlEventStore.append(conn, [Append(stream, expected_version, [NewEvent])]*100)`
  in one `Database.transaction()`, the payload encoded with msgspec as the services do.
- raw sqlite3: one `executemany` INSERT per batch into the same `es_events` table (created
  from eventmart's own metadata), payload encoded the same way; no version check at all.
  The floor of what SQLite itself costs.
- eventsourcing: its `Application` on `eventsourcing.sqlite`; aggregates are created or
  changed through their `@event` methods and saved with `app.save(*100 aggregates)`. The
  library's SQLite connections are set to `synchronous=NORMAL`, like eventmart's (its
  default is FULL, an fsync per commit: reported separately, as "eventsourcing default").

Reads: every stream once (eventmart `read_stream` in a read transaction; eventsourcing
`recorder.select_events`; raw SELECT by stream), and the whole store in global order, 1000
per page (`read_all`; `recorder.select_notifications`; raw SELECT by position).
"""

from __future__ import annotations

import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, partial
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import MetaData

from bench.common import BenchResult, Context, Figure, Floor, Measure, Timer, alternate
from eventmart.platform.db import Database
from eventmart.platform.store.eventstore import Append, NewEvent, SqlEventStore

Rates = tuple[float, float]  # (per second, per CPU-second)

NAME = "event_store"
TITLE = "event store"
BATCH = 100
PAGE = 1000

EM = "eventmart"
RAW = "raw sqlite3"
ES = "eventsourcing"
ES_DEFAULT = "eventsourcing default (sync FULL)"


class ItemAdded(msgspec.Struct, frozen=True):
    product_id: str
    quantity: int
    price_cents: int


_encode = msgspec.json.Encoder().encode


def _sizes(quick: bool) -> tuple[int, int, int]:
    """(aggregates, events per aggregate, rounds)."""
    return (1_000, 5, 1) if quick else (5_000, 10, 3)


# -- eventmart ----------------------------------------------------------------------------


def _eventmart(folder: Path, n: int, k: int) -> dict[str, Rates]:
    db = Database(f"sqlite:///{folder / 'eventmart.db'}")
    metadata = MetaData()
    store = SqlEventStore(metadata)
    metadata.create_all(db.engine)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    try:
        with Timer() as took:
            for version in range(k):
                for i in range(0, n, BATCH):
                    with db.transaction() as conn:
                        store.append(
                            conn,
                            [
                                Append(
                                    sid,
                                    version,
                                    [
                                        NewEvent(
                                            "ItemAdded",
                                            _encode(ItemAdded(f"p-{version}", version + 1, 1299)),
                                        )
                                    ],
                                )
                                for sid in ids[i : i + BATCH]
                            ],
                        )
        append = took.rates(n * k)
        with Timer() as took:
            for sid in ids:
                with db.read() as conn:
                    events = store.read_stream(conn, sid)
                assert len(events) == k
        stream = took.rates(n)
        with Timer() as took:
            seen, position = 0, 0
            while True:
                with db.read() as conn:
                    page = store.read_all(conn, position, PAGE)
                if not page:
                    break
                seen += len(page)
                position = page[-1].position
        all_ = took.rates(n * k)
        assert seen == n * k
    finally:
        db.dispose()
    return {"append": append, "stream": stream, "all": all_}


# -- raw sqlite3 --------------------------------------------------------------------------


def _raw(folder: Path, n: int, k: int) -> dict[str, Rates]:
    path = folder / "raw.db"
    db = Database(f"sqlite:///{path}")
    metadata = MetaData()
    SqlEventStore(metadata)
    metadata.create_all(db.engine)  # the same table, constraints and indexes
    db.dispose()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    ids = [str(uuid.uuid4()) for _ in range(n)]
    insert = (
        "INSERT INTO es_events (stream_id, version, type, data, metadata, recorded_at_ms) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )
    try:
        with Timer() as took:
            for version in range(k):
                for i in range(0, n, BATCH):
                    now = time.time_ns() // 1_000_000
                    conn.execute("BEGIN IMMEDIATE")
                    conn.executemany(
                        insert,
                        [
                            (
                                sid,
                                version + 1,
                                "ItemAdded",
                                _encode(ItemAdded(f"p-{version}", version + 1, 1299)),
                                b"",
                                now,
                            )
                            for sid in ids[i : i + BATCH]
                        ],
                    )
                    conn.execute("COMMIT")
        append = took.rates(n * k)
        select = (
            "SELECT stream_id, version, position, type, data, metadata, recorded_at_ms "
            "FROM es_events WHERE stream_id = ? AND version > 0 ORDER BY version"
        )
        with Timer() as took:
            for sid in ids:
                rows = conn.execute(select, (sid,)).fetchall()
                assert len(rows) == k
        stream = took.rates(n)
        select_all = (
            "SELECT stream_id, version, position, type, data, metadata, recorded_at_ms "
            "FROM es_events WHERE position > ? ORDER BY position LIMIT ?"
        )
        with Timer() as took:
            seen, position = 0, 0
            while True:
                rows = conn.execute(select_all, (position, PAGE)).fetchall()
                if not rows:
                    break
                seen += len(rows)
                position = rows[-1][2]
        all_ = took.rates(n * k)
        assert seen == n * k
    finally:
        conn.close()
    return {"append": append, "stream": stream, "all": all_}


# -- eventsourcing ------------------------------------------------------------------------


@contextmanager
def _eventsourcing_env(dbname: Path, synchronous: str | None) -> Iterator[None]:
    """The library reads its persistence settings from the environment; and, when
    `synchronous` is given, its SQLite connections get that PRAGMA (as eventmart's do)."""
    from eventsourcing.sqlite import SQLiteConnectionPool

    saved = {k: os.environ.get(k) for k in ("PERSISTENCE_MODULE", "SQLITE_DBNAME")}
    os.environ["PERSISTENCE_MODULE"] = "eventsourcing.sqlite"
    os.environ["SQLITE_DBNAME"] = str(dbname)
    original = SQLiteConnectionPool._create_connection

    def create(self: Any) -> Any:
        conn = original(self)
        if synchronous is not None:
            conn._sqlite_conn.execute(f"PRAGMA synchronous={synchronous}")
        return conn

    SQLiteConnectionPool._create_connection = create  # type: ignore[method-assign]
    try:
        yield
    finally:
        SQLiteConnectionPool._create_connection = original  # type: ignore[method-assign]
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@cache
def _cart_class() -> type[Any]:
    from eventsourcing.domain import Aggregate, event

    class Cart(Aggregate):
        @event("Created")
        def __init__(self, product_id: str, quantity: int, price_cents: int) -> None:
            self.lines = 1

        @event("ItemAdded")
        def add_item(self, product_id: str, quantity: int, price_cents: int) -> None:
            self.lines += 1

    return Cart


def _eventsourcing(
    folder: Path, n: int, k: int, *, synchronous: str | None, reads: bool
) -> dict[str, Rates]:
    from eventsourcing.application import Application

    cart = _cart_class()
    name = "es.db" if synchronous else "es-default.db"
    with _eventsourcing_env(folder / name, synchronous):
        app: Any = Application()
        try:
            carts: list[Any] = []
            with Timer() as took:
                for i in range(0, n, BATCH):
                    batch = [cart("p-0", 1, 1299) for _ in range(min(BATCH, n - i))]
                    carts.extend(batch)
                    app.save(*batch)
                for version in range(1, k):
                    for i in range(0, n, BATCH):
                        batch = carts[i : i + BATCH]
                        for c in batch:
                            c.add_item(f"p-{version}", version + 1, 1299)
                        app.save(*batch)
            out = {"append": took.rates(n * k)}
            if not reads:
                return out
            recorder = app.recorder
            with Timer() as took:
                for c in carts:
                    events = recorder.select_events(c.id)
                    assert len(events) == k
            out["stream"] = took.rates(n)
            with Timer() as took:
                seen, start = 0, 1
                while True:
                    page = recorder.select_notifications(start, PAGE)
                    if not page:
                        break
                    seen += len(page)
                    start = page[-1].id + 1
            out["all"] = took.rates(n * k)
            assert seen == n * k
            return out
        finally:
            app.close()


# -- the benchmark ------------------------------------------------------------------------


def run(ctx: Context) -> BenchResult:
    n, k, rounds = _sizes(ctx.quick)
    result = BenchResult(NAME, TITLE)
    samples: dict[str, dict[str, Measure]] = {
        who: {m: Measure(who) for m in ("append", "stream", "all")}
        for who in (EM, RAW, ES, ES_DEFAULT)
    }
    ctx.steps(rounds * 4)
    for round_ in range(rounds):
        folder = ctx.dir(f"event-store-{round_}")
        contenders: list[tuple[str, Callable[[], dict[str, Rates]]]] = [
            (EM, partial(_eventmart, folder, n, k)),
            (RAW, partial(_raw, folder, n, k)),
            (ES, partial(_eventsourcing, folder, n, k, synchronous="NORMAL", reads=True)),
            (ES_DEFAULT, partial(_eventsourcing, folder, n, k, synchronous=None, reads=False)),
        ]
        for who, fn in alternate(round_, contenders):
            ctx.step(f"round {round_ + 1}/{rounds}: {who}")
            for metric, value in fn().items():
                samples[who][metric].add(value)

    def figure(metric: str, label: str, unit: str, baselines: list[str], **kw: Any) -> Figure:
        return Figure(
            NAME,
            label,
            unit,
            samples[EM][metric],
            [samples[b][metric] for b in baselines if samples[b][metric].samples],
            **kw,
        )

    result.figures = [
        figure(
            "append",
            f"append, {BATCH} streams/tx",
            "events/s",
            [RAW, ES, ES_DEFAULT],
            floor=Floor("min_ratio", 2.0, ES),
        ),
        figure("stream", "read one stream", "streams/s", [RAW, ES]),
        figure("all", f"read all, {PAGE}/page", "events/s", [RAW, ES]),
    ]
    result.notes.append(
        f"{n:,} aggregates x {k} events ({n * k:,} events), {BATCH} aggregates per "
        f"transaction, {rounds} round(s); SQLite WAL, synchronous=NORMAL for all but "
        "'eventsourcing default'."
    )
    return result
