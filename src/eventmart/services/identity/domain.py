"""The identity rules: what a valid account is. Pure: no framework, no I/O.

Each check returns the normalized value or raises `IdentityError` whose message starts with
the field it is about (`email: ...`), so callers can show it as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final

CUSTOMER: Final = "customer"
ADMIN: Final = "admin"
ROLES: Final = frozenset({CUSTOMER, ADMIN})

PASSWORD_MIN: Final = 8
PASSWORD_MAX: Final = 128
NAME_MAX: Final = 100
EMAIL_MAX: Final = 254  # RFC 5321's limit on a forward path, minus the angle brackets
EMAIL_LOCAL_MAX: Final = 64

# A practical subset of RFC 5322 addr-spec: dot-atom local part and a DNS host name with an
# alphabetic top-level label. Quoted local parts and address literals are refused on purpose:
# nobody shops with them, and they are what mail-header injection tricks are made of.
_LOCAL = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_EMAIL = re.compile(rf"^(?P<local>{_LOCAL})@(?:{_LABEL}\.)+[a-z]{{2,63}}$")


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
    match = _EMAIL.match(normalized)
    if match is None or len(match.group("local")) > EMAIL_LOCAL_MAX:
        raise IdentityError("email: not a valid e-mail address")
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
