"""What both gateways share: downstream clients, rate limits, load shedding, size limits
and the mapping of downstream failures to 503 + Retry-After (or 502 when a downstream
answers something that cannot be passed on)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import ResponseValidationError
from fastapi.responses import JSONResponse
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from opentelemetry.sdk.trace import TracerProvider
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from eventmart.platform import metrics
from eventmart.platform.auth import InvalidTokenError, request_principal
from eventmart.platform.http import (
    Downstream,
    DownstreamUnavailableError,
    answer_detail,
    retry_after,
)
from eventmart.platform.infra import Platform
from eventmart.services import SERVICE_INDEX

log = logging.getLogger(__name__)

UNLIMITED_PATHS = ("/healthz", "/readyz", "/metrics", "/static/")


class Gateway:
    """Downstream clients and edge policies for one gateway process."""

    def __init__(
        self, name: str, platform: Platform, tracer_provider: TracerProvider | None
    ) -> None:
        self.name = name
        self.platform = platform
        s = platform.settings
        self.downstream = {
            svc: Downstream(
                svc,
                s.service_url(svc),
                timeout_s=s.downstream_timeout_s,
                tracer_provider=tracer_provider,
            )
            for svc in SERVICE_INDEX
        }
        self.limiter = MovingWindowRateLimiter(MemoryStorage())
        self.limit = parse(s.rate_limit)
        self.inflight = 0
        self._lag_checked = 0.0
        self._ordering_lag = 0

    def service(self, name: str) -> Downstream:
        return self.downstream[name]

    async def ordering_lag(self) -> int:
        """The checkout pipeline's backlog, refreshed at most once a second."""
        if time.monotonic() - self._lag_checked > 1.0:
            self._lag_checked = time.monotonic()
            rows = await run_in_threadpool(self.platform.bus.lag, "ordering")
            self._ordering_lag = sum(r.lag for r in rows)
        return self._ordering_lag

    async def aclose(self) -> None:
        await asyncio.gather(*(d.aclose() for d in self.downstream.values()))

    def install(self, app: FastAPI) -> None:
        app.add_middleware(EdgePolicies, gateway=self)

        @app.exception_handler(DownstreamUnavailableError)
        async def unavailable(_request: Request, exc: DownstreamUnavailableError) -> Response:
            return JSONResponse(
                {"detail": exc.detail or str(exc), "service": exc.service},
                status_code=503,
                headers={"Retry-After": str(math.ceil(exc.retry_after_s))},
            )

        @app.exception_handler(ResponseValidationError)
        async def unexpected_shape(request: Request, exc: ResponseValidationError) -> Response:
            # What a downstream answered does not fit the route's documented answer.
            log.error(
                "%s %s: answer does not fit its schema: %s",
                request.method,
                request.url.path,
                exc.errors()[:5],
            )
            return JSONResponse(
                {"detail": "a downstream service answered in an unexpected shape"},
                status_code=502,
            )

        # Outside the edge policies (so their own failures are caught too), inside the
        # correlation and tracing middleware installed after this.
        app.add_middleware(AnswerUnexpectedErrors)


class EdgePolicies:
    """What the edge refuses before any route runs, cheapest check first: a body over the
    size limit (413), more requests in flight than the gateway takes (503), a client over
    its rate limit (429). Health, readiness, metrics and static files are exempt.

    A plain ASGI middleware (see eventmart.platform.runtime.Correlation for why)."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self.gateway = gateway
        self.settings = gateway.platform.settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNLIMITED_PATHS):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        gateway = self.gateway
        gateway.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            gateway.inflight -= 1

    def _refusal(self, request: Request) -> Response | None:
        settings, gateway = self.settings, self.gateway
        # 1. Size limit, before reading anything.
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            return JSONResponse(
                {"detail": f"request body is larger than {settings.max_body_bytes} bytes"},
                status_code=413,
            )
        # 2. Load shedding: refuse early rather than queue without bound.
        if gateway.inflight >= settings.max_inflight_requests:
            metrics.SHED.labels(gateway.name, "inflight").inc()
            return JSONResponse(
                {"detail": "the shop is busy; retry shortly"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        # 3. Rate limit per client: the token's user if any, else the address.
        key = _client_key(request)
        if not gateway.limiter.hit(gateway.limit, gateway.name, key):
            stats = gateway.limiter.get_window_stats(gateway.limit, gateway.name, key)
            retry = max(1, math.ceil(stats.reset_time - time.time()))
            metrics.SHED.labels(gateway.name, "rate_limit").inc()
            return JSONResponse(
                {"detail": f"rate limit of {settings.rate_limit} exceeded"},
                status_code=429,
                headers={"Retry-After": str(retry)},
            )
        return None


class AnswerUnexpectedErrors:
    """Answer an unexpected exception with a 500 instead of letting it escape.

    Starlette's error middleware answers 500 and then re-raises the exception so that the
    server logs it, and uvicorn, seeing an exception after the response started, closes
    the connection: a client reusing that kept-alive connection gets a reset on its next
    request. Logging it here and answering normally keeps the connection usable.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            log.exception("unexpected error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise  # half an answer is out: closing the connection is all that is left
            response = JSONResponse(
                {"detail": "internal error in the gateway; it is logged"}, status_code=500
            )
            await response(scope, receive, send)


def _client_key(request: Request) -> str:
    try:
        principal = request_principal(request)
    except InvalidTokenError:
        principal = None
    if principal is not None:
        return "user:" + principal.user_id
    return "ip:" + (request.client.host if request.client else "unknown")


def passthrough(response: httpx.Response) -> Any:
    """Return a downstream's JSON, or raise its 4xx as ours (same status, same detail).

    What cannot be passed on becomes a 502 naming it: a redirect (the gateway does not
    follow a downstream elsewhere) or a success whose body is not JSON.
    """
    code = response.status_code
    if 300 <= code < 400:
        target = response.headers.get("location", "")
        raise HTTPException(
            502,
            f"a downstream answered {_where(response)} with a redirect ({code} {target})".strip(),
        )
    if code >= 400:
        retry = retry_after(response)
        raise HTTPException(
            code,
            answer_detail(response) or f"a downstream refused {_where(response)} ({code})",
            headers={"Retry-After": retry} if retry else None,
        )
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("content-type", "no content type")
        raise HTTPException(
            502, f"a downstream answered {_where(response)} with a body that is not JSON ({kind})"
        ) from None


def _where(response: httpx.Response) -> str:
    # Only for an answer that is refused: the happy path (every proxied request) skips it.
    return f"{response.request.method} {response.request.url.path}"
