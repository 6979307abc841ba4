"""identity: customers and administrators."""

from __future__ import annotations

from eventmart.platform.messages import Event


class IdentityEvent(Event, frozen=True, kw_only=True):
    abstract = True
    namespace = "eventmart.identity"
    topic = "identity.events"
    key_field = "user_id"


class UserRegistered(IdentityEvent, frozen=True, kw_only=True):
    """A new account; other services keep what they need of it (e.g. the e-mail address)."""

    user_id: str
    email: str
    name: str
    role: str
