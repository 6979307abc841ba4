"""identity's tables and queries (SQLAlchemy Core: SQLite or PostgreSQL) and its password
hasher (argon2id)."""

from __future__ import annotations

import threading
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


class Passwords:
    """Hashes and verifies passwords with argon2id (RFC 9106 parameters, argon2-cffi's
    defaults). Verification compares in constant time, and `verify_unknown` spends the same
    time when there is no account, so response times do not tell which e-mails exist."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        self._dummy: str | None = None
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    def verify_unknown(self, password: str) -> bool:
        """Do the work of a verification for an account that does not exist; always False."""
        with self._lock:
            if self._dummy is None:
                self._dummy = self._hasher.hash("not-a-password-anyone-has")
        self.verify(self._dummy, password)
        return False

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with weaker parameters than the current ones."""
        return self._hasher.check_needs_rehash(password_hash)
