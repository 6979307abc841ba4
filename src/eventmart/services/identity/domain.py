"""The identity rules: what a valid account is. Pure: no framework, no I/O.

Each check returns the normalized value or raises `IdentityError` whose message starts with
the field it is about (`email: ...`), so callers can show it as it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from email_validator import EmailNotValidError, validate_email

CUSTOMER: Final = "customer"
ADMIN: Final = "admin"
ROLES: Final = frozenset({CUSTOMER, ADMIN})

PASSWORD_MIN: Final = 8
PASSWORD_MAX: Final = 128
NAME_MAX: Final = 100
EMAIL_MAX: Final = 254  # RFC 5321's limit on a forward path, minus the angle brackets


class IdentityError(ValueError):
    """A request identity refuses; the message names the field."""


class EmailTakenError(IdentityError):
    """The e-mail address already belongs to an account."""


@dataclass(frozen=True, slots=True)
class User:
    """An account. `email` is always lower-cased; the password hash never leaves identity."""

    user_id: str
    email: str
    name: str
    role: str
    password_hash: str
    created_at: datetime

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def normalize_email(email: str) -> str:
    """The form an address is stored and looked up in: trimmed and lower-cased, so that
    `Ann@Example.com` and `ann@example.com` are one account."""
    return email.strip().lower()


def check_email(email: str) -> str:
    normalized = normalize_email(email)
    if len(normalized) > EMAIL_MAX:
        raise IdentityError(f"email: must be at most {EMAIL_MAX} characters")
    try:
        # Syntax only (no DNS lookups); special-use domains such as `.local` are fine for a
        # shop's own accounts. Quoted local parts and address literals stay refused.
        validate_email(
            normalized,
            check_deliverability=False,
            globally_deliverable=False,
            allow_quoted_local=False,
            allow_domain_literal=False,
        )
    except EmailNotValidError as e:
        raise IdentityError(f"email: not a valid e-mail address ({e})") from e
    return normalized


def check_password(password: str) -> str:
    # Length only (NIST SP 800-63B): composition rules make passwords worse, not better.
    if len(password) < PASSWORD_MIN:
        raise IdentityError(f"password: must be at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise IdentityError(f"password: must be at most {PASSWORD_MAX} characters")
    return password


def check_name(name: str) -> str:
    stripped = name.strip()
    if not stripped:
        raise IdentityError("name: must not be empty")
    if len(stripped) > NAME_MAX:
        raise IdentityError(f"name: must be at most {NAME_MAX} characters")
    return stripped


def role_for(admin: bool) -> str:
    return ADMIN if admin else CUSTOMER
