"""The basket's HTTP API (internal: the gateways call it). The customer is the token's
subject; a customer reaches only their own basket."""

from __future__ import annotations

import hashlib
from typing import Annotated

import orjson
from fastapi import APIRouter, FastAPI, Header, HTTPException, Path, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from eventmart.contracts.basket import BasketCheckedOut
from eventmart.contracts.common import Address, OrderLine
from eventmart.platform.auth import CurrentUser
from eventmart.platform.messages import new_id
from eventmart.platform.messaging import UnitOfWork
from eventmart.platform.runtime import Service, ServiceRouter
from eventmart.services.basket.adapters import BasketTable, Checkout, CheckoutTable, PriceTable
from eventmart.services.basket.domain import (
    MAX_QUANTITY,
    BasketError,
    BasketFullError,
    EmptyBasketError,
    InvalidQuantityError,
    MixedCurrencyError,
    NotInBasketError,
    PricedBasket,
    UnknownProductError,
    check_checkout,
    check_remove,
    check_set_quantity,
    price_basket,
)

IDEMPOTENCY_HEADER = "Idempotency-Key"
IDEMPOTENCY_KEY_MAX = 100
CARD_TOKEN_PATTERN = r"^tok_[a-z0-9_]{1,40}$"

_STATUS: dict[type[Exception], int] = {
    InvalidQuantityError: status.HTTP_422_UNPROCESSABLE_CONTENT,
    UnknownProductError: status.HTTP_404_NOT_FOUND,
    NotInBasketError: status.HTTP_404_NOT_FOUND,
    BasketFullError: status.HTTP_409_CONFLICT,
    EmptyBasketError: status.HTTP_409_CONFLICT,
    MixedCurrencyError: status.HTTP_409_CONFLICT,
}


# Request models forbid unknown fields: a client that sends a price, a total or lines is
# told so (422 naming the field) instead of having them silently ignored.
class QuantityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: int = Field(ge=1, le=MAX_QUANTITY, strict=True)


class AddressIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = Field(min_length=1, max_length=100)
    line1: str = Field(min_length=1, max_length=200)
    line2: str = Field(default="", max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(min_length=2, max_length=60)


class CheckoutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    shipping_address: AddressIn
    card_token: str = Field(pattern=CARD_TOKEN_PATTERN)


class LinePublic(BaseModel):
    product_id: str
    sku: str
    name: str
    quantity: int
    unit_price_cents: int
    line_total_cents: int


class BasketPublic(BaseModel):
    customer_id: str
    items: list[LinePublic]
    total_cents: int
    item_count: int


class CheckoutAccepted(BaseModel):
    order_id: str


ProductId = Annotated[str, Path(min_length=1, max_length=64)]
IdempotencyKey = Annotated[str | None, Header(alias=IDEMPOTENCY_HEADER)]


def public(basket: PricedBasket) -> BasketPublic:
    return BasketPublic(
        customer_id=basket.customer_id,
        items=[
            LinePublic(
                product_id=line.product_id,
                sku=line.sku,
                name=line.name,
                quantity=line.quantity,
                unit_price_cents=line.unit_price_cents,
                line_total_cents=line.line_total_cents,
            )
            for line in basket.lines
        ],
        total_cents=basket.total_cents,
        item_count=basket.item_count,
    )


def install_error_mapping(app: FastAPI) -> None:
    """Answer the domain's refusals with their status and their message as `detail`."""

    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        code = _STATUS.get(type(exc), status.HTTP_409_CONFLICT)
        return JSONResponse({"detail": str(exc)}, status_code=code)

    app.add_exception_handler(BasketError, refused)


def router(
    service: Service, prices: PriceTable, baskets: BasketTable, checkouts: CheckoutTable
) -> APIRouter:
    api = ServiceRouter()

    def priced(conn: Connection, customer_id: str) -> PricedBasket:
        items = baskets.items(conn, customer_id)
        return price_basket(customer_id, items, prices.many(conn, (i.product_id for i in items)))

    @api.get("/basket")
    def get_basket(caller: CurrentUser) -> BasketPublic:
        assert service.store is not None
        with service.store.db.read() as conn:
            return public(priced(conn, caller.user_id))

    @api.put("/basket/items/{product_id}")
    def set_quantity(product_id: ProductId, body: QuantityIn, caller: CurrentUser) -> BasketPublic:
        customer = caller.user_id
        with service.uow() as uow:
            baskets.lock(uow.conn, customer)
            item = check_set_quantity(
                baskets.items(uow.conn, customer),
                product_id,
                body.quantity,
                prices.get(uow.conn, product_id),
            )
            baskets.put(uow.conn, customer, item)
            return public(priced(uow.conn, customer))

    @api.delete("/basket/items/{product_id}")
    def remove_item(product_id: ProductId, caller: CurrentUser) -> BasketPublic:
        customer = caller.user_id
        with service.uow() as uow:
            baskets.lock(uow.conn, customer)
            check_remove(baskets.items(uow.conn, customer), product_id)
            baskets.remove(uow.conn, customer, product_id)
            return public(priced(uow.conn, customer))

    @api.post("/basket/checkout", status_code=status.HTTP_202_ACCEPTED)
    def checkout(
        body: CheckoutIn, caller: CurrentUser, idempotency_key: IdempotencyKey = None
    ) -> CheckoutAccepted:
        key = _idempotency_key(idempotency_key)
        attempt = Checkout(order_id=new_id(), request_sha256=_digest(body))
        try:
            with service.uow() as uow:
                order_id = place_order(uow, caller.user_id, key, attempt, body)
        except IntegrityError:
            # A concurrent checkout with the same key committed first: its order is ours.
            assert service.store is not None
            with service.store.db.read() as conn:
                winner = checkouts.find(conn, caller.user_id, key)
            if winner is None:
                raise  # not the key after all: a genuine fault
            order_id = _replayed(winner, attempt)
        return CheckoutAccepted(order_id=order_id)

    def place_order(
        uow: UnitOfWork, customer: str, key: str, attempt: Checkout, body: CheckoutIn
    ) -> str:
        """Checkout in one unit of work: record it, announce it, empty the basket."""
        baskets.lock(uow.conn, customer)
        done = checkouts.find(uow.conn, customer, key)
        if done is not None:
            return _replayed(done, attempt)
        # The unique key decides between concurrent attempts; the loser's insert fails and
        # its whole transaction (event included) rolls back.
        checkouts.record(uow.conn, customer, key, attempt)
        basket = check_checkout(priced(uow.conn, customer))
        address = body.shipping_address
        uow.publish(
            BasketCheckedOut(
                order_id=attempt.order_id,
                customer_id=customer,
                lines=[
                    OrderLine(
                        product_id=line.product_id,
                        sku=line.sku,
                        name=line.name,
                        quantity=line.quantity,
                        unit_price_cents=line.unit_price_cents,
                    )
                    for line in basket.lines
                ],
                total_cents=basket.total_cents,
                shipping_address=Address(**address.model_dump()),
                card_token=body.card_token,
                currency=basket.currency,
            )
        )
        baskets.clear(uow.conn, customer)
        return attempt.order_id

    return api


def _idempotency_key(value: str | None) -> str:
    if value is None or not value.strip():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"{IDEMPOTENCY_HEADER} header is required")
    if len(value) > IDEMPOTENCY_KEY_MAX:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{IDEMPOTENCY_HEADER}: at most {IDEMPOTENCY_KEY_MAX} characters",
        )
    return value


def _digest(body: CheckoutIn) -> str:
    canonical = orjson.dumps(body.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def _replayed(done: Checkout, attempt: Checkout) -> str:
    """The order of an earlier checkout under the same key, if the request is the same one."""
    if done.request_sha256 != attempt.request_sha256:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"{IDEMPOTENCY_HEADER}: already used for a different checkout request",
        )
    return done.order_id
