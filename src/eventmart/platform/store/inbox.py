"""The inbox: idempotent consumers. A handler's effects and the ids of the messages it
processed commit in one transaction, so a redelivered message has no second effect."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import BigInteger, Column, Connection, MetaData, String, Table, and_, delete, select

from eventmart.platform.messages import now_ms

_CHUNK = 500


class Inbox:
    """Per consumer (a group or a projection), the message ids it has processed."""

    def __init__(self, metadata: MetaData) -> None:
        self.table = Table(
            "inbox",
            metadata,
            Column("consumer", String(200), primary_key=True),
            Column("message_id", String(100), primary_key=True),
            Column("processed_at_ms", BigInteger, nullable=False),
        )

    def claim(self, conn: Connection, consumer: str, message_ids: Sequence[str]) -> set[str]:
        """Record the ids not seen before and return them; the caller handles only those.

        Runs in the caller's transaction: if the handling fails and rolls back, the claim
        rolls back with it.
        """
        t = self.table
        wanted = list(dict.fromkeys(message_ids))
        seen: set[str] = set()
        for i in range(0, len(wanted), _CHUNK):
            chunk = wanted[i : i + _CHUNK]
            seen.update(
                conn.execute(
                    select(t.c.message_id).where(
                        and_(t.c.consumer == consumer, t.c.message_id.in_(chunk))
                    )
                ).scalars()
            )
        new = [m for m in wanted if m not in seen]
        if new:
            now = now_ms()
            conn.execute(
                t.insert(),
                [{"consumer": consumer, "message_id": m, "processed_at_ms": now} for m in new],
            )
        return set(new)

    def forget(self, conn: Connection, consumer: str) -> None:
        """Drop a consumer's history (before a replay that rebuilds its effects)."""
        conn.execute(delete(self.table).where(self.table.c.consumer == consumer))
