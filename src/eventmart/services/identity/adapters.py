"""identity's tables and queries (SQLAlchemy Core: SQLite or PostgreSQL) and its password
hasher (argon2id)."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    MetaData,
    RowMapping,
    String,
    Table,
    select,
    update,
)

from eventmart.services.identity.domain import User


class UserTable:
    """Accounts; `email` is unique and stored lower-cased, so uniqueness is case-insensitive."""

    def __init__(self, metadata: MetaData) -> None:
        self.t = Table(
            "users",
            metadata,
            Column("user_id", String(64), primary_key=True),
            Column("email", String(254), nullable=False, unique=True),
            Column("name", String(100), nullable=False),
            Column("role", String(16), nullable=False),
            Column("password_hash", String(255), nullable=False),
            Column("created_at", DateTime(timezone=True), nullable=False),
        )

    def add(self, conn: Connection, user: User) -> None:
        conn.execute(
            self.t.insert().values(
                user_id=user.user_id,
                email=user.email,
                name=user.name,
                role=user.role,
                password_hash=user.password_hash,
                created_at=user.created_at,
            )
        )

    def by_email(self, conn: Connection, email: str) -> User | None:
        row = conn.execute(select(self.t).where(self.t.c.email == email)).first()
        return _user(row._mapping) if row else None

    def by_id(self, conn: Connection, user_id: str) -> User | None:
        row = conn.execute(select(self.t).where(self.t.c.user_id == user_id)).first()
        return _user(row._mapping) if row else None

    def set_password_hash(self, conn: Connection, user_id: str, password_hash: str) -> None:
        conn.execute(
            update(self.t).where(self.t.c.user_id == user_id).values(password_hash=password_hash)
        )


def _user(row: RowMapping) -> User:
    created = row["created_at"]
    if created.tzinfo is None:  # SQLite keeps no zone; we only ever store UTC
        created = created.replace(tzinfo=UTC)
    return User(
        user_id=row["user_id"],
        email=row["email"],
        name=row["name"],
        role=row["role"],
        password_hash=row["password_hash"],
        created_at=created,
    )


def utc_now() -> datetime:
    return datetime.now(UTC)


def cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


class PasswordsBusyError(Exception):
    """As many password hashes as CPUs are being computed already: come back later."""


class Passwords:
    """Hashes and verifies passwords with argon2id (RFC 9106 parameters, argon2-cffi's
    defaults). Verification compares in constant time, and `verify_unknown` spends the same
    time when there is no account, so response times do not tell which e-mails exist.

    At most `max_concurrent` hashes or verifications run at once (default: one per CPU).
    Each costs ~0.1 s of CPU and 64 MiB: more at once only makes every one of them slower
    and the memory grow. A request beyond the bound waits up to `max_wait_s` for a slot (a
    short burst of logins is served, a little later); when none frees in that time,
    `PasswordsBusyError` is raised (the API answers 503 + Retry-After) instead of letting
    the queue, and the latency of everyone in it, grow without bound."""

    def __init__(
        self,
        hasher: PasswordHasher | None = None,
        max_concurrent: int | None = None,
        max_wait_s: float = 2.0,
    ) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None
        self._lock = threading.Lock()
        self.max_concurrent = max_concurrent or cpu_count()
        self.max_wait_s = max_wait_s
        self._slots = threading.BoundedSemaphore(self.max_concurrent)

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the `max_concurrent` slots, waiting at most `max_wait_s` for it;
        raise `PasswordsBusyError` when none frees in that time."""
        if not self._slots.acquire(timeout=self.max_wait_s):
            raise PasswordsBusyError(
                f"{self.max_concurrent} password checks kept running for {self.max_wait_s} s"
            )
        try:
            yield
        finally:
            self._slots.release()

    def hash(self, password: str) -> str:
        with self.slot():
            return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        with self.slot():
            return self._check(password_hash, password)

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_unknown(self, password: str) -> bool:
        """Do the work of a verification for an account that does not exist; always False."""
        with self.slot():
            with self._lock:
                if self._dummy is None:
                    self._dummy = self._hasher.hash("not-a-password-anyone-has")
            self._check(self._dummy, password)
        return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with weaker parameters than the current ones."""
        return self._hasher.check_needs_rehash(password_hash)
