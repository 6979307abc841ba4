"""identity: composition root, and account creation without a running server (CLI)."""

from __future__ import annotations

from eventmart.contracts.identity import UserRegistered
from eventmart.platform.infra import Platform
from eventmart.platform.messaging import MessageWriter, unit_of_work
from eventmart.platform.runtime import Service, service_app
from eventmart.platform.store import ServiceStore
from eventmart.services.identity.adapters import Passwords, UserTable
from eventmart.services.identity.api import UserPublic, public, router
from eventmart.services.identity.registration import create_user

NAME = "identity"


def build(platform: Platform) -> Service:
    store = ServiceStore(platform.database(NAME), migrations=NAME)
    users = UserTable(store.metadata)
    app = service_app(NAME, platform.settings)
    service = Service(name=NAME, store=store, app=app, produces=[UserRegistered])
    # One bound on concurrent hashing for the whole process. A request waits for a slot at
    # most half the time its caller (a gateway) waits for the answer, so its 503 +
    # Retry-After arrives before the caller gives up, with time left for the hash itself.
    passwords = Passwords(max_wait_s=platform.settings.downstream_timeout_s / 2)
    app.state.passwords = passwords
    app.include_router(router(service, users, passwords))
    return service


def create_user_offline(
    platform: Platform, email: str, password: str, name: str, admin: bool = False
) -> UserPublic:
    """Create an account straight in identity's database (`eventmart users create`).

    The user and its `UserRegistered` commit in one transaction; the event waits in the
    outbox until an identity relay publishes it — the running server's at once, or the next
    one to start. Safe while identity is running on the same data directory: table creation
    is idempotent and the write goes through the same locking as the server's.

    Raises `IdentityError` (a `ValueError`) naming the field for bad input, and
    `EmailTakenError` when the address is taken.
    """
    store = ServiceStore(platform.database(NAME), migrations=NAME)
    users = UserTable(store.metadata)
    store.create()
    platform.codec.register(UserRegistered)
    writer = MessageWriter(platform.codec, NAME)
    user = create_user(
        lambda: unit_of_work(store, writer),
        users,
        Passwords(),
        email=email,
        password=password,
        name=name,
        admin=admin,
    )
    return public(user)
