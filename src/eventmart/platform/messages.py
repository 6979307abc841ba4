"""Messages: the contract base classes and the envelope every message travels in.

A message body is a frozen msgspec Struct whose Avro schema is derived from its fields
(see `avro.py`). On the bus a message is a record whose key is the aggregate id, whose
value is the Avro body in the Confluent wire format, and whose headers follow the
CloudEvents Kafka binding (`ce_id`, `ce_type`, `ce_time`, ...) plus W3C trace context.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import msgspec


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every published message. Subclasses set `namespace`, `topic` and `key_field`;
    a base class of several messages sets `abstract = True`."""

    @classmethod
    def is_concrete(cls) -> bool:
        return not vars(cls).get("abstract", False) and bool(cls.topic)

    namespace: ClassVar[str] = "eventmart"
    abstract: ClassVar[bool] = True  # set on a base class only; concrete messages leave it
    topic: ClassVar[str] = ""
    key_field: ClassVar[str] = ""

    @classmethod
    def type_name(cls) -> str:
        """The message type: the Avro record's full name, also its registry subject."""
        return f"{cls.namespace}.{cls.__name__}"

    def key(self) -> str:
        """The partitioning key: the id of the aggregate this message is about."""
        if not self.key_field:
            raise TypeError(f"{type(self).__name__} names no key_field")
        return str(getattr(self, self.key_field))


class Event(Message, frozen=True, kw_only=True):
    """Something that happened (past tense: `OrderPlaced`)."""


class Command(Message, frozen=True, kw_only=True):
    """Something a service is asked to do (imperative: `ReserveStock`)."""


def new_id() -> str:
    """A unique, time-ordered id (UUIDv7) for messages and aggregates."""
    return str(uuid7())


def uuid7() -> uuid.UUID:
    # The standard library gains uuid7 only in Python 3.14.
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(uuid.uuid4().bytes[6:], "big") & ((1 << 74) - 1)
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 62) << 64  # 12 bits rand_a
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# Kafka allows a header without a value (null); eventmart never writes one, but reads
# what other clients wrote as it is, and treats a null value as empty where it decodes.
Headers = tuple[tuple[str, bytes | None], ...]


class TopicPartition(NamedTuple):
    """A partition of a topic. A named tuple rather than a frozen dataclass: consumers
    build and hash them per record and per commit, and a tuple hashes in C."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    """What a producer sends: value bytes are already serialized, once."""

    topic: str
    key: str
    value: bytes
    headers: Headers = ()


class Record(NamedTuple):
    """A record read back from the log, with its position.

    Immutable like the other messages, but a named tuple: a consumer builds one per
    message it reads; a named tuple is made in one step, where a frozen dataclass's
    __init__ sets each field through object.__setattr__ (0.7 µs more per record on the
    Kafka consume path, measured against bench/kafka_bus.py's messages)."""

    topic: str
    partition: int
    offset: int
    key: str
    value: bytes
    headers: Headers
    timestamp_ms: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v.decode() if v is not None else ""
        return None


# CloudEvents Kafka protocol binding, binary content mode, plus correlation/causation
# extensions and the W3C trace-context headers.
H_ID = "ce_id"
H_TYPE = "ce_type"
H_SOURCE = "ce_source"
H_TIME = "ce_time"
H_SPECVERSION = "ce_specversion"
H_CORRELATION = "ce_correlationid"
H_CAUSATION = "ce_causationid"
H_TRACEPARENT = "traceparent"
H_TRACESTATE = "tracestate"
H_CONTENT_TYPE = "content-type"
CONTENT_TYPE = b"application/vnd.eventmart.avro"


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message's identity and context, independent of the transport."""

    message_id: str
    type: str
    key: str
    source: str
    occurred_at_ms: int
    correlation_id: str
    causation_id: str | None = None
    traceparent: str | None = None
    tracestate: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_headers(self) -> Headers:
        pairs: list[tuple[str, bytes]] = [
            (H_ID, self.message_id.encode()),
            (H_TYPE, self.type.encode()),
            (H_SOURCE, self.source.encode()),
            (H_SPECVERSION, b"1.0"),
            (H_TIME, str(self.occurred_at_ms).encode()),
            (H_CONTENT_TYPE, CONTENT_TYPE),
            (H_CORRELATION, self.correlation_id.encode()),
        ]
        if self.causation_id:
            pairs.append((H_CAUSATION, self.causation_id.encode()))
        if self.traceparent:
            pairs.append((H_TRACEPARENT, self.traceparent.encode()))
        if self.tracestate:
            pairs.append((H_TRACESTATE, self.tracestate.encode()))
        pairs.extend((k, v.encode()) for k, v in self.extra.items())
        return tuple(pairs)

    @classmethod
    def from_record(cls, record: Record) -> Envelope:
        """Read the envelope from a record's headers; missing ids fall back to the position."""
        h: dict[str, str] = {
            k: v.decode(errors="replace") if v is not None else "" for k, v in record.headers
        }
        message_id = h.get(H_ID) or f"{record.topic}/{record.partition}/{record.offset}"
        return cls(
            message_id=message_id,
            type=h.get(H_TYPE, ""),
            key=record.key,
            source=h.get(H_SOURCE, ""),
            occurred_at_ms=int(h.get(H_TIME) or record.timestamp_ms),
            correlation_id=h.get(H_CORRELATION) or message_id,
            causation_id=h.get(H_CAUSATION),
            traceparent=h.get(H_TRACEPARENT),
            tracestate=h.get(H_TRACESTATE),
            extra={k: v for k, v in h.items() if k not in _KNOWN_HEADERS},
        )


def to_builtins(message: Message) -> Any:
    """The message as plain dicts and lists, the shape the Avro writer takes."""
    return msgspec.to_builtins(message, builtin_types=(bytes,))


_KNOWN_HEADERS = frozenset(
    {
        H_ID,
        H_TYPE,
        H_SOURCE,
        H_TIME,
        H_SPECVERSION,
        H_CONTENT_TYPE,
        H_CORRELATION,
        H_CAUSATION,
        H_TRACEPARENT,
        H_TRACESTATE,
    }
)
