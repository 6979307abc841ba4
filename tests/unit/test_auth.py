"""Token verification: what the remembered verifications must not change."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest

from eventmart.platform import auth
from eventmart.platform.auth import InvalidTokenError, Principal, issue_token, verify_token
from eventmart.platform.settings import Settings

ALICE = Principal("u-1", "alice@example.com", "customer")


def settings(tmp_path: Path, secret: str = "s" * 40) -> Settings:
    return Settings(data_dir=tmp_path, profile="embedded", jwt_secret=secret)


def test_a_token_verified_while_valid_is_refused_once_it_expires(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = settings(tmp_path)
    token = issue_token(s, ALICE, ttl_s=60)
    assert verify_token(s, token) == ALICE
    assert verify_token(s, token) == ALICE  # remembered
    real = auth.time.time
    monkeypatch.setattr(auth.time, "time", lambda: real() + 61)
    with pytest.raises(InvalidTokenError, match="expired"):
        verify_token(s, token)


def test_a_token_remembered_under_one_secret_is_refused_under_another(tmp_path: Path) -> None:
    signer = settings(tmp_path)
    token = issue_token(signer, ALICE)
    assert verify_token(signer, token) == ALICE
    with pytest.raises(InvalidTokenError, match=r"[Ss]ignature"):
        verify_token(settings(tmp_path, secret="t" * 40), token)


def test_a_tampered_token_is_refused_every_time(tmp_path: Path) -> None:
    s = settings(tmp_path)
    claims = jwt.decode(
        issue_token(s, ALICE), options={"verify_signature": False}, algorithms=["HS256"]
    )
    forged = jwt.encode({**claims, "role": "admin"}, "x" * 40, algorithm="HS256")
    for _ in range(2):
        with pytest.raises(InvalidTokenError):
            verify_token(s, forged)


def test_an_expired_token_is_refused_on_first_sight(tmp_path: Path) -> None:
    s = settings(tmp_path)
    with pytest.raises(InvalidTokenError, match="expired"):
        verify_token(s, issue_token(s, ALICE, ttl_s=-10))
