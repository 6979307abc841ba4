"""The gateways' JSON API (the public interface of DESIGN.md), shared by the web and the
mobile BFF; a `Shape` decides how much of each answer a client type gets."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Protocol

import orjson
from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from eventmart.edge.gateway import Gateway, passthrough
from eventmart.platform import metrics
from eventmart.platform.auth import AdminUser, CurrentUser, Principal
from eventmart.platform.http import DownstreamUnavailableError

TERMINAL = {"DELIVERED", "CANCELLED"}


class Shape(Protocol):
    """How a client type sees products, baskets and orders."""

    def product(self, product: dict[str, Any]) -> dict[str, Any]: ...

    def product_page(self, page: dict[str, Any]) -> dict[str, Any]: ...

    def basket(self, basket: dict[str, Any]) -> dict[str, Any]: ...

    def order(self, order: dict[str, Any]) -> dict[str, Any]: ...

    def orders(self, page: dict[str, Any]) -> dict[str, Any]: ...


# -- request models: validated at the edge, so errors name the field early --------------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(Strict):
    email: str = Field(min_length=3, max_length=254)
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


def _auth(request: Request) -> dict[str, str]:
    """Forward the caller's credentials: services check them again (defence in depth)."""
    header = request.headers.get("Authorization")
    if header:
        return {"Authorization": header}
    cookie = request.cookies.get("eventmart_token")
    return {"Authorization": f"Bearer {cookie}"} if cookie else {}


def api_router(gw: Gateway, shape: Shape) -> APIRouter:
    api = APIRouter(prefix="/api")
    svc = gw.service

    # -- auth -----------------------------------------------------------------------
    @api.post("/auth/register", status_code=status.HTTP_201_CREATED, tags=["auth"])
    async def register(body: RegisterIn) -> dict[str, Any]:
        return dict(
            passthrough(await svc("identity").request("POST", "/register", json=body.model_dump()))
        )

    @api.post("/auth/token", tags=["auth"])
    async def token(body: TokenIn, response: Response) -> dict[str, Any]:
        data = passthrough(
            await svc("identity").request("POST", "/token", json=body.model_dump(), idempotent=True)
        )
        return {
            "access_token": data["access_token"],
            "token_type": "bearer",
            "user_id": data.get("user_id"),
            "role": data.get("role"),
        }

    # -- products -------------------------------------------------------------------
    @api.get("/products", tags=["products"])
    async def products(
        q: Annotated[str | None, Query(max_length=100)] = None,
        category: Annotated[str | None, Query(max_length=100)] = None,
        page: Annotated[int, Query(ge=1, le=10_000)] = 1,
        page_size: Annotated[int, Query(ge=1, le=100)] = 24,
    ) -> dict[str, Any]:
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

    @api.get("/products/{product_id}", tags=["products"])
    async def product(product_id: str) -> dict[str, Any]:
        """Aggregates catalog (details) and inventory (live stock); each may fail alone."""
        details, stock = await asyncio.gather(
            svc("catalog").request("GET", f"/products/{product_id}"),
            svc("inventory").request("GET", f"/stock/{product_id}"),
            return_exceptions=True,
        )
        notices: list[str] = []
        if isinstance(details, BaseException):
            if not isinstance(details, DownstreamUnavailableError):
                raise details
            # Catalog down: the read side's copy is a little stale but good enough.
            data = passthrough(await svc("readside").request("GET", f"/products/{product_id}"))
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
        data["in_stock"] = bool(data["available"])
        data["notices"] = notices
        return shape.product(data)

    @api.get("/categories", tags=["products"])
    async def categories() -> Any:
        return passthrough(await svc("catalog").request("GET", "/categories"))

    # -- basket ---------------------------------------------------------------------
    @api.get("/basket", tags=["basket"])
    async def basket(request: Request, _who: CurrentUser) -> dict[str, Any]:
        return shape.basket(
            passthrough(await svc("basket").request("GET", "/basket", headers=_auth(request)))
        )

    @api.put("/basket/items/{product_id}", tags=["basket"])
    async def set_item(
        product_id: str, body: QuantityIn, request: Request, _who: CurrentUser
    ) -> dict[str, Any]:
        return shape.basket(
            passthrough(
                await svc("basket").request(
                    "PUT",
                    f"/basket/items/{product_id}",
                    json=body.model_dump(),
                    headers=_auth(request),
                )
            )
        )

    @api.delete("/basket/items/{product_id}", tags=["basket"])
    async def remove_item(product_id: str, request: Request, _who: CurrentUser) -> dict[str, Any]:
        return shape.basket(
            passthrough(
                await svc("basket").request(
                    "DELETE", f"/basket/items/{product_id}", headers=_auth(request)
                )
            )
        )

    @api.post("/basket/checkout", status_code=status.HTTP_202_ACCEPTED, tags=["basket"])
    async def checkout(
        body: CheckoutIn,
        request: Request,
        _who: CurrentUser,
        idempotency_key: Annotated[
            str | None, Header(alias="Idempotency-Key", max_length=100)
        ] = None,
    ) -> dict[str, Any]:
        if not idempotency_key:
            raise HTTPException(400, "Idempotency-Key header is required")
        lag = await gw.ordering_lag()
        if lag > gw.platform.settings.shed_lag_threshold:
            # Orders are piling up unprocessed: say "later" now instead of queueing more.
            metrics.SHED.labels(gw.name, "lag").inc()
            raise HTTPException(
                503,
                f"checkout is busy ({lag} orders waiting); retry shortly",
                headers={"Retry-After": "2"},
            )
        headers = {**_auth(request), "Idempotency-Key": idempotency_key}
        return dict(
            passthrough(
                await svc("basket").request(
                    "POST", "/basket/checkout", json=body.model_dump(), headers=headers
                )
            )
        )

    # -- orders ---------------------------------------------------------------------
    async def own_order(order_id: str, who: Principal) -> dict[str, Any]:
        response = await svc("readside").request("GET", f"/orders/{order_id}")
        if response.status_code == 404:
            raise HTTPException(404, f"order {order_id} not found")
        view: dict[str, Any] = passthrough(response)
        if view["customer_id"] != who.user_id and not who.is_admin:
            raise HTTPException(404, f"order {order_id} not found")
        return view

    @api.get("/orders", tags=["orders"])
    async def orders(who: CurrentUser, page: Annotated[int, Query(ge=1, le=10_000)] = 1) -> Any:
        return shape.orders(
            passthrough(
                await svc("readside").request(
                    "GET", "/orders", params={"customer_id": who.user_id, "page": page}
                )
            )
        )

    @api.get("/orders/{order_id}", tags=["orders"])
    async def order(order_id: str, who: CurrentUser) -> dict[str, Any]:
        return shape.order(await own_order(order_id, who))

    @api.post("/orders/{order_id}/cancel", status_code=202, tags=["orders"])
    async def cancel(order_id: str, request: Request, _who: CurrentUser) -> Any:
        return passthrough(
            await svc("ordering").request(
                "POST", f"/orders/{order_id}/cancel", headers=_auth(request), idempotent=True
            )
        )

    @api.get("/orders/{order_id}/stream", tags=["orders"])
    async def stream(order_id: str, request: Request, who: CurrentUser) -> EventSourceResponse:
        """Server-sent events: the order's view each time it changes, until it ends."""
        first = await own_order(order_id, who)

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
                    view = await own_order(order_id, who)
                except DownstreamUnavailableError:
                    continue

        return EventSourceResponse(changes(), ping=15)

    # -- admin ----------------------------------------------------------------------
    @api.post("/admin/products", status_code=201, tags=["admin"])
    async def add_product(body: ProductIn, request: Request, _admin: AdminUser) -> Any:
        return passthrough(
            await svc("catalog").request(
                "POST", "/admin/products", json=body.model_dump(), headers=_auth(request)
            )
        )

    @api.put("/admin/products/{product_id}/price", tags=["admin"])
    async def change_price(
        product_id: str, body: PriceIn, request: Request, _admin: AdminUser
    ) -> Any:
        return passthrough(
            await svc("catalog").request(
                "PUT",
                f"/admin/products/{product_id}/price",
                json=body.model_dump(),
                headers=_auth(request),
            )
        )

    @api.post("/admin/inventory/{product_id}/receive", tags=["admin"])
    async def receive(product_id: str, body: ReceiveIn, request: Request, _admin: AdminUser) -> Any:
        return passthrough(
            await svc("inventory").request(
                "POST",
                f"/admin/stock/{product_id}/receive",
                json=body.model_dump(),
                headers=_auth(request),
            )
        )

    return api
