"""Inventory's storage: stock streams in the event store (msgspec JSON events, a snapshot
every `SNAPSHOT_EVERY` events) and the tables of what each order holds (SQLAlchemy Core:
SQLite or PostgreSQL).

Everything takes the caller's connection, so a stream append, the order's rows, the inbox
and the outbox commit in one transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgspec
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    and_,
    bindparam,
    func,
    select,
    update,
)

from eventmart.platform.messages import now_ms
from eventmart.platform.store.eventstore import Append, EventStore, NewEvent, Snapshot, StoredEvent
from eventmart.services.inventory.domain import (
    EVENT_TYPES,
    StockEvent,
    StockItem,
    StockState,
    stream_id,
)

SNAPSHOT_EVERY = 50
# Bump the version when StockState changes shape: older snapshots are then ignored and the
# stream is folded from its first event (always correct, only slower).
SNAPSHOT_TYPE = "StockState.v1"

_encode = msgspec.json.Encoder().encode
_event_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    cls.__name__: msgspec.json.Decoder(cls) for cls in EVENT_TYPES
}
_state_decoder = msgspec.json.Decoder(StockState)


def encode_event(event: StockEvent) -> NewEvent:
    return NewEvent(type=type(event).__name__, data=_encode(event))


def decode_event(stored: StoredEvent) -> StockEvent:
    decoder = _event_decoders.get(stored.type)
    if decoder is None:
        raise ValueError(f"{stored.stream_id}@{stored.version}: unknown event type {stored.type}")
    event: StockEvent = decoder.decode(stored.data)
    return event


def event_data(stored: StoredEvent) -> dict[str, Any]:
    """An event's body as plain JSON values (for the history API)."""
    data: dict[str, Any] = msgspec.json.decode(stored.data)
    return data


class StockStreams:
    """The `StockItem` repository: load from snapshot + later events, save by appending
    each item's changes with the version it was loaded at (ConcurrencyError if another
    writer got there first)."""

    def __init__(self, events: EventStore) -> None:
        self.events = events

    def load(self, conn: Connection, product_id: str) -> StockItem | None:
        """The item, or None if the product has no stream (it never had stock)."""
        sid = stream_id(product_id)
        snap = self.events.load_snapshot(conn, sid)
        if snap is not None and snap.type != SNAPSHOT_TYPE:
            snap = None
        after = snap.version if snap is not None else 0
        stored = self.events.read_stream(conn, sid, after_version=after)
        if snap is None and not stored:
            return None
        return StockItem.rebuild(
            product_id,
            (decode_event(e) for e in stored),
            snapshot=_state_decoder.decode(snap.data) if snap is not None else None,
            snapshot_version=after,
        )

    def load_many(self, conn: Connection, product_ids: Iterable[str]) -> dict[str, StockItem]:
        """The items that exist, by product id (unknown products are left out)."""
        found: dict[str, StockItem] = {}
        for pid in dict.fromkeys(product_ids):
            item = self.load(conn, pid)
            if item is not None:
                found[pid] = item
        return found

    def save(self, conn: Connection, items: Sequence[StockItem]) -> None:
        """Append every item's changes in one multi-stream append, snapshot the items that
        crossed a multiple of SNAPSHOT_EVERY, and mark the changes as saved."""
        changed = [i for i in items if i.changes]
        self.events.append(
            conn,
            [
                Append(stream_id(i.product_id), i.version, [encode_event(e) for e in i.changes])
                for i in changed
            ],
        )
        for item in changed:
            new_version = item.current_version
            if new_version // SNAPSHOT_EVERY > item.version // SNAPSHOT_EVERY:
                self.events.save_snapshot(
                    conn,
                    Snapshot(
                        stream_id(item.product_id),
                        new_version,
                        SNAPSHOT_TYPE,
                        _encode(item.snapshot()),
                    ),
                )
            item.version = new_version
            item.changes.clear()

    def history(self, conn: Connection, product_id: str, after_version: int) -> list[StoredEvent]:
        return self.events.read_stream(conn, stream_id(product_id), after_version=after_version)

    def version(self, conn: Connection, product_id: str) -> int:
        """The stream's version; 0 if the product has no stream."""
        return self.events.current_version(conn, stream_id(product_id))

    def any_stock(self, conn: Connection) -> bool:
        """Whether any stream exists yet (the demo stock is received only into an empty store)."""
        return bool(self.events.read_all(conn, 0, 1))


class LineState(StrEnum):
    """Where one product of an order stands (the states GET /reservations shows)."""

    RESERVED = "reserved"
    COMMITTED = "committed"
    RELEASED = "released"
    RETURNED = "returned"


@dataclass(frozen=True, slots=True)
class Holding:
    """One product of an order: what it reserved and where that stands now."""

    product_id: str
    quantity: int
    state: LineState
    reason: str
    expires_at_ms: int


class OrderReservations:
    """Which products each order touched, and their state (mirrors the streams' events,
    written in the same transaction): the index the release, commit and expiry paths
    and GET /reservations use, instead of scanning streams."""

    def __init__(self, metadata: MetaData) -> None:
        self.t = Table(
            "order_reservations",
            metadata,
            Column("order_id", String(100), nullable=False),
            Column("product_id", String(64), nullable=False),
            Column("line_no", Integer, nullable=False),
            Column("quantity", Integer, nullable=False),
            Column("state", String(16), nullable=False),
            Column("reason", String(100), nullable=False),
            Column("expires_at_ms", BigInteger, nullable=False),
            Column("updated_at_ms", BigInteger, nullable=False),
            PrimaryKeyConstraint("order_id", "product_id"),
        )
        Index("ix_order_reservations_due", self.t.c.state, self.t.c.expires_at_ms)
        c = self.t.c
        # Statements built once (their cache keys are memoized on the objects).
        self._insert = self.t.insert()
        self._lines = (
            select(c.product_id, c.quantity, c.state, c.reason, c.expires_at_ms)
            .where(c.order_id == bindparam("b_order"))
            .order_by(c.line_no)
        )
        self._set_state = (
            update(self.t)
            .where(
                c.order_id == bindparam("b_order"),
                c.product_id.in_(bindparam("b_products", expanding=True)),
            )
            .values(
                state=bindparam("b_state"),
                reason=bindparam("b_reason"),
                updated_at_ms=bindparam("b_at"),
            )
        )

    def add(
        self, conn: Connection, order_id: str, lines: Sequence[tuple[str, int]], expires_at_ms: int
    ) -> None:
        now = now_ms()
        conn.execute(
            self._insert,
            [
                {
                    "order_id": order_id,
                    "product_id": pid,
                    "line_no": n,
                    "quantity": qty,
                    "state": LineState.RESERVED.value,
                    "reason": "",
                    "expires_at_ms": expires_at_ms,
                    "updated_at_ms": now,
                }
                for n, (pid, qty) in enumerate(lines)
            ],
        )

    def lines(self, conn: Connection, order_id: str) -> list[Holding]:
        rows = conn.execute(self._lines, {"b_order": order_id}).all()
        return [Holding(r[0], int(r[1]), LineState(r[2]), r[3], int(r[4])) for r in rows]

    def set_state(
        self,
        conn: Connection,
        order_id: str,
        product_ids: Sequence[str],
        state: LineState,
        reason: str = "",
    ) -> None:
        if not product_ids:
            return
        conn.execute(
            self._set_state,
            {
                "b_order": order_id,
                "b_products": list(product_ids),
                "b_state": state.value,
                "b_reason": reason,
                "b_at": now_ms(),
            },
        )

    def due(self, conn: Connection, now: int, limit: int) -> list[str]:
        """Orders holding a reservation that expired at or before `now`, oldest first."""
        c = self.t.c
        rows = conn.execute(
            select(c.order_id)
            .where(and_(c.state == LineState.RESERVED.value, c.expires_at_ms <= now))
            .group_by(c.order_id)
            .order_by(func.min(c.expires_at_ms))
            .limit(limit)
        ).all()
        return [r[0] for r in rows]


class Outcome(StrEnum):
    """How an order's ReserveStock was decided: all lines reserved, or none."""

    RESERVED = "reserved"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class ReservationOutcome:
    """How an order's ReserveStock was decided, once: repeats re-announce it."""

    order_id: str
    outcome: Outcome
    reason: str = ""
    unavailable: tuple[str, ...] = ()


class ReservationOutcomes:
    """One decision per order, recorded in the transaction that made it."""

    def __init__(self, metadata: MetaData) -> None:
        self.t = Table(
            "reservation_outcomes",
            metadata,
            Column("order_id", String(100), primary_key=True),
            Column("outcome", String(16), nullable=False),
            Column("reason", String(100), nullable=False),
            Column("unavailable", Text, nullable=False),  # JSON list of product ids
            Column("decided_at_ms", BigInteger, nullable=False),
        )
        c = self.t.c
        self._get = select(c.outcome, c.reason, c.unavailable).where(
            c.order_id == bindparam("b_order")
        )
        self._insert = self.t.insert()

    def get(self, conn: Connection, order_id: str) -> ReservationOutcome | None:
        row = conn.execute(self._get, {"b_order": order_id}).first()
        if row is None:
            return None
        unavailable: list[str] = msgspec.json.decode(row[2])
        return ReservationOutcome(order_id, Outcome(row[0]), row[1], tuple(unavailable))

    def record(self, conn: Connection, outcome: ReservationOutcome) -> None:
        conn.execute(
            self._insert,
            {
                "order_id": outcome.order_id,
                "outcome": outcome.outcome.value,
                "reason": outcome.reason,
                "unavailable": _encode(list(outcome.unavailable)).decode(),
                "decided_at_ms": now_ms(),
            },
        )
