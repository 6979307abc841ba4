"""Bearer tokens (JWT, HS256): identity issues them; the gateways and services verify them.

Dependencies `CurrentUser` and `AdminUser` give a route its caller, or answer 401/403.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Annotated

import jwt
from fastapi import Depends, HTTPException, Request, status

from eventmart.platform.settings import Settings

ISSUER = "eventmart"
ALGORITHM = "HS256"


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    email: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def issue_token(settings: Settings, principal: Principal, ttl_s: int = 3600 * 12) -> str:
    now = int(time.time())
    claims = {
        "sub": principal.user_id,
        "email": principal.email,
        "role": principal.role,
        "iss": ISSUER,
        "iat": now,
        "exp": now + ttl_s,
    }
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm=ALGORITHM)


class InvalidTokenError(Exception):
    pass


def verify_token(settings: Settings, token: str) -> Principal:
    secret = settings.jwt_secret.get_secret_value()
    principal, expires = _verified(secret, token)
    if expires <= time.time():  # remembered while it was valid, expired since
        raise InvalidTokenError("Signature has expired")
    return principal


# Every gateway and service a request passes verifies its token again (the web BFF, then
# basket), and decoding one costs more than the rest of the check: a token's claims
# cannot change, only expire, so the tokens verified lately are remembered, keyed by the
# secret too, and their expiry is checked on every use. A refused token is not
# remembered (lru_cache keeps no exceptions).
@functools.lru_cache(maxsize=4096)
def _verified(secret: str, token: str) -> tuple[Principal, float]:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "sub", "iss"]},
        )
    except jwt.PyJWTError as e:
        raise InvalidTokenError(str(e)) from e
    principal = Principal(
        user_id=str(claims["sub"]),
        email=str(claims.get("email", "")),
        role=str(claims.get("role", "customer")),
    )
    return principal, float(claims["exp"])


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        return request.cookies.get("eventmart_token")
    return token


_VERIFIED = "eventmart_verified_token"


def request_principal(request: Request) -> Principal | None:
    """Who the request's token says is asking; None if it carries no token; raises
    InvalidTokenError for a bad one. Verified once per request and remembered in its
    state: a gateway's rate limit, the route's dependency and a storefront page all ask."""
    token = bearer_token(request)
    if token is None:
        return None
    state = request.scope.setdefault("state", {})
    seen: tuple[str, Principal | str] | None = state.get(_VERIFIED)
    if seen is None or seen[0] != token:
        settings: Settings = request.app.state.settings
        try:
            seen = (token, verify_token(settings, token))
        except InvalidTokenError as e:
            seen = (token, str(e))
        state[_VERIFIED] = seen
    if isinstance(seen[1], str):
        raise InvalidTokenError(seen[1])
    return seen[1]


# The dependencies are `async def` though they never await: FastAPI would run a plain
# `def` dependency in its thread pool, one more hand-off per request for a check that
# only computes (an HMAC over the token).
async def _principal(request: Request) -> Principal:
    try:
        principal = request_principal(request)
    except InvalidTokenError as e:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"invalid token: {e}",
            headers={"WWW-Authenticate": "Bearer"},
        ) from e
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token: log in first",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


async def _admin(principal: Annotated[Principal, Depends(_principal)]) -> Principal:
    if not principal.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "administrators only")
    return principal


CurrentUser = Annotated[Principal, Depends(_principal)]
AdminUser = Annotated[Principal, Depends(_admin)]
