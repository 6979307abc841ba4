"""identity: registration, tokens, the caller's account, offline creation for the CLI."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher
from sqlalchemy import text

from eventmart.contracts.identity import UserRegistered
from eventmart.platform.auth import verify_token
from eventmart.platform.infra import Platform
from eventmart.platform.settings import Settings
from eventmart.services.identity import service as identity_service
from eventmart.services.identity.adapters import Passwords, cpu_count
from eventmart.services.identity.domain import EmailTakenError, IdentityError
from eventmart.services.identity.service import create_user_offline
from tests.service.harness import ServiceHarness, running

PASSWORD = "correct horse battery"


def _register(h: ServiceHarness, email: str, password: str = PASSWORD, name: str = "Ann") -> Any:
    return h.client.post("/register", json={"email": email, "password": password, "name": name})


def _stored_hash(h: ServiceHarness, email: str) -> str:
    assert h.service.store is not None
    with h.service.store.db.read() as conn:
        row = conn.execute(
            text("SELECT password_hash FROM users WHERE email = :e"), {"e": email}
        ).one()
    return str(row[0])


def test_register_token_me(settings: Settings) -> None:
    with running("identity", settings) as h:
        created = _register(h, "  Ann.Lee@Example.COM ", name=" Ann Lee ")
        assert created.status_code == 201
        user = created.json()
        assert user.keys() == {"user_id", "email", "name", "role"}
        assert (user["email"], user["name"], user["role"]) == (
            "ann.lee@example.com",
            "Ann Lee",
            "customer",
        )

        tok = h.client.post("/token", json={"email": "ANN.LEE@example.com", "password": PASSWORD})
        assert tok.status_code == 200
        body = tok.json()
        assert body["token_type"] == "bearer"
        assert (body["user_id"], body["role"]) == (user["user_id"], "customer")
        principal = verify_token(settings, body["access_token"])
        assert (principal.user_id, principal.role) == (user["user_id"], "customer")

        me = h.client.get("/users/me", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200 and me.json() == user
        assert h.client.get("/users/me").status_code == 401

        (event,) = h.wait_for(UserRegistered, key=user["user_id"])
        assert (event.email, event.name, event.role) == (
            "ann.lee@example.com",
            "Ann Lee",
            "customer",
        )


def test_password_is_argon2_and_never_returned(settings: Settings) -> None:
    with running("identity", settings) as h:
        created = _register(h, "bo@example.com")
        stored = _stored_hash(h, "bo@example.com")
        assert stored.startswith("$argon2id$") and PASSWORD not in stored
        tok = h.client.post("/token", json={"email": "bo@example.com", "password": PASSWORD})
        for response in (created, tok):
            assert stored not in response.text and PASSWORD not in response.text
            assert "password" not in json.dumps(response.json())


def test_duplicate_email_is_refused_case_insensitively(settings: Settings) -> None:
    with running("identity", settings) as h:
        first = _register(h, "cy@example.com")
        assert first.status_code == 201
        again = _register(h, "CY@Example.com", name="Someone Else")
        assert again.status_code == 409
        assert again.json()["detail"] == "email: already registered"
        # Exactly one account, announced exactly once (the first registration's).
        (event,) = h.wait_for(UserRegistered)
        assert event.user_id == first.json()["user_id"]
        assert len(h.emitted(UserRegistered)) == 1


BAD_REGISTRATIONS: list[tuple[str, dict[str, str]]] = [
    ("email", {"email": "not-an-email", "password": PASSWORD, "name": "Di"}),
    ("email", {"email": "di@localhost", "password": PASSWORD, "name": "Di"}),
    ("email", {"email": "di@exa mple.com", "password": PASSWORD, "name": "Di"}),
    ("email", {"email": "di..x@example.com", "password": PASSWORD, "name": "Di"}),
    ("password", {"email": "di@example.com", "password": "short", "name": "Di"}),
    ("password", {"email": "di@example.com", "password": "x" * 129, "name": "Di"}),
    ("name", {"email": "di@example.com", "password": PASSWORD, "name": ""}),
    ("name", {"email": "di@example.com", "password": PASSWORD, "name": "   "}),
    ("name", {"email": "di@example.com", "password": PASSWORD, "name": "n" * 101}),
    ("role", {"email": "di@example.com", "password": PASSWORD, "name": "Di", "role": "admin"}),
]


def test_bad_registrations_name_the_field(settings: Settings) -> None:
    with running("identity", settings) as h:
        for field, body in BAD_REGISTRATIONS:
            refused = h.client.post("/register", json=body)
            assert refused.status_code == 422, body
            assert [e["loc"] for e in refused.json()["detail"]] == [["body", field]], body
        # Nothing was stored: the address registers fine afterwards, as a customer.
        assert _register(h, "di@example.com").json()["role"] == "customer"
        assert len(h.wait_for(UserRegistered)) == 1


def test_wrong_password_and_unknown_email_get_the_same_401(settings: Settings) -> None:
    with running("identity", settings) as h:
        _register(h, "ed@example.com")
        wrong = h.client.post("/token", json={"email": "ed@example.com", "password": "nope-nope"})
        unknown = h.client.post("/token", json={"email": "zz@example.com", "password": PASSWORD})
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json() == unknown.json() == {"detail": "wrong e-mail or password"}


def test_create_user_offline_while_the_server_runs(settings: Settings) -> None:
    with running("identity", settings) as h:
        offline = Platform(settings)
        try:
            admin = create_user_offline(offline, "Root@Example.com", PASSWORD, "Root", admin=True)
            with pytest.raises(EmailTakenError, match="not changed"):
                create_user_offline(offline, "root@example.com", PASSWORD, "Root", admin=True)
            with pytest.raises(IdentityError, match=r"^password:"):
                create_user_offline(offline, "new@example.com", "short", "New", admin=False)
        finally:
            offline.close()
        assert (admin.email, admin.role) == ("root@example.com", "admin")

        tok = h.client.post("/token", json={"email": "root@example.com", "password": PASSWORD})
        assert tok.status_code == 200 and tok.json()["role"] == "admin"
        # The running server's relay publishes the offline write's outbox row.
        (event,) = h.wait_for(UserRegistered, key=admin.user_id)
        assert event.role == "admin"


def test_create_user_offline_refuses_to_promote_an_existing_customer(settings: Settings) -> None:
    with running("identity", settings) as h:
        assert _register(h, "fay@example.com").status_code == 201
    offline = Platform(settings)  # no server running now
    try:
        with pytest.raises(EmailTakenError, match="as a customer"):
            create_user_offline(offline, "fay@example.com", PASSWORD, "Fay", admin=True)
    finally:
        offline.close()
    with running("identity", settings) as h:
        tok = h.client.post("/token", json={"email": "fay@example.com", "password": PASSWORD})
        assert tok.json()["role"] == "customer"


# -- overload: password hashing is bounded -------------------------------------------------
def _passwords(h: ServiceHarness) -> Passwords:
    passwords = h.service.app.state.passwords  # type: ignore[union-attr]
    assert isinstance(passwords, Passwords)
    return passwords


def test_hashing_is_bounded_by_the_cpu_count() -> None:
    assert Passwords().max_concurrent == cpu_count() >= 1
    assert Passwords(max_concurrent=3).max_concurrent == 3


def test_saturated_password_hashing_answers_503_with_retry_after(settings: Settings) -> None:
    with running("identity", settings) as h:
        assert _register(h, "gus@example.com").status_code == 201
        passwords = _passwords(h)
        passwords.max_wait_s = 0.2
        with ExitStack() as held:
            for _ in range(passwords.max_concurrent):
                held.enter_context(passwords.slot())
            started = time.monotonic()
            answers = [
                h.client.post("/token", json={"email": "gus@example.com", "password": PASSWORD}),
                h.client.post("/token", json={"email": "nobody@example.com", "password": "x"}),
                _register(h, "hal@example.com"),
            ]
            # Each waited its short while for a slot, then was refused.
            assert 0.6 <= time.monotonic() - started < 3
            for answer in answers:
                assert answer.status_code == 503, answer.text
                assert answer.headers["retry-after"] == "1"
                assert answer.json() == {
                    "detail": "identity is busy checking passwords; retry shortly"
                }
        # Free again: the login works, and the refused registration left nothing behind.
        tok = h.client.post("/token", json={"email": "gus@example.com", "password": PASSWORD})
        assert tok.status_code == 200
        assert _register(h, "hal@example.com").status_code == 201


class SlowHasher(PasswordHasher):
    """Verification takes a while, as argon2 does on a busy machine."""

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        time.sleep(0.5)
        return super().verify(hash, password)


def _slow_passwords(max_wait_s: float) -> Passwords:
    """Identity's password checker with two slots and a slow hasher."""
    return Passwords(SlowHasher(), max_concurrent=2, max_wait_s=max_wait_s)


def test_concurrent_logins_beyond_the_bound_wait_briefly_then_are_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Identity waits for a slot half the gateways' timeout: 0.2 s here.
    settings = settings.model_copy(update={"downstream_timeout_s": 0.4})
    monkeypatch.setattr(identity_service, "Passwords", _slow_passwords)
    with running("identity", settings) as h:
        assert _register(h, "ivy@example.com").status_code == 201

        def login(_: int) -> tuple[int, str | None, float]:
            started = time.monotonic()
            r = h.client.post("/token", json={"email": "ivy@example.com", "password": PASSWORD})
            return r.status_code, r.headers.get("retry-after"), time.monotonic() - started

        with ThreadPoolExecutor(6) as pool:
            results = list(pool.map(login, range(6)))
        codes = sorted(code for code, _, _ in results)
        assert set(codes) <= {200, 503} and codes.count(503) >= 3, results
        assert 1 <= codes.count(200) <= 3, results  # (2 slots; a third if one frees in time)
        for code, retry, took in results:
            if code == 503:
                assert retry == "1" and 0.2 <= took < 0.45, results


def test_a_burst_of_logins_within_the_wait_is_served(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"downstream_timeout_s": 10.0})  # 5 s for a slot
    monkeypatch.setattr(identity_service, "Passwords", _slow_passwords)
    with running("identity", settings) as h:
        assert _register(h, "jo@example.com").status_code == 201

        def login(_: int) -> int:
            r = h.client.post("/token", json={"email": "jo@example.com", "password": PASSWORD})
            return r.status_code

        with ThreadPoolExecutor(6) as pool:
            assert list(pool.map(login, range(6))) == [200] * 6
