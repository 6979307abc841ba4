"""How an account comes to be, over HTTP or from the command line: validate, hash, store
and announce `UserRegistered` in one unit of work."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from sqlalchemy.exc import IntegrityError

from eventmart.contracts.identity import UserRegistered
from eventmart.platform.messages import new_id
from eventmart.platform.messaging import UnitOfWork
from eventmart.services.identity.adapters import Passwords, UserTable, utc_now
from eventmart.services.identity.domain import (
    EmailTakenError,
    User,
    check_email,
    check_name,
    check_password,
    role_for,
)

TAKEN = "email: already registered"


def create_user(
    new_uow: Callable[[], AbstractContextManager[UnitOfWork]],
    users: UserTable,
    passwords: Passwords,
    *,
    email: str,
    password: str,
    name: str,
    admin: bool = False,
) -> User:
    """Create an account and publish `UserRegistered` with it (same transaction).

    Raises `IdentityError` naming the field for bad input, and `EmailTakenError` when the
    address is taken — also when `admin` is asked for an existing account: an existing
    user's role is never changed behind their back.
    """
    email = check_email(email)
    check_password(password)
    name = check_name(name)
    role = role_for(admin)
    # Hash before the transaction opens: argon2 takes ~0.1 s of CPU, and the write lock
    # (SQLite) or the row locks (PostgreSQL) should not wait for it.
    user = User(
        user_id=new_id(),
        email=email,
        name=name,
        role=role,
        password_hash=passwords.hash(password),
        created_at=utc_now(),
    )
    try:
        with new_uow() as uow:
            existing = users.by_email(uow.conn, email)
            if existing is not None:
                raise EmailTakenError(_taken(existing.role, admin))
            users.add(uow.conn, user)
            uow.publish(UserRegistered(user_id=user.user_id, email=email, name=name, role=role))
    except IntegrityError as e:
        # Two registrations of one address at once (PostgreSQL): the unique index decides.
        raise EmailTakenError(_taken(None, admin)) from e
    return user


def _taken(existing_role: str | None, admin: bool) -> str:
    if not admin:
        return TAKEN
    as_role = f" as a {existing_role}" if existing_role else ""
    return f"{TAKEN}{as_role}; the role of an existing account is not changed"
