"""shipping's tables and queries (SQLAlchemy Core: SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    bindparam,
    select,
)

from eventmart.platform.db import DriverStatement, column_params, dialect_insert, driver_insert
from eventmart.services.shipping.domain import Shipment, ShipmentStatus


class ShipmentTable:
    """One shipment per order at most (`order_id` is unique)."""

    def __init__(self, metadata: MetaData) -> None:
        self.t = Table(
            "shipments",
            metadata,
            Column("shipment_id", String(64), primary_key=True),
            Column("order_id", String(64), nullable=False, unique=True),
            Column("customer_id", String(64), nullable=False),
            Column("status", String(16), nullable=False),
            Column("tracking_code", String(64), nullable=False),
            Column("created_at_ms", BigInteger, nullable=False),
            Column("dispatched_at_ms", BigInteger, nullable=True),
            Column("delivered_at_ms", BigInteger, nullable=True),
            Column("cancelled_at_ms", BigInteger, nullable=True),
            Column("cancellation_reason", String(200), nullable=False),
        )
        t = self.t
        # Statements built once and run on the driver: every shipment event reads and
        # writes one row.
        self._by = {
            (column, lock): DriverStatement(
                select(t).where(t.c[column] == bindparam("b_key")).with_for_update()
                if lock
                else select(t).where(t.c[column] == bindparam("b_key"))
            )
            for column in ("order_id", "shipment_id")
            for lock in (False, True)
        }
        self._insert = driver_insert(t)
        self._update = DriverStatement(
            t.update()
            .where(t.c.shipment_id == bindparam("b_id"))
            .values(column_params(c.name for c in t.columns if c.name != "shipment_id"))
        )

    @staticmethod
    def _shipment(row: Mapping[str, Any]) -> Shipment:
        m = dict(row)
        m["status"] = ShipmentStatus(m["status"])
        return Shipment(**m)

    def _one(self, conn: Connection, column: str, key: str, for_update: bool) -> Shipment | None:
        # for_update: a timer (shipping.internal) and a cancellation (ordering.events) for
        # one order can be handled at once by different consumers: serialize them.
        row = self._by[column, for_update].mapping(conn, {"b_key": key})
        return self._shipment(row) if row else None

    def by_order(
        self, conn: Connection, order_id: str, *, for_update: bool = False
    ) -> Shipment | None:
        return self._one(conn, "order_id", order_id, for_update)

    def by_id(
        self, conn: Connection, shipment_id: str, *, for_update: bool = False
    ) -> Shipment | None:
        return self._one(conn, "shipment_id", shipment_id, for_update)

    def add(self, conn: Connection, s: Shipment) -> None:
        self._insert.run(conn, _values(s))

    def save(self, conn: Connection, s: Shipment) -> None:
        values = _values(s)
        values["b_id"] = values.pop("shipment_id")
        self._update.run(conn, values)


def _values(s: Shipment) -> dict[str, Any]:
    return {
        "shipment_id": s.shipment_id,
        "order_id": s.order_id,
        "customer_id": s.customer_id,
        "status": s.status.value,
        "tracking_code": s.tracking_code,
        "created_at_ms": s.created_at_ms,
        "dispatched_at_ms": s.dispatched_at_ms,
        "delivered_at_ms": s.delivered_at_ms,
        "cancelled_at_ms": s.cancelled_at_ms,
        "cancellation_reason": s.cancellation_reason,
    }


class CancelledOrderTable:
    """Orders cancelled before any shipment existed for them: a late (redriven)
    OrderConfirmed for one of these creates nothing."""

    def __init__(self, metadata: MetaData) -> None:
        self.t = Table(
            "cancelled_orders",
            metadata,
            Column("order_id", String(64), primary_key=True),
            Column("reason", String(200), nullable=False),
            Column("cancelled_at_ms", BigInteger, nullable=False),
        )
        self._contains = select(self.t.c.order_id).where(self.t.c.order_id == bindparam("b_id"))

    def record(self, conn: Connection, order_id: str, reason: str, at_ms: int) -> None:
        conn.execute(
            dialect_insert(conn, self.t).on_conflict_do_nothing(index_elements=["order_id"]),
            {"order_id": order_id, "reason": reason, "cancelled_at_ms": at_ms},
        )

    def contains(self, conn: Connection, order_id: str) -> bool:
        return conn.execute(self._contains, {"b_id": order_id}).first() is not None
