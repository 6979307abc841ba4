"""The service runtime: hosts one service's HTTP API, consumers, outbox relay, timers and
background loops in one process, with health, readiness, metrics and graceful shutdown.

A service describes itself with `Service`; `ServiceRuntime` does the rest, the same way for
every service (the chassis' "service defaults", called in one line).
"""

from __future__ import annotations

import functools
import gc
import inspect
import logging
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.telemetry import TelemetryConfig
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as AsgiMessage

from eventmart.platform import metrics
from eventmart.platform.consumer import ConsumerRunner, RetryPolicy
from eventmart.platform.context import caused_by
from eventmart.platform.db import keep_connections
from eventmart.platform.errors import ConcurrencyError, EventmartError
from eventmart.platform.infra import Platform
from eventmart.platform.messages import Message, now_ms
from eventmart.platform.messaging import Handlers, MessageWriter, UnitOfWork, unit_of_work
from eventmart.platform.settings import Settings
from eventmart.platform.store import ServiceStore
from eventmart.platform.store.outbox import OutboxRelay
from eventmart.platform.tracing import setup_tracing

log = logging.getLogger(__name__)

CORRELATION_HEADER = "X-Correlation-ID"
# What a caller's correlation or request id may look like to be adopted (a UUID, a hex
# string, a trace-style id); anything else is replaced by a fresh id, because it would be
# copied into every downstream request and message header.
_CALLER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")


def _incoming_id(value: str | None) -> str | None:
    return value if value and _CALLER_ID.fullmatch(value) else None


@dataclass
class Subscription:
    """A consumer group of the service and the handlers it runs."""

    group: str
    handlers: Handlers
    topics: list[str] | None = None  # default: the topics of the handled types
    batch_size: int | None = None
    retry: RetryPolicy | None = None  # default: from settings


@dataclass
class Loop:
    """A background task run every `interval_s` (e.g. expiring reservations)."""

    name: str
    fn: Callable[[], object]
    interval_s: float


@dataclass
class Service:
    name: str
    store: ServiceStore | None = None
    app: FastAPI | None = None
    subscriptions: list[Subscription] = field(default_factory=list)
    loops: list[Loop] = field(default_factory=list)
    on_start: list[Callable[[], None]] = field(default_factory=list)
    # Long-running work of the service's own, run on a thread until the event is set.
    workers: list[Callable[[threading.Event], None]] = field(default_factory=list)
    produces: list[type[Message]] = field(default_factory=list)
    # Set by the runtime at start (it needs the service's tracer); API routes use `uow()`.
    writer: MessageWriter | None = None

    def uow(self) -> AbstractContextManager[UnitOfWork]:
        """A unit of work on this service's database (for API routes and loops)."""
        if self.store is None or self.writer is None:
            raise EventmartError(f"service {self.name} is not started or has no store")
        return unit_of_work(self.store, self.writer)


# Server spans come from OpenTelemetry's FastAPI instrumentation, with the process's own
# TracerProvider (see `install_service_defaults`). FastAPI's built-in telemetry stays off:
# left on, it asks the global providers on every request whether it has work to do (1.5%
# of a service's CPU under checkout load) and finds none.
NATIVE_TELEMETRY_OFF: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


class ServiceRouter(APIRouter):
    """The router a service's API is written with: endpoints are plain functions (they do
    blocking database work), and each request hands off to the thread pool once.

    FastAPI runs a plain `def` endpoint in the thread pool and then hands the result to
    the thread pool a second time to validate and serialize the response. Two hand-offs
    per request were ~13% of the basket's CPU under checkout load (py-spy). Here a plain
    endpoint is wrapped in a coroutine that runs it in the pool, so FastAPI serializes the
    result on the event loop instead. Same signature, same dependencies, same answers.
    """

    def add_api_route(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().add_api_route(path, _off_the_loop(endpoint), **kwargs)


def _off_the_loop(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(endpoint) or not inspect.isfunction(endpoint):
        return endpoint

    @functools.wraps(endpoint)
    async def in_thread(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(endpoint, *args, **kwargs)

    return in_thread


def service_app(name: str, settings: Settings, **kwargs: Any) -> FastAPI:
    """A FastAPI app for a service, with the settings its auth dependencies read."""
    app = FastAPI(title=f"eventmart {name}", telemetry=NATIVE_TELEMETRY_OFF, **kwargs)
    app.state.settings = settings
    return app


class ServiceRuntime:
    """Runs a `Service`. `start()`/`stop()` for tests; `serve()` for a process."""

    def __init__(self, service: Service, platform: Platform) -> None:
        self.service = service
        self.platform = platform
        self.settings = platform.settings
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.runners: list[ConsumerRunner] = []
        self.relay: OutboxRelay | None = None
        self.started = False
        self._ready = threading.Event()
        self.member_suffix = uuid.uuid4().hex[:6]
        self._timers_version: int | None = None
        self._next_due: int | None = None
        self.tracer_provider = setup_tracing(
            f"eventmart-{service.name}", platform.spans, platform.settings.trace_sample_ratio
        )

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        svc = self.service
        codec = self.platform.codec
        codec.register(
            *svc.produces, *(t for s in svc.subscriptions for t in s.handlers.message_types())
        )
        writer = svc.writer or MessageWriter(
            codec, svc.name, self.tracer_provider.get_tracer("eventmart")
        )
        svc.writer = writer
        if svc.store is not None:
            svc.store.create()
        for hook in svc.on_start:
            hook()
        s = self.settings
        if svc.store is not None:
            self.relay = OutboxRelay(svc.store.db, svc.store.outbox, self.platform.bus.producer())
            self._thread(f"{svc.name}-relay", self.relay.run)
            self._loop(Loop("timers", self._fire_timers, 0.1))
        for sub in svc.subscriptions:
            if svc.store is None:
                raise EventmartError(
                    f"service {svc.name} subscribes but has no store for its inbox"
                )
            runner = ConsumerRunner(
                bus=self.platform.bus,
                group=sub.group,
                handlers=sub.handlers,
                store=svc.store,
                writer=writer,
                topics=sub.topics,
                batch_size=sub.batch_size or s.consumer_batch_size,
                max_in_flight=s.max_in_flight,
                retry=sub.retry
                or RetryPolicy(
                    s.retry_max_attempts, s.retry_backoff_initial_s, s.retry_backoff_max_s
                ),
                member_id=f"{svc.name}-{self.member_suffix}",
            )
            _ = runner.consumer  # join the group now, so readiness means "consuming"
            self.runners.append(runner)
            self._thread(f"{svc.name}-{sub.group}", runner.run)
        for loop in svc.loops:
            self._loop(loop)
        for i, worker in enumerate(svc.workers):
            self._thread(f"{svc.name}-worker-{i}", worker)
        self.started = True
        self._ready.set()
        log.info("service %s started (%d consumers)", svc.name, len(self.runners))

    def _thread(self, name: str, target: Callable[[threading.Event], None]) -> None:
        def run(stop: threading.Event) -> None:
            # A loop's transactions come one after another: it keeps its connections.
            with keep_connections():
                target(stop)

        t = threading.Thread(target=run, args=(self.stop_event,), name=name, daemon=True)
        t.start()
        self.threads.append(t)

    def _loop(self, loop: Loop) -> None:
        def run(stop: threading.Event) -> None:
            while not stop.wait(loop.interval_s):
                try:
                    loop.fn()
                except Exception:
                    log.exception(
                        "loop %s failed; it runs again in %.1fs", loop.name, loop.interval_s
                    )

        self._thread(f"{self.service.name}-{loop.name}", run)

    def _fire_timers(self) -> None:
        store = self.service.store
        assert store is not None
        version = store.db.data_version()
        if (
            version is not None
            and version == self._timers_version
            and (self._next_due is None or self._next_due > now_ms())
        ):
            return  # nothing committed since the last look, and nothing due yet
        self._timers_version = version
        with store.db.read() as conn:
            self._next_due = due = store.timers.next_due_ms(conn)
        if due is None or due > now_ms():
            return  # nothing due: no write transaction
        with store.db.transaction() as conn:
            fired = store.timers.fire_due(conn)
        if fired:
            store.outbox.wake.set()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Graceful stop: consumers finish the batch in hand and commit, the relay drains
        its current batch, then the process may exit."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout_s
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self._ready.clear()
        self.started = False
        # Spans of the last moments go out now, while their store is still there.
        self.tracer_provider.force_flush(2000)
        if trace.get_tracer_provider() is not self.tracer_provider:
            self.tracer_provider.shutdown()

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and all(t.is_alive() for t in self.threads)

    # -- HTTP -----------------------------------------------------------------------
    def build_app(self) -> FastAPI:
        app = self.service.app or service_app(self.service.name, self.settings)
        install_service_defaults(app, self.service.name, self, self.tracer_provider)
        return app

    def serve(self, host: str, port: int) -> None:
        """Run until SIGINT/SIGTERM, then stop gracefully."""
        app = self.build_app()
        self.start()
        try:
            serve_http(app, host, port, self.settings.gc_young_threshold)
        finally:
            self.stop()
            self.platform.close()


def settle_heap(young_threshold: int) -> None:
    """Tune CPython's cyclic garbage collector for a process that has finished starting.

    What start-up allocated (modules, the app, SQLAlchemy metadata, schemas: some 10^5
    objects) is moved out of the collector's sight with `gc.freeze()`, so a full
    collection no longer walks all of it; and the young generation's threshold is raised
    from 700 allocations, so the batch of records a consumer holds does not set off a
    collection every few dozen records. On the Kafka consume path (bench/kafka_bus.py)
    collections cost 2-3 µs per record before, next to nothing after. Objects made
    later are collected as usual; `young_threshold` 0 keeps Python's thresholds.
    """
    gc.collect()
    gc.freeze()
    if young_threshold:
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)


def serve_http(app: FastAPI, host: str, port: int, gc_young_threshold: int) -> None:
    """Serve `app` until SIGINT/SIGTERM. The socket has SO_REUSEPORT, so several instances
    of a service share its port and the kernel spreads connections among them. The
    process is started by then: its heap is settled first (`settle_heap`)."""
    settle_heap(gc_young_threshold)
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted connections only
    # then, and without it Nagle + delayed ACKs add ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


class Correlation:
    """Every HTTP request runs under a correlation id (the caller's X-Correlation-ID, or a
    new one), echoed in the answer, and is counted and timed in the metrics.

    A plain ASGI middleware rather than `@app.middleware("http")`: Starlette's
    BaseHTTPMiddleware runs the rest of the app in a second task and copies the answer
    through memory streams, a quarter of a gateway's CPU per proxied request (measured
    with py-spy on the web BFF).
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        corr = _incoming_id(headers.get(CORRELATION_HEADER)) or uuid.uuid4().hex
        scope.setdefault("state", {})["correlation_id"] = corr  # request.state.correlation_id
        echoed = (CORRELATION_HEADER.lower().encode(), corr.encode())
        status = 500  # if the app raises before answering
        started = time.perf_counter()

        async def answer(message: AsgiMessage) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                kept = [h for h in message.get("headers", ()) if h[0].lower() != echoed[0]]
                message["headers"] = [*kept, echoed]
            await send(message)

        try:
            with caused_by(corr, _incoming_id(headers.get("X-Request-ID")) or corr):
                await self.app(scope, receive, answer)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            metrics.HTTP_REQUESTS.labels(self.service, scope["method"], path, str(status)).inc()
            metrics.HTTP_SECONDS.labels(self.service, path).observe(time.perf_counter() - started)


def install_service_defaults(
    app: FastAPI,
    service: str,
    runtime: ServiceRuntime | None,
    tracer_provider: TracerProvider | None = None,
) -> None:
    """Health, readiness, metrics, correlation ids, tracing and error mapping: one call."""

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> Response:
        if runtime is None or runtime.ready:
            return JSONResponse({"status": "ready", "service": service})
        return JSONResponse({"status": "starting", "service": service}, status_code=503)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        if runtime is not None:
            refresh_lag_metrics(runtime)
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(Correlation, service=service)

    @app.exception_handler(ConcurrencyError)
    async def conflict(_request: Request, exc: ConcurrencyError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    FastAPIInstrumentor.instrument_app(
        app,
        excluded_urls="healthz,readyz,metrics,static",
        tracer_provider=tracer_provider,
        exclude_spans=["receive", "send"],  # ASGI message spans: noise in an order's trace
    )


def refresh_lag_metrics(runtime: ServiceRuntime) -> None:
    for runner in runtime.runners:
        for lag in runtime.platform.bus.lag(runner.group):
            metrics.CONSUMER_LAG.labels(lag.group, lag.topic, str(lag.partition)).set(lag.lag)
