"""identity's HTTP API (internal: the gateways call it)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from eventmart.platform.auth import CurrentUser, Principal, issue_token
from eventmart.platform.messaging import UnitOfWork
from eventmart.platform.runtime import Service, ServiceRouter
from eventmart.platform.settings import Settings
from eventmart.services.identity.adapters import Passwords, PasswordsBusyError, UserTable
from eventmart.services.identity.domain import (
    EMAIL_MAX,
    NAME_MAX,
    PASSWORD_MAX,
    PASSWORD_MIN,
    EmailTakenError,
    IdentityError,
    User,
    check_email,
    check_name,
    normalize_email,
)
from eventmart.services.identity.registration import create_user

# One answer for an unknown address and a wrong password: which one it was is not told.
BAD_CREDENTIALS = "wrong e-mail or password"
BUSY_RETRY_AFTER_S = 1


class UserCreate(BaseModel):
    # `extra="forbid"`: a client sending `role` (or anything else) is refused, not ignored.
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=EMAIL_MAX + 64)  # room for surrounding blanks
    password: str = Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)
    name: str = Field(min_length=1, max_length=NAME_MAX + 64)

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        return check_email(v)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_name(v)


class Credentials(BaseModel):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)


class UserPublic(BaseModel):
    """What anyone may see of an account: never the password hash."""

    user_id: str
    email: str
    name: str
    role: str


class TokenPublic(BaseModel):
    access_token: str
    token_type: str = "bearer"
    user_id: str
    role: str


def public(user: User) -> UserPublic:
    return UserPublic(user_id=user.user_id, email=user.email, name=user.name, role=user.role)


def router(service: Service, users: UserTable, passwords: Passwords) -> APIRouter:
    api = ServiceRouter()
    new_uow: Callable[[], AbstractContextManager[UnitOfWork]] = service.uow

    @api.post("/register", status_code=status.HTTP_201_CREATED)
    def register(body: UserCreate) -> UserPublic:
        try:
            user = create_user(
                new_uow,
                users,
                passwords,
                email=body.email,
                password=body.password,
                name=body.name,
            )
        except PasswordsBusyError as e:
            raise _busy() from e
        except EmailTakenError as e:
            raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from e
        except IdentityError as e:  # the body's validators run the same checks first
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from e
        return public(user)

    @api.post("/token")
    def token(body: Credentials, request: Request) -> TokenPublic:
        assert service.store is not None
        with service.store.db.read() as conn:
            user = users.by_email(conn, normalize_email(body.email))
        try:
            if user is None:
                passwords.verify_unknown(body.password)
                raise _unauthorized()
            if not passwords.verify(user.password_hash, body.password):
                raise _unauthorized()
        except PasswordsBusyError as e:
            raise _busy() from e
        if passwords.needs_rehash(user.password_hash):
            # The only moment the plain password is at hand to upgrade the parameters; when
            # hashing is saturated the upgrade waits for a later login.
            try:
                upgraded = passwords.hash(body.password)
            except PasswordsBusyError:
                upgraded = None
            if upgraded is not None:
                with service.uow() as uow:
                    users.set_password_hash(uow.conn, user.user_id, upgraded)
        settings: Settings = request.app.state.settings
        access = issue_token(settings, Principal(user.user_id, user.email, user.role))
        return TokenPublic(access_token=access, user_id=user.user_id, role=user.role)

    @api.get("/users/me")
    def me(caller: CurrentUser) -> UserPublic:
        assert service.store is not None
        with service.store.db.read() as conn:
            user = users.by_id(conn, caller.user_id)
        if user is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"user {caller.user_id} not found")
        return public(user)

    return api


def _busy() -> HTTPException:
    """Password hashing is saturated: refuse now, rather than queue without bound."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "identity is busy checking passwords; retry shortly",
        headers={"Retry-After": str(BUSY_RETRY_AFTER_S)},
    )


def _unauthorized() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, BAD_CREDENTIALS, headers={"WWW-Authenticate": "Bearer"}
    )
