"""The storefront and the ops console: the web BFF's (:8000) server-rendered pages.

How the pages get their data: each page handler calls the BFF's own JSON API in-process
(`ShopApi`, an ASGI call into this same app) with the caller's credentials, so a page sees
exactly what a browser's `fetch('/api/...')` would: the same auth, validation, aggregation,
fallbacks, shapes and edge policies. `api.py` and `ops.py` stay the one source of
behaviour; nothing here talks to a downstream service.

What changes state (basket lines, checkout, cancel, redrive) is done by the page's own
JavaScript with fetch on `/api/...` (static/shop.js, order.js, ops.js). The order page
follows `EventSource('/api/orders/{id}/stream')`; the ops page polls `/api/ops/lag`
every 2 s and draws the chart as inline SVG. Login and registration are plain forms posted
here: the handler posts the JSON API and keeps the token in the `eventmart_token` cookie
(HttpOnly, SameSite=Lax, Path=/), which page loads, fetch and EventSource all send.

Pages carry a strict Content-Security-Policy (no inline script or style): page data
reaches scripts through `data-*` attributes only.

Browser-test contract (stable `data-testid` values; `[attr]` = extra data attributes)
------------------------------------------------------------------------------------
every page
    search-box, search-button           header search form (GET /products?q=)
    nav-login, nav-register             anonymous visitors
    nav-user, nav-basket, nav-orders    signed-in users; nav-user holds the e-mail
    nav-ops                             administrators only
    logout-button                       POST /logout (also on GET /logout)
    page-error                          error pages (403/404/503/...): the detail text
/  (home)
    category-link [data-category]       one per category
    featured-products                   the featured products' list
    product-card [data-product-id]      also on /products
    product-name, product-price         inside a card (and on the product page)
    product-availability [data-available]   "in stock" / "only N left" / "out of stock" /
                                        "availability unknown"; data-available is the
                                        number, or "" when unknown
    home-notice                         a section of the home page is unavailable
/products?q=&category=&page=
    product-list, result-count, category-filter (select), availability-notice
    (availability unknown), page-prev, page-next, no-results
/products/{id}
    product-name, product-price, product-description, product-availability,
    product-notice (one per aggregator notice),
    add-to-basket-form, add-to-basket-qty (number input), add-to-basket (button;
    disabled when out of stock; adds to the quantity already in the basket),
    basket-message (result, aria-live; "You have N in your basket"), go-to-basket
/login, /register
    login-form, login-email, login-password, login-submit, login-error
    register-form, register-name, register-email, register-password, register-submit,
    register-error
/basket
    basket-lines, basket-line [data-product-id], basket-line-name, basket-qty (input),
    basket-update (button), basket-remove (button), basket-line-total, basket-total,
    basket-empty, basket-message, checkout-section (hidden when the basket is empty),
    checkout-form [data-idempotency-key: the key of the current attempt],
    ship-name, ship-line1, ship-line2, ship-city, ship-postal-code, ship-country,
    card-token (select: tok_visa, tok_declined, tok_timeout, tok_slow), card-hint,
    checkout-button, checkout-error
    (a successful checkout navigates to /orders/{order_id}; the line <template> the
    script clones holds one more basket-line, outside the document, that locators skip)
/orders
    orders-list, order-row [data-order-id], order-link, order-row-status, orders-empty
/orders/{id}
    order-id, order-status [data-status: the code, e.g. PAYMENT_AUTHORIZED; the text is
    "Payment authorized"], order-items, order-item [data-product-id], order-total,
    cancellation-reason [data-reason] (hidden unless cancelled), order-timeline,
    timeline-entry [data-type, data-status], cancel-order (button, only while
    cancellable), cancel-message, live-indicator [data-state: connecting | live |
    ended | error]
    order-placing: shown (and `article.order[data-placing="yes"]`, order-status with
    data-status="") while an order placed moments ago is not visible yet; the first
    stream event fills the page in and hides it. If the order never comes (the stream
    waits ~10 s), page-error on this page says "order ... not found". An id that cannot
    be an order on its way is a 404 page at once.
/ops (admin; anonymous -> 303 /login?next=/ops; customer -> 403 page)
    ops-services, service-row [data-service], service-state, service-breaker,
    ops-lag-chart (svg) [data-samples: samples drawn so far; data-total: total lag],
    lag-legend, lag-updated, lag-total, lag-table,
    lag-row [data-group, data-lag, data-partitions] (one per consumer group),
    lag-partition [data-group, data-topic, data-partition] (in the group row's
    collapsed <details>),
    dlq-table, dlq-row [data-letter-id, data-redriven: yes | no], dlq-reason,
    dlq-redrive (button; disabled once redriven), dlq-message, dlq-empty,
    order-lookup (form), order-lookup-input, order-lookup-button, lookup-error,
    order-events, order-event [data-type: the full type, eventmart.ordering.OrderPlaced;
    the text shows OrderPlaced, data-version], saga-status, saga-step [data-step],
    trace-list, trace-link [data-trace-id], trace-waterfall [data-trace-id],
    trace-span [data-service, data-name] (one row per span, grouped by service)
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
import jinja2
import jwt
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp

from eventmart.edge.api import TERMINAL, may_be_in_flight
from eventmart.edge.gateway import Gateway
from eventmart.edge.schema import ID_PATTERN  # what the API accepts as an id
from eventmart.platform.auth import InvalidTokenError, Principal, bearer_token, request_principal
from eventmart.platform.runtime import CORRELATION_HEADER

HERE = Path(__file__).parent
TEMPLATES_DIR = HERE / "templates"
STATIC_DIR = HERE / "static"

COOKIE = "eventmart_token"
LOW_STOCK = 5  # "only N left" at or below this many
FEATURED = 8
MAX_QUERY = 100

# Presentation only: the API answers 409 to a cancel it refuses, whatever this says.
CANCELLABLE = frozenset({"PENDING", "STOCK_RESERVED", "PAYMENT_AUTHORIZED", "CONFIRMED"})
CARD_TOKENS = (
    ("tok_visa", "Visa, approves", "The payment is authorized: the order is confirmed."),
    ("tok_declined", "Declined card", "The payment is declined: the order is cancelled."),
    (
        "tok_timeout",
        "Never answers",
        "The processor never replies: the payment deadline cancels the order.",
    ),
    ("tok_slow", "Slow approval", "Approves after a delay: watch the order wait for payment."),
)
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: https:; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
EVENT_LABELS = {
    "BasketCheckedOut": "Checked out",
    "OrderPlaced": "Order placed",
    "OrderStockReserved": "Stock reserved",
    "OrderPaymentAuthorized": "Payment authorized",
    "OrderConfirmed": "Order confirmed",
    "OrderCancelled": "Order cancelled",
    "OrderShipped": "Shipped",
    "OrderDelivered": "Delivered",
}
CANCELLATION_REASONS = {
    "OUT_OF_STOCK": "some items were out of stock",
    "PAYMENT_DECLINED": "the card was declined",
    "PAYMENT_TIMEOUT": "the payment did not complete in time",
    "CUSTOMER_CANCELLED": "you cancelled the order",
}
CURRENCY_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£"}


# -- the JSON API, in-process ---------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Answer:
    """One JSON API answer as a page sees it."""

    status: int
    data: Any
    headers: Mapping[str, str]

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def detail(self) -> str:
        return detail_text(self.data)


class ShopApi:
    """The BFF's own JSON API called in-process for one page request.

    The call carries the caller's token, address (rate limits key on it) and correlation
    id, and passes the same middleware a browser's request does.
    """

    def __init__(self, app: ASGIApp, request: Request) -> None:
        headers: dict[str, str] = {}
        token = bearer_token(request)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        corr = getattr(request.state, "correlation_id", None)
        if corr:
            headers[CORRELATION_HEADER] = corr
        client = (request.client.host, request.client.port) if request.client else ("", 0)
        self._client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, client=client),
            base_url="http://bff.internal",
            headers=headers,
            trust_env=False,
            timeout=None,  # the API has its own downstream timeouts
        )

    async def call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Answer:
        clean = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        response = await self._client.request(method, path, params=clean, json=json)
        try:
            data = response.json()
        except ValueError:
            data = {"detail": response.text}
        return Answer(response.status_code, data, response.headers)

    async def get(self, path: str, **params: Any) -> Answer:
        return await self.call("GET", path, params=params)

    async def __aenter__(self) -> ShopApi:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._client.aclose()


def detail_text(data: Any) -> str:
    """The API's `detail` as one sentence (422s carry a list naming the fields)."""
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for err in detail:
            if isinstance(err, dict):
                loc = [str(p) for p in err.get("loc", []) if p not in ("body", "query", "path")]
                parts.append(f"{'.'.join(loc)}: {err.get('msg', 'invalid')}".lstrip(": "))
        if parts:
            return "; ".join(parts)
    return "something went wrong"


# -- presentation helpers (templates' filters) ----------------------------------------
def money(cents: Any, currency: str | None = "USD") -> str:
    if not isinstance(cents, int):
        return "—"
    code = currency or "USD"
    sign = "-" if cents < 0 else ""
    amount = f"{abs(cents) // 100:,}.{abs(cents) % 100:02d}"
    symbol = CURRENCY_SYMBOLS.get(code)
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {code}"


def when(value: Any) -> str:
    """A timestamp (epoch ms, epoch s or ISO 8601) as `YYYY-MM-DD HH:MM:SS UTC`."""
    moment = to_datetime(value)
    if moment is None:
        return "" if value is None else str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(value: Any) -> str:
    moment = to_datetime(value)
    return moment.isoformat() if moment else ""


def to_datetime(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > 10**11 else value
        return datetime.fromtimestamp(seconds, UTC)
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return None


@dataclass(frozen=True, slots=True)
class Availability:
    state: str  # in | low | out | unknown
    text: str
    count: int | None


def availability(available: Any) -> Availability:
    if not isinstance(available, int) or isinstance(available, bool):
        return Availability("unknown", "availability unknown", None)
    if available <= 0:
        return Availability("out", "out of stock", 0)
    if available <= LOW_STOCK:
        return Availability("low", f"only {available} left", available)
    return Availability("in", "in stock", available)


def status_label(status: Any) -> str:
    """`PAYMENT_AUTHORIZED` -> `Payment authorized` (order.js does the same)."""
    text = str(status or "").replace("_", " ").lower()
    return text[:1].upper() + text[1:]


def image_url(value: Any) -> str:
    """Product images from our own paths or https only."""
    if isinstance(value, str) and (value.startswith("https://") or value.startswith("/static/")):
        return value
    return ""


def order_total(order: Mapping[str, Any]) -> Any:
    return order.get("total_cents", order.get("total"))


def order_placed(order: Mapping[str, Any]) -> Any:
    for key in ("placed_at", "placed_at_ms", "created_at"):
        if order.get(key) is not None:
            return order[key]
    timeline = order.get("timeline") or []
    return timeline[0].get("at") if timeline else None


def short_type(value: Any) -> str:
    """`eventmart.ordering.OrderPlaced` -> `OrderPlaced` (a message type without its
    namespace)."""
    return str(value or "").rsplit(".", 1)[-1]


def cancellable(order: Mapping[str, Any]) -> bool:
    flag = order.get("cancellable")
    return bool(flag) if isinstance(flag, bool) else order.get("status") in CANCELLABLE


def safe_next(value: str | None) -> str:
    """A local path to go back to after login; anything else (other hosts) goes home."""
    if (
        not value
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 32 for c in value)
    ):
        return "/"
    return value


def waterfall(spans: list[dict[str, Any]]) -> dict[str, Any]:
    """Spans on one time axis (0..1000), in lanes by service, the services in the order
    the trace reached them; within a lane, spans by start."""
    if not spans:
        return {"lanes": [], "duration_ms": 0.0}
    start = min(int(s["start_ns"]) for s in spans)
    end = max(int(s["end_ns"]) for s in spans)
    total = max(end - start, 1)
    lanes: dict[str, list[dict[str, Any]]] = {}
    for s in sorted(spans, key=lambda s: (int(s["start_ns"]), str(s.get("name", "")))):
        s0, s1 = int(s["start_ns"]) - start, int(s["end_ns"]) - start
        lanes.setdefault(str(s["service"]), []).append(
            {
                "service": s["service"],
                "name": s.get("name", ""),
                "kind": s.get("kind", ""),
                "status": s.get("status", "OK"),
                "offset_ms": s0 / 1e6,
                "duration_ms": (s1 - s0) / 1e6,
                "x": round(s0 * 1000 / total, 2),
                "width": round(max((s1 - s0) * 1000 / total, 2.0), 2),
            }
        )
    return {
        "lanes": [
            {"service": name, "colour": i % 8, "spans": rows}
            for i, (name, rows) in enumerate(lanes.items())
        ],
        "duration_ms": total / 1e6,
    }


def _static_versions() -> dict[str, str]:
    """Content hashes for cache busting (`/static/shop.js?v=...`)."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:10]
        for p in STATIC_DIR.iterdir()
        if p.is_file()
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    versions = _static_versions()
    env.globals["static"] = lambda name: f"/static/{name}?v={versions.get(name, '0')}"
    env.globals["card_tokens"] = CARD_TOKENS
    env.globals["event_labels"] = EVENT_LABELS
    env.globals["reasons"] = CANCELLATION_REASONS
    env.globals["cancellable_statuses"] = sorted(CANCELLABLE)
    env.filters["status_label"] = status_label
    env.filters["money"] = money
    env.filters["when"] = when
    env.filters["iso"] = iso
    env.filters["availability"] = availability
    env.filters["image_url"] = image_url
    env.filters["order_total"] = order_total
    env.filters["order_placed"] = order_placed
    env.filters["cancellable"] = cancellable
    env.filters["short_type"] = short_type
    return env


# -- the pages --------------------------------------------------------------------------
class Storefront:
    """Renders pages; holds the template environment and the app the API calls go into."""

    def __init__(self, app: FastAPI, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.settings = gateway.platform.settings
        self.env = _environment()

    # -- who is asking --------------------------------------------------------------
    def who(self, request: Request) -> Principal | None:
        try:
            return request_principal(request)
        except InvalidTokenError:
            return None

    # -- responses ------------------------------------------------------------------
    def render(
        self,
        request: Request,
        template: str,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        page = self.env.get_template(template).render(
            request=request,
            user=self.who(request),
            here=_here(request),
            q=context.pop("q", ""),
            **context,
        )
        return HTMLResponse(
            page, status_code=status, headers={**SECURITY_HEADERS, **(headers or {})}
        )

    def error(
        self, request: Request, status: int, detail: str, headers: Mapping[str, str] | None = None
    ) -> HTMLResponse:
        titles = {
            401: "Please log in",
            403: "Not allowed",
            404: "Not found",
            409: "Conflict",
            429: "Too many requests",
            503: "Temporarily unavailable",
        }
        title = titles.get(status, "Something went wrong")
        return self.render(request, "error.html", status, headers, title=title, detail=detail)

    def to_login(self, request: Request) -> RedirectResponse:
        """To the login page and back here after; an expired or foreign token is dropped."""
        target = quote(_here(request), safe="/")
        response = RedirectResponse(f"/login?next={target}", status_code=303)
        if request.cookies.get(COOKIE):
            response.delete_cookie(COOKIE, path="/")
        return response

    def failed(self, request: Request, answer: Answer) -> Response:
        """The page for an API answer that is not a success."""
        if answer.status == 401:
            return self.to_login(request)
        retry = answer.headers.get("retry-after")
        return self.error(
            request, answer.status, answer.detail, {"Retry-After": retry} if retry else None
        )

    def signed_in(self, request: Request, response: Response, token: str) -> None:
        """Keep the token in the cookie page loads and EventSource send."""
        max_age: int | None = None
        try:
            exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
            if isinstance(exp, int | float):
                max_age = max(0, math.floor(exp - time.time()))
        except jwt.PyJWTError:
            max_age = None
        response.set_cookie(
            COOKIE,
            token,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )

    def api(self, request: Request) -> ShopApi:
        return ShopApi(self.app, request)


def _here(request: Request) -> str:
    return request.url.path + (f"?{request.url.query}" if request.url.query else "")


async def _form(request: Request, limit: int) -> dict[str, str] | None:
    """A url-encoded form body (None when it is not one or is too large)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            return None
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _cross_site(request: Request) -> bool:
    """A form post from another site (login CSRF): browsers always send Origin on POST."""
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return origin == "null" or urlsplit(origin).netloc != request.headers.get("host", "")


def _page_number(value: str | None) -> int:
    try:
        return max(1, min(10_000, int(value or "1")))
    except ValueError:
        return 1


def _pages(request: Request, page: int, page_size: int, total: int) -> dict[str, str | None]:
    def link(n: int) -> str:
        query = dict(request.query_params)
        query["page"] = str(n)
        return "/products?" + urlencode(query)

    last = max(1, math.ceil(total / page_size)) if page_size else 1
    return {
        "prev": link(page - 1) if page > 1 else None,
        "next": link(page + 1) if page < last else None,
        "last": str(last),
    }


def storefront_router(app: FastAPI, gateway: Gateway) -> None:
    """Install the storefront and ops pages and `/static` on the web BFF."""
    app.include_router(_pages_router(Storefront(app, gateway)))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


def _pages_router(shop: Storefront) -> APIRouter:
    pages = APIRouter(include_in_schema=False)
    form_limit = shop.settings.max_body_bytes

    # -- browsing -------------------------------------------------------------------
    @pages.get("/", response_class=HTMLResponse)
    async def home(request: Request) -> Response:
        async with shop.api(request) as api:
            cats, featured = await asyncio.gather(
                api.get("/api/categories"), api.get("/api/products", page_size=FEATURED)
            )
        notices = [
            f"{what} unavailable: {a.detail}"
            for what, a in (("categories", cats), ("featured products", featured))
            if not a.ok
        ]
        return shop.render(
            request,
            "home.html",
            categories=cats.data if cats.ok else [],
            products=featured.data.get("items", []) if featured.ok else [],
            notice=featured.data.get("notice") if featured.ok else None,
            notices=notices,
        )

    @pages.get("/products", response_class=HTMLResponse)
    async def products(request: Request) -> Response:
        params = request.query_params
        q = (params.get("q") or "").strip()[:MAX_QUERY]
        category = (params.get("category") or "").strip()[:MAX_QUERY]
        page = _page_number(params.get("page"))
        async with shop.api(request) as api:
            listing, cats = await asyncio.gather(
                api.get("/api/products", q=q, category=category, page=page),
                api.get("/api/categories"),
            )
        if not listing.ok:
            return shop.failed(request, listing)
        data = listing.data
        page_size = int(data.get("page_size") or len(data.get("items", [])) or 1)
        return shop.render(
            request,
            "products.html",
            q=q,
            category=category,
            categories=cats.data if cats.ok else [],
            products=data.get("items", []),
            total=int(data.get("total", len(data.get("items", [])))),
            page=page,
            pager=_pages(request, page, page_size, int(data.get("total", 0))),
            notice=data.get("notice"),
        )

    @pages.get("/products/{product_id}", response_class=HTMLResponse)
    async def product(request: Request, product_id: str) -> Response:
        if not ID_PATTERN.fullmatch(product_id):
            return shop.error(request, 404, f"product {product_id} not found")
        async with shop.api(request) as api:
            found = await api.get(f"/api/products/{product_id}")
        if not found.ok:
            return shop.failed(request, found)
        return shop.render(request, "product.html", product=found.data)

    # -- signing in and out ---------------------------------------------------------
    @pages.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        return shop.render(
            request,
            "login.html",
            next=safe_next(request.query_params.get("next")),
            email="",
            error=None,
        )

    @pages.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        if _cross_site(request):
            return shop.error(request, 403, "cross-site form posts are refused")
        form = await _form(request, form_limit)
        if form is None:
            return shop.error(request, 400, "a url-encoded form is expected")
        target = safe_next(form.get("next"))
        email = form.get("email", "").strip()
        async with shop.api(request) as api:
            answer = await api.call(
                "POST",
                "/api/auth/token",
                json={"email": email, "password": form.get("password", "")},
            )
        if not answer.ok:
            error = "wrong e-mail or password" if answer.status == 401 else answer.detail
            status = answer.status if answer.status in (401, 422, 429, 503) else 400
            return shop.render(request, "login.html", status, next=target, email=email, error=error)
        response = RedirectResponse(target, status_code=303)
        shop.signed_in(request, response, answer.data["access_token"])
        return response

    @pages.get("/register", response_class=HTMLResponse)
    async def register_page(request: Request) -> Response:
        return shop.render(
            request,
            "register.html",
            next=safe_next(request.query_params.get("next")),
            name="",
            email="",
            error=None,
        )

    @pages.post("/register", response_class=HTMLResponse)
    async def register(request: Request) -> Response:
        if _cross_site(request):
            return shop.error(request, 403, "cross-site form posts are refused")
        form = await _form(request, form_limit)
        if form is None:
            return shop.error(request, 400, "a url-encoded form is expected")
        target = safe_next(form.get("next"))
        name, email = form.get("name", "").strip(), form.get("email", "").strip()
        password = form.get("password", "")
        async with shop.api(request) as api:
            created = await api.call(
                "POST",
                "/api/auth/register",
                json={"email": email, "password": password, "name": name},
            )
            token = (
                await api.call(
                    "POST", "/api/auth/token", json={"email": email, "password": password}
                )
                if created.ok
                else created
            )
        if not token.ok:
            return shop.render(
                request,
                "register.html",
                token.status if token.status in (409, 422, 429, 503) else 400,
                next=target,
                name=name,
                email=email,
                error=token.detail,
            )
        response = RedirectResponse(target, status_code=303)
        shop.signed_in(request, response, token.data["access_token"])
        return response

    @pages.get("/logout", response_class=HTMLResponse)
    async def logout_page(request: Request) -> Response:
        return shop.render(request, "logout.html")

    @pages.post("/logout")
    async def logout(request: Request) -> Response:
        if _cross_site(request):
            return shop.error(request, 403, "cross-site form posts are refused")
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # -- basket and orders ----------------------------------------------------------
    @pages.get("/basket", response_class=HTMLResponse)
    async def basket(request: Request) -> Response:
        if shop.who(request) is None:
            return shop.to_login(request)
        async with shop.api(request) as api:
            answer = await api.get("/api/basket")
        if not answer.ok:
            return shop.failed(request, answer)
        return shop.render(
            request, "basket.html", basket=answer.data, idempotency_key=str(uuid.uuid4())
        )

    @pages.get("/orders", response_class=HTMLResponse)
    async def orders(request: Request) -> Response:
        if shop.who(request) is None:
            return shop.to_login(request)
        page = _page_number(request.query_params.get("page"))
        async with shop.api(request) as api:
            answer = await api.get("/api/orders", page=page)
        if not answer.ok:
            return shop.failed(request, answer)
        data = answer.data
        items = data.get("items", [])
        page_size = int(data.get("page_size") or len(items) or 1)
        return shop.render(
            request,
            "orders.html",
            orders=items,
            page=page,
            has_next=int(data.get("total", 0)) > page * page_size,
        )

    @pages.get("/orders/{order_id}", response_class=HTMLResponse)
    async def order(request: Request, order_id: str) -> Response:
        if shop.who(request) is None:
            return shop.to_login(request)
        if not ID_PATTERN.fullmatch(order_id):
            return shop.error(request, 404, f"order {order_id} not found")
        async with shop.api(request) as api:
            answer = await api.get(f"/api/orders/{order_id}")
        if answer.status == 404 and may_be_in_flight(order_id):
            # Placed moments ago and not visible yet: show it being placed; the page's
            # event stream waits for the order and fills the page in when it comes.
            return shop.render(
                request,
                "order.html",
                order={"id": order_id, "status": "", "items": [], "timeline": []},
                terminal=False,
                placing=True,
            )
        if not answer.ok:
            return shop.failed(request, answer)
        return shop.render(
            request,
            "order.html",
            order=answer.data,
            terminal=answer.data.get("status") in TERMINAL,
            placing=False,
        )

    # -- the ops console ------------------------------------------------------------
    async def _lookup(api: ShopApi, order_id: str, wanted_trace: str) -> dict[str, Any] | None:
        """An order's events, saga steps and one of its traces, for the lookup form."""
        if not order_id:
            return None
        found: dict[str, Any] = {
            "order_id": order_id,
            "error": None,
            "history": None,
            "trace_ids": [],
            "trace_id": "",
            "waterfall": None,
            "trace_error": None,
        }
        if not ID_PATTERN.fullmatch(order_id):
            return {**found, "error": f"order id: {order_id!r} is not an order id"}
        history, traces = await asyncio.gather(
            api.get(f"/api/ops/streams/order-{order_id}"),
            api.get(f"/api/ops/orders/{order_id}/traces"),
        )
        trace_ids: list[str] = traces.data.get("trace_ids", []) if traces.ok else []
        # The oldest trace is the checkout's journey (the list comes newest first).
        chosen = wanted_trace if wanted_trace in trace_ids else (trace_ids[-1] if trace_ids else "")
        spans: dict[str, Any] | None = None
        trace_error = None if traces.ok else traces.detail
        if chosen:
            answer = await api.get(f"/api/ops/traces/{chosen}")
            if answer.ok:
                spans = waterfall(answer.data.get("spans", []))
            else:
                trace_error = answer.detail
        return {
            **found,
            "error": None if history.ok else history.detail,
            "history": history.data if history.ok else None,
            "trace_ids": trace_ids,
            "trace_id": chosen,
            "waterfall": spans,
            "trace_error": trace_error,
        }

    @pages.get("/ops", response_class=HTMLResponse)
    async def ops(request: Request) -> Response:
        who = shop.who(request)
        if who is None:
            return shop.to_login(request)
        if not who.is_admin:
            return shop.error(request, 403, "the ops console is for administrators only")
        lookup = (request.query_params.get("order") or "").strip()
        wanted_trace = (request.query_params.get("trace") or "").strip()
        async with shop.api(request) as api:
            services, lag, dlq, found = await asyncio.gather(
                api.get("/api/ops/services"),
                api.get("/api/ops/lag"),
                api.get("/api/ops/dlq"),
                _lookup(api, lookup, wanted_trace),
            )
        for answer in (services, lag, dlq):
            if answer.status in (401, 403):
                return shop.failed(request, answer)
        return shop.render(
            request,
            "ops.html",
            services=services.data if services.ok else [],
            services_error=None if services.ok else services.detail,
            lag=lag.data if lag.ok else {"groups": [], "total_lag": 0},
            lag_error=None if lag.ok else lag.detail,
            dlq=dlq.data if dlq.ok else [],
            dlq_error=None if dlq.ok else dlq.detail,
            lookup=lookup,
            found=found,
        )

    return pages
