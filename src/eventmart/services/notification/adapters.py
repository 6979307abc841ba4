"""notification's tables (SQLAlchemy Core: SQLite or PostgreSQL) and its mail drop."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    MetaData,
    String,
    Table,
    UniqueConstraint,
    bindparam,
    select,
)

from eventmart.platform.db import DriverStatement, FastInsert, upsert_statement
from eventmart.services.notification.domain import Customer, Mail


class CustomerTable:
    """What notification keeps of each account: where to write to."""

    def __init__(self, metadata: MetaData) -> None:
        self.t = Table(
            "customers",
            metadata,
            Column("user_id", String(64), primary_key=True),
            Column("email", String(320), nullable=False),
            Column("name", String(200), nullable=False),
        )
        c = self.t.c
        self._get = DriverStatement(
            select(c.user_id, c.email, c.name).where(c.user_id == bindparam("b_user"))
        )

    def put(self, conn: Connection, c: Customer) -> None:
        conn.execute(
            upsert_statement(conn, self.t), {"user_id": c.user_id, "email": c.email, "name": c.name}
        )

    def get(self, conn: Connection, user_id: str) -> Customer | None:
        row = self._get.first(conn, {"b_user": user_id})
        return Customer(*row) if row else None


class MailTable:
    """Every mail written, at most one per order and kind."""

    def __init__(self, metadata: MetaData) -> None:
        self.t = Table(
            "mails",
            metadata,
            Column("message_id", String(200), primary_key=True),
            Column("order_id", String(64), nullable=False),
            Column("to", String(320), nullable=False),
            Column("subject", String(300), nullable=False),
            Column("kind", String(32), nullable=False),
            Column("file", String(300), nullable=False),
            Column("created_at_ms", BigInteger, nullable=False),
            # An order is confirmed, cancelled or shipped once: a second event saying so
            # (republished with a new id) must not mail the customer twice.
            UniqueConstraint("order_id", "kind", name="uq_mails_order_kind"),
        )
        Index("ix_mails_to", self.t.c["to"], self.t.c.created_at_ms)
        # Each mail checks and records itself: on the driver (DriverStatement).
        self._insert = FastInsert(self.t, [c.name for c in self.t.columns])
        self._sent = DriverStatement(
            select(self.t.c.message_id).where(
                self.t.c.order_id == bindparam("b_order"), self.t.c.kind == bindparam("b_kind")
            )
        )

    def sent(self, conn: Connection, order_id: str, kind: str) -> bool:
        found = self._sent.first(conn, {"b_order": order_id, "b_kind": kind})
        return found is not None

    def add(self, conn: Connection, mail: Mail, created_at_ms: int) -> None:
        self._insert.execute(
            conn,
            [
                (
                    mail.message_id,
                    mail.order_id,
                    mail.to.email,
                    mail.subject,
                    mail.kind.value,
                    mail.file_name,
                    created_at_ms,
                )
            ],
        )

    def find(
        self, conn: Connection, to: str | None, order_id: str | None, limit: int
    ) -> list[dict[str, Any]]:
        query = select(self.t).order_by(self.t.c.created_at_ms, self.t.c.message_id).limit(limit)
        if to is not None:
            query = query.where(self.t.c["to"] == to)
        if order_id is not None:
            query = query.where(self.t.c.order_id == order_id)
        return [dict(r._mapping) for r in conn.execute(query)]


class MailDrop:
    """A directory of `.eml` files, one per mail. A file appears whole or not at all
    (written to a temporary file, then linked into place) and is never overwritten."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, file_name: str) -> Path:
        return self.directory / file_name

    def put(self, file_name: str, content: bytes) -> bool:
        """Write the file unless it exists; True if this call wrote it."""
        final = self.path(file_name)
        if final.exists():
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(content)
                f.flush()
                os.fsync(f.fileno())
            try:
                # A hard link fails if the name exists (a rename would replace it).
                os.link(tmp, final)
            except FileExistsError:
                return False
            except OSError:
                # No hard links on this file system: rename. Only a racing writer of the
                # same mail could be replaced, and a mail renders to the same bytes.
                if final.exists():
                    return False
                os.replace(tmp, final)
            self._sync_directory()
            return True
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _sync_directory(self) -> None:
        # Make the new name durable too, where the platform can (POSIX).
        if os.name != "posix":
            return
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
