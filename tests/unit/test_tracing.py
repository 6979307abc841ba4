"""One trace follows a message across a bus hop; correlation ids follow it too."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from eventmart.platform.consumer import ConsumerRunner
from eventmart.platform.infra import Platform
from eventmart.platform.messages import Envelope
from eventmart.platform.messaging import Handlers, MessageWriter, UnitOfWork, unit_of_work
from eventmart.platform.store import ServiceStore
from eventmart.platform.store.outbox import OutboxRelay
from eventmart.platform.tracing import SpanStore, SpanStoreExporter
from tests.unit.sample_messages import DoThing


def test_consumer_span_continues_the_producer_trace(
    platform: Platform, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    store = ServiceStore(platform.database("svc"))
    store.create()
    writer = MessageWriter(platform.codec, "svc", tracer)
    handlers = Handlers()
    seen: list[str] = []

    @handlers.on(DoThing)
    def handle(_msg: DoThing, env: Envelope, _uow: UnitOfWork) -> None:
        seen.append(env.traceparent or "")

    with (
        tracer.start_as_current_span("checkout request") as root,
        unit_of_work(store, writer) as uow,
    ):
        uow.publish(DoThing(thing_id="t", amount=1))
    OutboxRelay(store.db, store.outbox, platform.bus.producer()).relay_once()
    runner = ConsumerRunner(
        bus=platform.bus,
        group="svc",
        handlers=handlers,
        store=store,
        writer=writer,
        poll_timeout_s=0.05,
    )
    for _ in range(200):
        if seen:
            break
        runner.step()
    assert seen, "the consumer never handled the message"
    trace_id = root.get_span_context().trace_id
    finished = exporter.get_finished_spans()
    consumer = next(s for s in finished if s.kind is SpanKind.CONSUMER)
    producer = next(s for s in finished if s.kind is SpanKind.PRODUCER)
    assert consumer.context is not None and producer.context is not None
    assert consumer.context.trace_id == trace_id
    assert producer.context.trace_id == trace_id
    assert consumer.parent is not None and consumer.parent.span_id == producer.context.span_id
    assert consumer.attributes is not None
    assert consumer.attributes["messaging.consumer.group.name"] == "svc"
    assert seen[0].split("-")[1] == format(trace_id, "032x")

    # The local span store keeps them queryable by trace id (the ops console's view).
    store_spans = SpanStore(platform.database("traces"))
    SpanStoreExporter(store_spans, "svc").export(finished)
    names = [s["name"] for s in store_spans.trace(format(trace_id, "032x"))]
    assert names[0] == "checkout request"
    assert "test.commands process" in names and "test.commands publish" in names
