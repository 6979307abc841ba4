"""What both gateways share: downstream clients, rate limits, load shedding, size limits
and the mapping of downstream failures to 503 + Retry-After."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from opentelemetry.sdk.trace import TracerProvider

from eventmart.platform import metrics
from eventmart.platform.auth import InvalidTokenError, bearer_token, verify_token
from eventmart.platform.http import Downstream, DownstreamUnavailableError
from eventmart.platform.infra import Platform
from eventmart.services import SERVICE_INDEX

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
        settings = self.platform.settings

        @app.middleware("http")
        async def edge_policies(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            path = request.url.path
            if path.startswith(UNLIMITED_PATHS):
                return await call_next(request)
            # 1. Size limit, before reading anything.
            length = request.headers.get("content-length")
            if length and length.isdigit() and int(length) > settings.max_body_bytes:
                return JSONResponse(
                    {"detail": f"request body is larger than {settings.max_body_bytes} bytes"},
                    status_code=413,
                )
            # 2. Load shedding: refuse early rather than queue without bound.
            if self.inflight >= settings.max_inflight_requests:
                metrics.SHED.labels(self.name, "inflight").inc()
                return JSONResponse(
                    {"detail": "the shop is busy; retry shortly"},
                    status_code=503,
                    headers={"Retry-After": "1"},
                )
            # 3. Rate limit per client: the token's user if any, else the address.
            key = _client_key(request)
            if not self.limiter.hit(self.limit, self.name, key):
                stats = self.limiter.get_window_stats(self.limit, self.name, key)
                retry = max(1, math.ceil(stats.reset_time - time.time()))
                metrics.SHED.labels(self.name, "rate_limit").inc()
                return JSONResponse(
                    {"detail": f"rate limit of {settings.rate_limit} exceeded"},
                    status_code=429,
                    headers={"Retry-After": str(retry)},
                )
            self.inflight += 1
            try:
                return await call_next(request)
            finally:
                self.inflight -= 1

        @app.exception_handler(DownstreamUnavailableError)
        async def unavailable(_request: Request, exc: DownstreamUnavailableError) -> Response:
            return JSONResponse(
                {"detail": str(exc), "service": exc.service},
                status_code=503,
                headers={"Retry-After": str(math.ceil(exc.retry_after_s))},
            )


def _client_key(request: Request) -> str:
    token = bearer_token(request)
    if token:
        try:
            return "user:" + verify_token(request.app.state.settings, token).user_id
        except InvalidTokenError:
            pass
    return "ip:" + (request.client.host if request.client else "unknown")


def passthrough(response: Any) -> Any:
    """Return a downstream's JSON, or raise its 4xx as ours (same status, same detail)."""
    if response.status_code >= 400:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise HTTPException(response.status_code, detail)
    return response.json()
