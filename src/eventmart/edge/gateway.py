"""What both gateways share: downstream clients, rate limits, admission control and load
shedding, size limits and the mapping of downstream failures to 503 + Retry-After (or 502
when a downstream answers something that cannot be passed on).

Why admission control: a gateway that starts work on every request it is sent turns an
overload into a queue inside the services (threads waiting on locks, event loops with
hundreds of requests half done), and every answer gets slow, the ones that finally succeed
included. So a gateway works on at most `max_concurrent_requests` at once; the next ones
wait in arrival order, each at most `max_queue_wait_s`, and at most
`max_inflight_requests` are in the gateway at all; a request past those limits is answered
503 + Retry-After at once, for the price of a few microseconds. A request holds its place
until its answer starts, so an event stream does not hold one for its whole life.

Checkout also looks one step further: if the ordering group's backlog would take more
than `shed_backlog_s` to clear (its lag over the rate it has been consuming lately), an
order accepted now would wait behind it, so checkout is answered 503 until it shrinks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
from eventmart.platform.bus import PartitionLag
from eventmart.platform.http import (
    Answer,
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
        self.admission = Admission(
            name, s.max_concurrent_requests, s.max_inflight_requests, s.max_queue_wait_s
        )
        self.ordering = Backlog(lambda: self.platform.bus.lag("ordering"))

    def service(self, name: str) -> Downstream:
        return self.downstream[name]

    async def checkout_refusal(self) -> tuple[str, float] | None:
        """Why a checkout should not be accepted now, and the Retry-After: when ordering
        (where the saga runs) is too far behind (see the module docstring)."""
        backlog = await self.ordering.sample()
        settings = self.platform.settings
        if backlog.lag > settings.shed_lag_threshold:
            return f"checkout is busy ({backlog.lag} messages waiting); retry shortly", 2.0
        clear_s = backlog.clear_s
        if (
            clear_s is not None
            and backlog.lag >= BACKLOG_FLOOR
            and clear_s > settings.shed_backlog_s
        ):
            wait = "a while" if math.isinf(clear_s) else f"about {clear_s:.1f} s"
            return (
                f"checkout is busy (the orders before yours need {wait}); retry shortly",
                min(10.0, clear_s),
            )
        return None

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


# A backlog smaller than this is always let in, however slowly ordering consumed lately:
# a burst after a quiet spell (whose rate says little) must not be refused.
BACKLOG_FLOOR = 50


class Admission:
    """At most `limit` requests worked on at once; the next ones wait in arrival order,
    each at most `max_wait_s`; at most `capacity` in all (working and waiting)."""

    def __init__(self, name: str, limit: int, capacity: int, max_wait_s: float) -> None:
        self._waited = metrics.ADMISSION_WAIT.labels(name)
        self.limit = limit
        self.capacity = max(capacity, limit)
        self.max_wait_s = max_wait_s
        self.working = 0
        self.waiting = 0
        self._slots = asyncio.Semaphore(limit)

    async def enter(self) -> str | None:
        """None once admitted (call `leave` after); else why not: "full" (no room to
        wait) or "timeout" (waited `max_wait_s`)."""
        if self.working + self.waiting >= self.capacity:
            return "full"
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: no suspension
            self.working += 1
            return None
        self.waiting += 1
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.max_wait_s):
                await self._slots.acquire()
        except TimeoutError:
            return "timeout"
        finally:
            self.waiting -= 1
        self._waited.observe(time.perf_counter() - started)
        self.working += 1
        return None

    def leave(self) -> None:
        self.working -= 1
        self._slots.release()


@dataclass(frozen=True)
class BacklogSample:
    lag: int  # messages not yet consumed
    rate: float | None  # messages consumed per second lately; None: not known yet

    @property
    def clear_s(self) -> float | None:
        """Seconds to consume the backlog at the recent rate (inf: nothing was consumed
        while there was a backlog); None when the rate is not known."""
        if self.rate is None:
            return None
        if self.lag == 0:
            return 0.0
        return self.lag / self.rate if self.rate > 0 else math.inf


class Backlog:
    """A consumer group's backlog, read from the bus at most every `every_s`: its lag and
    how fast it has been consuming (committed offsets between two consecutive reads,
    smoothed). Reads further apart than `stale_s` do not make a rate: a rate over a quiet
    minute says nothing about now."""

    def __init__(
        self,
        read: Callable[[], Sequence[PartitionLag]],
        *,
        every_s: float = 0.5,
        stale_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read = read
        self.every_s = every_s
        self.stale_s = stale_s
        self._clock = clock
        self._asked_at = -math.inf  # when the last read started
        self._read_at: float | None = None  # when the last read's answer came
        self._committed = 0
        self.last = BacklogSample(0, None)

    async def sample(self) -> BacklogSample:
        """The latest reading; a read that fails keeps the one before (nothing is shed
        for want of a number: the bus being slow to answer is not the shop being busy)."""
        if self._clock() - self._asked_at >= self.every_s:
            self._asked_at = self._clock()  # one read at a time, even while this one runs
            try:
                rows = await run_in_threadpool(self._read)
            except Exception as e:
                log.warning("could not read the backlog (%s); using the last reading", e)
            else:
                self.update(rows, self._clock())
        return self.last

    def update(self, rows: Sequence[PartitionLag], now: float) -> BacklogSample:
        committed = sum(r.committed for r in rows)
        rate = self.last.rate
        before = self._read_at
        if before is None or now - before > self.stale_s or committed < self._committed:
            rate = None  # no recent read to compare with (or the group was reset)
        elif now > before:
            current = (committed - self._committed) / (now - before)
            rate = current if rate is None else (rate + current) / 2
        self._read_at = now
        self._committed = committed
        self.last = BacklogSample(sum(r.lag for r in rows), rate)
        return self.last


class EdgePolicies:
    """What the edge refuses before any route runs, cheapest check first: a body over the
    size limit (413), a client over its rate limit (429), no room in admission (503, see
    the module docstring). Health, readiness, metrics and static files are exempt.

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
        admission = self.gateway.admission
        why = await admission.enter()
        if why is not None:
            metrics.SHED.labels(self.gateway.name, f"admission_{why}").inc()
            busy = JSONResponse(
                {"detail": "the shop is busy; retry shortly"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
            await busy(scope, receive, send)
            return
        holding = True

        async def answer(message: Message) -> None:
            nonlocal holding
            if holding and message["type"] == "http.response.start":
                holding = False
                admission.leave()  # the answer is on its way: the next request may start
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            if holding:
                admission.leave()

    def _refusal(self, request: Request) -> Response | None:
        settings, gateway = self.settings, self.gateway
        # 1. Size limit, before reading anything.
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > settings.max_body_bytes:
            return JSONResponse(
                {"detail": f"request body is larger than {settings.max_body_bytes} bytes"},
                status_code=413,
            )
        # 2. Rate limit per client: the token's user if any, else the address.
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


def passthrough(response: Answer) -> Any:
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


def _where(response: Answer) -> str:
    # Only for an answer that is refused: the happy path (every proxied request) skips it.
    return f"{response.method} {response.path.partition('?')[0]}"
