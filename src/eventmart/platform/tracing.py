"""OpenTelemetry for every process: spans for HTTP, publish, consume and handle, with W3C
trace context carried in message headers so one trace follows an order across every hop.

Spans go to a local span store (so the ops console can show a trace without any other
system) and, when OTEL_EXPORTER_OTLP_ENDPOINT is set, to an OTLP collector as well.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from sqlalchemy import BigInteger, Column, Index, MetaData, String, Table, Text, func, select

from eventmart.platform.db import Database, FastInsert
from eventmart.platform.messages import H_TRACEPARENT, H_TRACESTATE, Headers

log = logging.getLogger(__name__)
_propagator = TraceContextTextMapPropagator()
TRACER_NAME = "eventmart"


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


class _DictSetter(Setter[dict[str, str]]):
    def set(self, carrier: dict[str, str], key: str, value: str) -> None:
        carrier[key] = value


class _HeadersGetter(Getter[Headers]):
    def get(self, carrier: Headers, key: str) -> list[str] | None:
        found = [v.decode() if v is not None else "" for k, v in carrier if k == key]
        return found or None

    def keys(self, carrier: Headers) -> list[str]:
        return [k for k, _ in carrier]


def current_trace_headers() -> dict[str, str]:
    """traceparent/tracestate of the current span, for a message being written now."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, setter=_DictSetter())
    return carrier


def context_from_headers(headers: Headers) -> otel_context.Context:
    return _propagator.extract(headers, getter=_HeadersGetter())


def trace_id_hex(span: Span | None = None) -> str | None:
    ctx = (span or trace.get_current_span()).get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


@contextmanager
def consume_span(
    tracer_: trace.Tracer, topic: str, group: str, headers: Headers, attributes: dict[str, Any]
) -> Iterator[Span]:
    """A CONSUMER span whose parent is the producer's span, taken from the headers."""
    parent = context_from_headers(headers)
    with tracer_.start_as_current_span(
        f"{topic} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "eventmart",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group,
            **attributes,
        },
    ) as span:
        yield span


@contextmanager
def producer_span(
    tracer_: trace.Tracer, topic: str, message_type: str, attributes: dict[str, Any]
) -> Iterator[Span]:
    with tracer_.start_as_current_span(
        f"{topic} publish",
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "eventmart",
            "messaging.destination.name": topic,
            "messaging.message.type": message_type,
            **attributes,
        },
    ) as span:
        yield span


# -- the local span store ----------------------------------------------------------------


class SpanStore:
    """Finished spans, queryable by trace id (the ops console's trace view)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.metadata = MetaData()
        self.table = Table(
            "spans",
            self.metadata,
            Column("span_id", String(16), primary_key=True),
            Column("trace_id", String(32), nullable=False),
            Column("parent_id", String(16)),
            Column("service", String(100), nullable=False),
            Column("name", String(300), nullable=False),
            Column("kind", String(20), nullable=False),
            Column("start_ns", BigInteger, nullable=False),
            Column("end_ns", BigInteger, nullable=False),
            Column("status", String(10), nullable=False),
            Column("attributes", Text, nullable=False),
        )
        Index("ix_spans_trace", self.table.c.trace_id)
        # Rows arrive in batches from every process' span processor: one compiled INSERT
        # executed on row tuples (SQLAlchemy's per-row parameter processing was a third
        # of an export).
        columns = [c.name for c in self.table.columns]
        self._insert = FastInsert(self.table, columns, sqlite_prefix="OR IGNORE")
        self._created = False
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        if not self._created:
            with self._lock:
                if not self._created:
                    self.db.create_all(self.metadata)
                    self._created = True

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        """Store finished spans, as tuples in the table's column order."""
        self._ensure()
        with self.db.transaction() as conn:
            self._insert.execute(conn, rows)

    def trace(self, trace_id: str) -> list[dict[str, Any]]:
        self._ensure()
        t = self.table
        with self.db.read() as conn:
            rows = (
                conn.execute(select(t).where(t.c.trace_id == trace_id).order_by(t.c.start_ns))
                .mappings()
                .all()
            )
        return [{**row, "attributes": orjson.loads(row["attributes"])} for row in rows]

    def traces_for_key(self, key: str, limit: int = 20) -> list[str]:
        """Trace ids whose messaging spans concern this key (e.g. an order id), newest first."""
        self._ensure()
        t = self.table
        needle = f'%"eventmart.key":"{key}"%'
        with self.db.read() as conn:
            rows = conn.execute(
                select(t.c.trace_id, func.max(t.c.start_ns).label("last"))
                .where(t.c.attributes.like(needle))
                .group_by(t.c.trace_id)
                .order_by(func.max(t.c.start_ns).desc())
                .limit(limit)
            ).all()
        return [r.trace_id for r in rows]


class SpanStoreExporter(SpanExporter):
    def __init__(self, store: SpanStore, service: str) -> None:
        self.store = store
        self.service = service

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows = []
        for s in spans:
            ctx = s.context
            if ctx is None or s.start_time is None or s.end_time is None:
                continue
            rows.append(
                (
                    format(ctx.span_id, "016x"),
                    format(ctx.trace_id, "032x"),
                    format(s.parent.span_id, "016x") if s.parent else None,
                    self.service,
                    s.name,
                    s.kind.name,
                    s.start_time,
                    s.end_time,
                    "ERROR" if s.status.status_code is StatusCode.ERROR else "OK",
                    orjson.dumps(dict(s.attributes or {}), default=str).decode(),
                )
            )
        if rows:
            try:
                self.store.add(rows)
            except Exception:
                log.warning("could not store %d spans", len(rows), exc_info=True)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def setup_tracing(
    service: str, span_store: SpanStore | None, sample_ratio: float = 1.0
) -> TracerProvider:
    """A tracer provider for one service; the first one in a process also becomes the
    global provider (several services may share a process in tests and benchmarks, and
    each still reports under its own name)."""
    # Parent-based: a message or request continues its trace's decision, so a trace is
    # either whole or absent, never half-recorded across services.
    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    if span_store is not None:
        provider.add_span_processor(
            BatchSpanProcessor(SpanStoreExporter(span_store, service), schedule_delay_millis=500)
        )
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    ):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(provider)
    return provider


def span_error(span: Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(StatusCode.ERROR, str(exc))


__all__ = [
    "H_TRACEPARENT",
    "H_TRACESTATE",
    "SpanStore",
    "consume_span",
    "context_from_headers",
    "current_trace_headers",
    "producer_span",
    "setup_tracing",
    "trace_id_hex",
    "tracer",
]
