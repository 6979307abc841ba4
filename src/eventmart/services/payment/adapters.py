"""payment's table and queries (SQLAlchemy Core: SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    MetaData,
    String,
    Table,
    bindparam,
    select,
)

from eventmart.platform.db import DriverStatement, driver_upsert
from eventmart.platform.messages import now_ms
from eventmart.services.payment.domain import Payment, PaymentStatus


class PaymentTable:
    """One row per order: the payment's current state (not event-sourced)."""

    def __init__(self, metadata: MetaData) -> None:
        self.t = Table(
            "payments",
            metadata,
            Column("order_id", String(64), primary_key=True),
            Column("status", String(16), nullable=False),
            Column("amount_cents", BigInteger, nullable=False),
            Column("currency", String(3), nullable=False),
            Column("card_token", String(64), nullable=False),
            Column("authorization_id", String(64), nullable=False),
            Column("reason", String(200), nullable=False),
            Column("updated_at_ms", BigInteger, nullable=False),
        )
        Index("ix_payments_status", self.t.c.status, self.t.c.updated_at_ms)
        # Built once, run on the driver: every command and timer reads and writes one.
        by_order = select(self.t).where(self.t.c.order_id == bindparam("b_order"))
        self._get = {
            False: DriverStatement(by_order),
            True: DriverStatement(by_order.with_for_update()),
        }
        self._save = driver_upsert(self.t)

    def _payment(self, row: Mapping[str, Any]) -> Payment:
        m = dict(row)
        m.pop("updated_at_ms")
        m["status"] = PaymentStatus(m["status"])
        return Payment(**m)

    def get(self, conn: Connection, order_id: str, *, for_update: bool = False) -> Payment | None:
        """The payment of an order; `for_update` locks the row (PostgreSQL) until commit,
        because a timer and a command about one order can arrive on different topics."""
        row = self._get[for_update].mapping(conn, {"b_order": order_id})
        return self._payment(row) if row else None

    def get_with_time(self, conn: Connection, order_id: str) -> tuple[Payment, int] | None:
        row = self._get[False].mapping(conn, {"b_order": order_id})
        return (self._payment(row), int(row["updated_at_ms"])) if row else None

    def save(self, conn: Connection, p: Payment) -> None:
        values = {
            "status": p.status.value,
            "amount_cents": p.amount_cents,
            "currency": p.currency,
            "card_token": p.card_token,
            "authorization_id": p.authorization_id,
            "reason": p.reason,
            "updated_at_ms": now_ms(),
        }
        self._save.run(conn, {"order_id": p.order_id, **values})

    def by_status(
        self, conn: Connection, status: PaymentStatus | None, limit: int
    ) -> list[tuple[Payment, int]]:
        query = select(self.t).order_by(self.t.c.updated_at_ms, self.t.c.order_id).limit(limit)
        if status is not None:
            query = query.where(self.t.c.status == status.value)
        return [
            (self._payment(dict(r._mapping)), int(r.updated_at_ms)) for r in conn.execute(query)
        ]
