"""The gateways' JSON API (the public interface of DESIGN.md), shared by the web and the
mobile BFF; a `Shape` decides how much of each answer a client type gets.

Path parameters are `ResourceId`s (validated: a 422 names anything else) and go into
downstream URLs percent-encoded (`segment`), so no id can change the downstream route.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from typing import Annotated, Any, Protocol

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sse_starlette.sse import EventSourceResponse

from eventmart.edge.gateway import Gateway, passthrough
from eventmart.edge.schema import COMMON_ERRORS, ResourceId, errors, json_errors, segment
from eventmart.edge.shapes import OrderItem, ShapeModels
from eventmart.platform import metrics
from eventmart.platform.auth import AdminUser, CurrentUser, Principal
from eventmart.platform.http import DownstreamUnavailableError
from eventmart.services.basket.api import IDEMPOTENCY_KEY_MAX

TERMINAL = frozenset({"DELIVERED", "CANCELLED"})

# Right after a checkout (202) the order travels basket -> ordering -> read side
# asynchronously. An order id minted this recently (order ids are UUIDv7: they carry the
# moment they were made) may still be on its way, so "not found" may mean "not yet".
IN_FLIGHT_S = 120.0
ORDER_WAIT_S = 10.0  # how long the stream waits for an order on its way before a 404
# ... and `GET /api/orders/{id}`: a client that reads the order straight after the 202 gets
# it (ordering has it within milliseconds, seconds on a shop under load) instead of a 404
# it would have to retry; short, because the request holds an admission slot meanwhile.
ORDER_GET_WAIT_S = 3.0
ORDER_POLL_S = 0.25


def may_be_in_flight(order_id: str, now_s: float | None = None) -> bool:
    """True when `order_id` is a UUIDv7 minted within the last `IN_FLIGHT_S` (a few
    seconds of clock skew into the future allowed): the order may not be visible yet."""
    try:
        value = uuid.UUID(order_id)
    except ValueError:
        return False
    if value.version != 7:
        return False
    minted_s = (value.int >> 80) / 1000
    now = time.time() if now_s is None else now_s
    return now - IN_FLIGHT_S <= minted_s <= now + 5.0


class NotTheCallersOrderError(HTTPException):
    """The order exists and belongs to someone else: "not found" to the caller, and not an
    order on its way, so nothing waits for it."""

    def __init__(self, order_id: str) -> None:
        super().__init__(404, f"order {order_id} not found")


class Shape(Protocol):
    """How a client type sees products, baskets and orders, and the models of those
    answers (the routes' response models)."""

    @property
    def models(self) -> ShapeModels: ...

    def product(self, product: dict[str, Any]) -> dict[str, Any]: ...

    def product_page(self, page: dict[str, Any]) -> dict[str, Any]: ...

    def basket(self, basket: dict[str, Any]) -> dict[str, Any]: ...

    def order(self, order: dict[str, Any]) -> dict[str, Any]: ...

    def orders(self, page: dict[str, Any]) -> dict[str, Any]: ...


# -- request models: validated at the edge, so errors name the field early --------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(Strict):
    email: EmailStr = Field(max_length=254)
    password: str = Field(min_length=8, max_length=128)
    name: str = Field(min_length=1, max_length=100)


class TokenIn(Strict):
    email: str = Field(min_length=1, max_length=254)
    password: str = Field(min_length=1, max_length=128)


class QuantityIn(Strict):
    quantity: int = Field(ge=1, le=99)


class AddressIn(Strict):
    name: str = Field(min_length=1, max_length=100)
    line1: str = Field(min_length=1, max_length=200)
    line2: str = Field(default="", max_length=200)
    city: str = Field(min_length=1, max_length=100)
    postal_code: str = Field(min_length=1, max_length=20)
    country: str = Field(min_length=2, max_length=56)


class CheckoutIn(Strict):
    shipping_address: AddressIn
    card_token: str = Field(pattern=r"^tok_[a-z0-9_]{1,40}$")


class ProductIn(Strict):
    sku: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=4000)
    category: str = Field(min_length=1, max_length=100, pattern=r"^[a-z0-9-]+$")
    price_cents: int = Field(gt=0, le=10_000_000)
    image: str = Field(default="", max_length=300)


class PriceIn(Strict):
    price_cents: int = Field(gt=0, le=10_000_000)


class ReceiveIn(Strict):
    quantity: int = Field(gt=0, le=100_000)


# -- answer models (what the shapes do not cover) -------------------------------------------
class UserOut(BaseModel):
    user_id: str
    email: str
    name: str
    role: str


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    user_id: str | None = None
    role: str | None = None


class CategoryOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    category: str
    products: int


class CheckoutOut(BaseModel):
    order_id: str


class OrderStateOut(BaseModel):
    """The write side's (ordering's) view of an order, as a cancel answers it."""

    model_config = ConfigDict(extra="allow")

    id: str
    customer_id: str
    status: str
    cancellation_reason: str | None = None
    total_cents: int
    items: list[OrderItem]
    version: int


class CatalogProductOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    product_id: str
    sku: str
    name: str
    description: str
    category: str
    price_cents: int
    currency: str
    image: str


class StockOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    product_id: str
    on_hand: int
    reserved: int
    available: int


class OrderStream(EventSourceResponse):
    """Server-sent events (documented as `text/event-stream`)."""

    media_type = "text/event-stream"


def pending_view(state: dict[str, Any]) -> dict[str, Any]:
    """An order the read side does not have yet, from the write side's state, in the
    read side's shape: no timeline yet, and saying so."""
    return {
        "id": state["id"],
        "customer_id": state["customer_id"],
        "status": state["status"],
        "items": state.get("items", []),
        "total_cents": state["total_cents"],
        "currency": state.get("currency"),
        "cancellation_reason": state.get("cancellation_reason"),
        "cancellation_detail": None,
        "timeline": [],
        "version": state.get("version"),
        "updated_at": None,
        "pending_projection": True,
    }


def _auth(request: Request) -> dict[str, str]:
    """Forward the caller's credentials: services check them again (defence in depth)."""
    header = request.headers.get("Authorization")
    if header:
        return {"Authorization": header}
    cookie = request.cookies.get("eventmart_token")
    return {"Authorization": f"Bearer {cookie}"} if cookie else {}


def api_router(gw: Gateway, shape: Shape) -> APIRouter:
    api = APIRouter(prefix="/api", responses=COMMON_ERRORS)
    svc = gw.service
    m = shape.models

    # -- auth -----------------------------------------------------------------------
    @api.post(
        "/auth/register",
        status_code=status.HTTP_201_CREATED,
        tags=["auth"],
        response_model=UserOut,
        responses=errors(409, 422),
    )
    async def register(body: RegisterIn) -> Any:
        return passthrough(
            await svc("identity").request("POST", "/register", json=body.model_dump())
        )

    @api.post("/auth/token", tags=["auth"], response_model=TokenOut, responses=errors(401, 422))
    async def token(body: TokenIn) -> Any:
        # Never retried: a retry re-runs a password verification (argon2, ~0.1 s of CPU)
        # that the first attempt may still be doing, on the service that is slow already.
        data = passthrough(
            await svc("identity").request(
                "POST", "/token", json=body.model_dump(), idempotent=False
            )
        )
        return {
            "access_token": data["access_token"],
            "token_type": "bearer",
            "user_id": data.get("user_id"),
            "role": data.get("role"),
        }

    # -- products -------------------------------------------------------------------
    @api.get("/products", tags=["products"], response_model=m.product_page, responses=errors(422))
    async def products(
        q: Annotated[str | None, Query(max_length=100)] = None,
        category: Annotated[str | None, Query(max_length=100)] = None,
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = 24,
    ) -> Any:
        params = {
            k: v
            for k, v in {"q": q, "category": category, "page": page, "page_size": page_size}.items()
            if v is not None
        }
        try:
            return shape.product_page(
                passthrough(await svc("readside").request("GET", "/products", params=params))
            )
        except DownstreamUnavailableError as e:
            # The listing still works from the catalog; only availability is missing.
            page_data = passthrough(await svc("catalog").request("GET", "/products", params=params))
            for item in page_data["items"]:
                item["available"] = None
            page_data["notice"] = f"availability is temporarily unknown ({e.reason})"
            return shape.product_page(page_data)

    @api.get(
        "/products/{product_id}",
        tags=["products"],
        response_model=m.product,
        responses=errors(404, 422),
    )
    async def product(product_id: ResourceId) -> Any:
        """Aggregates catalog (details) and inventory (live stock); each may fail alone."""
        ident = segment(product_id)
        details, stock = await asyncio.gather(
            svc("catalog").request("GET", f"/products/{ident}"),
            svc("inventory").request("GET", f"/stock/{ident}"),
            return_exceptions=True,
        )
        notices: list[str] = []
        if isinstance(details, BaseException):
            if not isinstance(details, DownstreamUnavailableError):
                raise details
            # Catalog down: the read side's copy is a little stale but good enough.
            data = passthrough(await svc("readside").request("GET", f"/products/{ident}"))
            notices.append("product details are served from a cached copy")
        else:
            data = passthrough(details)
        if isinstance(stock, DownstreamUnavailableError):
            data["available"] = None
            notices.append(f"availability is temporarily unknown ({stock.reason})")
        elif isinstance(stock, BaseException):
            raise stock
        elif stock.status_code == 404:
            data["available"] = 0
        else:
            data["available"] = passthrough(stock)["available"]
        data["in_stock"] = None if data["available"] is None else bool(data["available"])
        data["notices"] = notices
        return shape.product(data)

    @api.get("/categories", tags=["products"], response_model=list[CategoryOut])
    async def categories() -> Any:
        return passthrough(await svc("catalog").request("GET", "/categories"))

    # -- basket ---------------------------------------------------------------------
    @api.get("/basket", tags=["basket"], response_model=m.basket, responses=errors(401))
    async def basket(request: Request, _who: CurrentUser) -> Any:
        return shape.basket(
            passthrough(await svc("basket").request("GET", "/basket", headers=_auth(request)))
        )

    @api.put(
        "/basket/items/{product_id}",
        tags=["basket"],
        response_model=m.basket,
        responses=errors(401, 404, 409, 422),
    )
    async def set_item(
        product_id: ResourceId, body: QuantityIn, request: Request, _who: CurrentUser
    ) -> Any:
        return shape.basket(
            passthrough(
                await svc("basket").request(
                    "PUT",
                    f"/basket/items/{segment(product_id)}",
                    json=body.model_dump(),
                    headers=_auth(request),
                )
            )
        )

    @api.delete(
        "/basket/items/{product_id}",
        tags=["basket"],
        response_model=m.basket,
        responses=errors(401, 404, 422),
    )
    async def remove_item(product_id: ResourceId, request: Request, _who: CurrentUser) -> Any:
        return shape.basket(
            passthrough(
                await svc("basket").request(
                    "DELETE", f"/basket/items/{segment(product_id)}", headers=_auth(request)
                )
            )
        )

    @api.post(
        "/basket/checkout",
        status_code=status.HTTP_202_ACCEPTED,
        tags=["basket"],
        response_model=CheckoutOut,
        responses=errors(400, 401, 409, 422),
    )
    async def checkout(
        body: CheckoutIn,
        request: Request,
        _who: CurrentUser,
        idempotency_key: Annotated[
            str,
            Header(
                alias="Idempotency-Key",
                min_length=1,
                max_length=IDEMPOTENCY_KEY_MAX,
                pattern=r"^[!-~]+$",  # visible ASCII: it travels on in HTTP headers
                description="one key per checkout attempt: a retry with the same key and "
                "body answers the same order, never a second one",
            ),
        ],
    ) -> Any:
        refusal = await gw.checkout_refusal()
        if refusal is not None:
            # Orders are piling up unprocessed: say "later" now instead of queueing more.
            detail, retry_s = refusal
            metrics.SHED.labels(gw.name, "backlog").inc()
            raise HTTPException(
                503, detail, headers={"Retry-After": str(max(1, math.ceil(retry_s)))}
            )
        headers = {**_auth(request), "Idempotency-Key": idempotency_key}
        return passthrough(
            await svc("basket").request(
                "POST", "/basket/checkout", json=body.model_dump(), headers=headers
            )
        )

    # -- orders ---------------------------------------------------------------------
    def not_found(order_id: str) -> HTTPException:
        return HTTPException(404, f"order {order_id} not found")

    async def own_order(order_id: str, who: Principal, auth: dict[str, str]) -> dict[str, Any]:
        """The caller's order from the read side; right after checkout, while the read side
        has not caught up, from ordering (the write side), marked `pending_projection`."""
        ident = segment(order_id)
        response = await svc("readside").request("GET", f"/orders/{ident}")
        if response.status_code == 404:
            # Ordering checks the caller owns the order (another's is "not found" there too).
            state = await svc("ordering").request("GET", f"/orders/{ident}", headers=auth)
            if state.status_code == 404:
                raise not_found(order_id)
            view = pending_view(passthrough(state))
        else:
            view = passthrough(response)
        if view["customer_id"] != who.user_id and not who.is_admin:
            raise NotTheCallersOrderError(order_id)
        return view

    async def order_soon(
        order_id: str, who: Principal, auth: dict[str, str], wait_s: float | None = None
    ) -> dict[str, Any]:
        """`own_order`, waiting up to `wait_s` (default `ORDER_WAIT_S`) for an order that
        may be on its way."""
        if not may_be_in_flight(order_id):
            return await own_order(order_id, who, auth)
        deadline = time.monotonic() + (ORDER_WAIT_S if wait_s is None else wait_s)
        while True:
            try:
                return await own_order(order_id, who, auth)
            except NotTheCallersOrderError:
                raise
            except HTTPException as e:
                if e.status_code != 404 or time.monotonic() >= deadline:
                    raise
            except DownstreamUnavailableError:
                if time.monotonic() >= deadline:
                    raise
            await asyncio.sleep(ORDER_POLL_S)

    @api.get("/orders", tags=["orders"], response_model=m.orders, responses=errors(401, 422))
    async def orders(who: CurrentUser, page: Annotated[int, Query(ge=1, le=10_000)] = 1) -> Any:
        return shape.orders(
            passthrough(
                await svc("readside").request(
                    "GET", "/orders", params={"customer_id": who.user_id, "page": page}
                )
            )
        )

    @api.get(
        "/orders/{order_id}",
        tags=["orders"],
        response_model=m.order,
        responses=errors(401, 404, 422),
    )
    async def order(order_id: ResourceId, request: Request, who: CurrentUser) -> Any:
        """The order's view. An order placed moments ago may not be visible yet: the
        answer waits for it (up to three seconds) before a 404."""
        return shape.order(await order_soon(order_id, who, _auth(request), ORDER_GET_WAIT_S))

    @api.post(
        "/orders/{order_id}/cancel",
        status_code=202,
        tags=["orders"],
        response_model=OrderStateOut,
        responses=errors(401, 404, 409, 422),
    )
    async def cancel(order_id: ResourceId, request: Request, _who: CurrentUser) -> Any:
        return passthrough(
            await svc("ordering").request(
                "POST",
                f"/orders/{segment(order_id)}/cancel",
                headers=_auth(request),
                idempotent=True,
            )
        )

    @api.get(
        "/orders/{order_id}/stream",
        tags=["orders"],
        response_class=OrderStream,
        responses={
            200: {
                "description": "`order` events, each the order's JSON (as `GET /api/orders/"
                "{order_id}` answers it), whenever it changes, until it is delivered or "
                "cancelled",
                "content": {
                    "text/event-stream": {
                        "schema": {
                            "type": "object",
                            "required": ["event", "data"],
                            "properties": {
                                "event": {"type": "string", "enum": ["order"]},
                                "data": {
                                    "type": "string",
                                    "contentMediaType": "application/json",
                                    "contentSchema": {
                                        "$ref": f"#/components/schemas/{m.order.__name__}"
                                    },
                                },
                            },
                        }
                    }
                },
            },
            **json_errors(401, 404, 422, 413, 429, 502, 503),
        },
    )
    async def stream(order_id: ResourceId, request: Request, who: CurrentUser) -> OrderStream:
        """Server-sent events: the order's view each time it changes, until it ends.

        An order placed moments ago may not be visible yet: the stream waits for it (up to
        ten seconds) before answering 404."""
        auth = _auth(request)
        first = await order_soon(order_id, who, auth)

        async def changes() -> Any:
            view = first
            last: bytes | None = None
            for _ in range(4000):  # at most ~20 minutes
                if await request.is_disconnected():
                    return
                encoded = orjson.dumps(shape.order(view))
                if encoded != last:
                    last = encoded
                    yield {"event": "order", "data": encoded.decode()}
                if view["status"] in TERMINAL:
                    return
                await asyncio.sleep(0.3)
                try:
                    view = await own_order(order_id, who, auth)
                except (DownstreamUnavailableError, HTTPException):
                    continue

        return OrderStream(changes(), ping=15)

    # -- admin ----------------------------------------------------------------------
    @api.post(
        "/admin/products",
        status_code=201,
        tags=["admin"],
        response_model=CatalogProductOut,
        responses=errors(401, 403, 409, 422),
    )
    async def add_product(body: ProductIn, request: Request, _admin: AdminUser) -> Any:
        return passthrough(
            await svc("catalog").request(
                "POST", "/admin/products", json=body.model_dump(), headers=_auth(request)
            )
        )

    @api.put(
        "/admin/products/{product_id}/price",
        tags=["admin"],
        response_model=CatalogProductOut,
        responses=errors(401, 403, 404, 422),
    )
    async def change_price(
        product_id: ResourceId, body: PriceIn, request: Request, _admin: AdminUser
    ) -> Any:
        return passthrough(
            await svc("catalog").request(
                "PUT",
                f"/admin/products/{segment(product_id)}/price",
                json=body.model_dump(),
                headers=_auth(request),
            )
        )

    @api.post(
        "/admin/inventory/{product_id}/receive",
        tags=["admin"],
        response_model=StockOut,
        responses=errors(401, 403, 404, 422),
    )
    async def receive(
        product_id: ResourceId, body: ReceiveIn, request: Request, _admin: AdminUser
    ) -> Any:
        return passthrough(
            await svc("inventory").request(
                "POST",
                f"/admin/stock/{segment(product_id)}/receive",
                json=body.model_dump(),
                headers=_auth(request),
            )
        )

    return api
