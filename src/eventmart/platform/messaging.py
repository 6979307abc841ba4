"""Writing messages and the unit of work a handler or an API call runs in.

`MessageWriter` turns a contract message into a record: envelope from the current context
(correlation, causation, trace), body serialized once to Avro. `UnitOfWork` is one local
transaction on a service's database: state changes, event-store appends, outbox rows and
timers commit together, or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from opentelemetry.trace import Tracer
from sqlalchemy import Connection

from eventmart.platform import context
from eventmart.platform.avro import AvroCodec
from eventmart.platform.messages import (
    Envelope,
    Message,
    OutgoingRecord,
    new_id,
    now_ms,
)
from eventmart.platform.store import ServiceStore
from eventmart.platform.tracing import current_trace_headers, producer_span
from eventmart.platform.tracing import tracer as default_tracer

M = TypeVar("M", bound=Message)


class MessageWriter:
    """Builds outgoing records; the service name is the CloudEvents `source`."""

    def __init__(self, codec: AvroCodec, source: str, tracer: Tracer | None = None) -> None:
        self.codec = codec
        self.source = source
        self.tracer = tracer or default_tracer()

    def record(
        self, message: Message, *, key: str | None = None, topic: str | None = None
    ) -> OutgoingRecord:
        cls = type(message)
        key = key if key is not None else message.key()
        topic = topic or cls.topic
        message_id = new_id()
        with producer_span(
            self.tracer,
            topic,
            cls.type_name(),
            {"messaging.message.id": message_id, "eventmart.key": key},
        ):
            trace_headers = current_trace_headers()
        envelope = Envelope(
            message_id=message_id,
            type=cls.type_name(),
            key=key,
            source=self.source,
            occurred_at_ms=now_ms(),
            correlation_id=context.correlation_id() or message_id,
            causation_id=context.causation_id(),
            traceparent=trace_headers.get("traceparent"),
            tracestate=trace_headers.get("tracestate"),
        )
        return OutgoingRecord(topic, key, self.codec.encode(message), envelope.to_headers())


class UnitOfWork:
    """One transaction on the service's database, with message publication folded in."""

    def __init__(self, store: ServiceStore, writer: MessageWriter, conn: Connection) -> None:
        self.store = store
        self.writer = writer
        self.conn = conn
        self._records: list[OutgoingRecord | None] = []
        self._latest: dict[tuple[str, str], int] = {}
        # What collaborators keep for the length of this unit (a view store's pending
        # views, say), by a key of their own; and what they write at flush, before the
        # outbox rows.
        self.state: dict[object, Any] = {}
        self._before_flush: list[Callable[[], None]] = []

    def publish(self, message: Message, *, key: str | None = None) -> None:
        """Emit `message` when (and only if) this unit of work commits."""
        self._records.append(self.writer.record(message, key=key))

    def publish_latest(self, message: Message, *, key: str | None = None) -> None:
        """`publish` for a state-transfer event, where a later message of the same type
        and key supersedes an earlier one (a product's stock level): of those published
        in this unit of work only the last is emitted, in its place among the others.
        A consumer's batch is one unit of work, so a busy product announces its level
        once per batch instead of once per change."""
        record = self.writer.record(message, key=key)
        slot = (message.type_name(), record.key)
        earlier = self._latest.get(slot)
        if earlier is not None:
            self._records[earlier] = None
        self._latest[slot] = len(self._records)
        self._records.append(record)

    def schedule(self, timer_id: str, delay_s: float, message: Message) -> None:
        """Emit `message` after `delay_s`, durably; `cancel_timer(timer_id)` withdraws it."""
        due = now_ms() + int(delay_s * 1000)
        self.store.timers.schedule(self.conn, timer_id, due, self.writer.record(message))

    def cancel_timer(self, timer_id: str) -> None:
        self.store.timers.cancel(self.conn, timer_id)

    @property
    def pending(self) -> list[OutgoingRecord]:
        return [r for r in self._records if r is not None]

    def before_flush(self, write: Callable[[], None]) -> None:
        """Call `write` when this unit flushes (just before it commits), ahead of its
        messages: for writes gathered over the unit and made once."""
        self._before_flush.append(write)

    def flush(self) -> None:
        for write in self._before_flush:
            write()
        self._before_flush.clear()
        self.store.outbox.add(self.conn, self.pending)
        self._records.clear()
        self._latest.clear()


@contextmanager
def unit_of_work(store: ServiceStore, writer: MessageWriter) -> Iterator[UnitOfWork]:
    """Run a block in one transaction; its messages go to the outbox in the same commit."""
    with store.db.transaction() as conn:
        uow = UnitOfWork(store, writer, conn)
        yield uow
        uow.flush()
    store.outbox.wake.set()


Handler = Callable[[Any, Envelope, UnitOfWork], None]


@dataclass(frozen=True, slots=True)
class _Registration(Generic[M]):
    message_type: type[M]
    handler: Callable[[M, Envelope, UnitOfWork], None]


class Handlers:
    """The handlers of one consumer group, by message type (registered in one place)."""

    def __init__(self) -> None:
        self._by_type: dict[str, _Registration[Any]] = {}

    def on(
        self, message_type: type[M]
    ) -> Callable[
        [Callable[[M, Envelope, UnitOfWork], None]], Callable[[M, Envelope, UnitOfWork], None]
    ]:
        def register(
            fn: Callable[[M, Envelope, UnitOfWork], None],
        ) -> Callable[[M, Envelope, UnitOfWork], None]:
            self.add(message_type, fn)
            return fn

        return register

    def add(self, message_type: type[M], fn: Callable[[M, Envelope, UnitOfWork], None]) -> None:
        name = message_type.type_name()
        if name in self._by_type:
            raise ValueError(f"{name} already has a handler in this group")
        self._by_type[name] = _Registration(message_type, fn)

    def handles(self, type_name: str) -> bool:
        return type_name in self._by_type

    def handler(self, type_name: str) -> Handler:
        return self._by_type[type_name].handler

    def message_types(self) -> list[type[Message]]:
        return [r.message_type for r in self._by_type.values()]

    def topics(self) -> list[str]:
        return sorted({r.message_type.topic for r in self._by_type.values()})


def retry_topic(group: str) -> str:
    """Where redriven dead letters go: read only by the group that dead-lettered them."""
    return f"retry.{group}"


def dead_letter_topic(group: str) -> str:
    return f"dlq.{group}"
