"""The consumer runtime: poll a batch, handle it in one transaction with its inbox rows,
then commit offsets.

What happens to a message:
- its type has no handler in this group: acknowledged and skipped (a topic carries
  several types; a group cares about some). A type no contract defines: dead-lettered;
- it does not decode (bad body, unknown schema id) or its handler raises a
  PoisonMessageError: dead-lettered at once, with the reason, and the consumer goes on;
- its handler raises anything else: the batch rolls back and is handled message by
  message, so one bad message does not hold up the others; the failing one is retried
  with exponential backoff and dead-lettered after `retry_max_attempts`;
- its handler raises RetryLaterError (a dependency is down): the partition is paused and
  rewound to that message, and resumed after the delay — order kept, nothing lost,
  nothing dead-lettered.
A message already in the inbox (a redelivery) has no effect.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from eventmart.platform import metrics
from eventmart.platform.avro import AvroCodec
from eventmart.platform.bus import Bus, Consumer, OutgoingRecord, Producer, Record, TopicPartition
from eventmart.platform.context import caused_by
from eventmart.platform.errors import (
    PoisonMessageError,
    RetryLaterError,
    UnknownMessageTypeError,
)
from eventmart.platform.messages import Envelope, Message, now_ms
from eventmart.platform.messaging import (
    Handlers,
    MessageWriter,
    UnitOfWork,
    dead_letter_topic,
    retry_topic,
)
from eventmart.platform.store import ServiceStore
from eventmart.platform.tracing import consume_span, span_error

log = logging.getLogger(__name__)

# Headers a dead letter carries besides the original ones.
DLQ_REASON = "dlq_reason"
DLQ_ERROR = "dlq_error_type"
DLQ_TOPIC = "dlq_original_topic"
DLQ_PARTITION = "dlq_original_partition"
DLQ_OFFSET = "dlq_original_offset"
DLQ_GROUP = "dlq_group"
DLQ_ATTEMPTS = "dlq_attempts"
DLQ_FAILED_AT = "dlq_failed_at"
DLQ_HEADERS = frozenset(
    {
        DLQ_REASON,
        DLQ_ERROR,
        DLQ_TOPIC,
        DLQ_PARTITION,
        DLQ_OFFSET,
        DLQ_GROUP,
        DLQ_ATTEMPTS,
        DLQ_FAILED_AT,
    }
)


@dataclass
class RetryPolicy:
    max_attempts: int = 5
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0

    def backoff(self, attempt: int) -> float:
        return float(min(self.max_backoff_s, self.initial_backoff_s * (2 ** (attempt - 1))))


@dataclass
class _Item:
    record: Record
    envelope: Envelope
    message: Message | None = None


@dataclass
class BatchOutcome:
    handled: int = 0
    duplicates: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    paused: list[TopicPartition] = field(default_factory=list)


class ConsumerRunner:
    """Runs one consumer group member for one service (see the module docstring)."""

    def __init__(
        self,
        *,
        bus: Bus,
        group: str,
        handlers: Handlers,
        store: ServiceStore,
        writer: MessageWriter,
        topics: Sequence[str] | None = None,
        batch_size: int = 500,
        max_in_flight: int = 2000,
        poll_timeout_s: float = 0.2,
        retry: RetryPolicy | None = None,
        member_id: str | None = None,
    ) -> None:
        self.bus = bus
        self.group = group
        self.handlers = handlers
        self.store = store
        self.writer = writer
        self.codec: AvroCodec = writer.codec
        self.topics = sorted({*(topics or handlers.topics()), retry_topic(group)})
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self.poll_timeout_s = poll_timeout_s
        self.retry = retry or RetryPolicy()
        self._member_id = member_id
        self._consumer: Consumer | None = None
        self._dlq: Producer | None = None
        self._resume_at: dict[TopicPartition, float] = {}
        self._attempts: dict[tuple[TopicPartition, int], int] = {}
        self.processed = 0
        # The group's metric series, looked up once (a label lookup per batch and outcome
        # cost more than the increments); they show from the start, at zero.
        self._batch_seconds = metrics.BATCH_SECONDS.labels(group)
        self._counted = {
            outcome: metrics.MESSAGES.labels(group, outcome)
            for outcome in ("handled", "duplicate", "skipped", "retried", "dead_lettered")
        }

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            # Retry and dead-letter topics carry little; one partition keeps fetches cheap.
            self.bus.ensure_topic(retry_topic(self.group), 1)
            for t in self.topics:
                self.bus.ensure_topic(t)
            self._consumer = self.bus.consumer(self.group, self.topics, self._member_id)
        return self._consumer

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set; the batch in hand is finished and committed first."""
        try:
            while not stop.is_set():
                try:
                    self.step()
                except Exception:
                    log.exception("consumer %s failed a poll cycle; continuing", self.group)
                    stop.wait(1.0)
        finally:
            self.close()

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
        if self._dlq is not None:
            self._dlq.close()
            self._dlq = None

    # -- one cycle ------------------------------------------------------------------
    def step(self) -> BatchOutcome:
        consumer = self.consumer
        self._resume_due(consumer)
        records = consumer.poll(min(self.batch_size, self.max_in_flight), self.poll_timeout_s)
        if not records:
            return BatchOutcome()
        started = time.perf_counter()
        outcome = BatchOutcome()
        items: list[_Item] = []
        dead: list[tuple[Record, BaseException, int]] = []
        for r in records:
            env = Envelope.from_record(r)
            if not self.handlers.handles(env.type):
                if self.codec.known_type(env.type) is None:
                    dead.append(
                        (
                            r,
                            UnknownMessageTypeError(
                                f"unknown message type {env.type!r} from {env.source or '?'}"
                            ),
                            1,
                        )
                    )
                else:
                    outcome.skipped += 1
                continue
            try:
                items.append(_Item(r, env, self.codec.decode(env.type, r.value)))
            except PoisonMessageError as e:
                dead.append((r, e, 1))
        if dead:
            self._dead_letter(dead)
            outcome.dead_lettered += len(dead)
        # Offsets to commit: everything polled, unless a partition stops early below.
        commit: dict[TopicPartition, int] = {}
        for r in records:
            commit[r.tp] = r.offset + 1
        if items:
            try:
                handled, dups = self._handle_batch(items)
                outcome.handled += handled
                outcome.duplicates += dups
                if self._attempts:
                    # Messages that failed before and went through now: forget their count.
                    for item in items:
                        self._attempts.pop((item.record.tp, item.record.offset), None)
            except Exception as e:
                log.info(
                    "batch of %d in %s failed (%s); handling one by one", len(items), self.group, e
                )
                self._one_by_one(items, outcome, commit)
        consumer.commit(commit)
        self.processed += len(records)
        self._batch_seconds.observe(time.perf_counter() - started)
        for name, count in (
            ("handled", outcome.handled),
            ("duplicate", outcome.duplicates),
            ("skipped", outcome.skipped),
            ("dead_lettered", outcome.dead_lettered),
        ):
            if count:
                self._counted[name].inc(count)
        return outcome

    def _handle_batch(self, items: Sequence[_Item]) -> tuple[int, int]:
        with self.store.db.transaction() as conn:
            fresh = self.store.inbox.claim(conn, self.group, [i.envelope.message_id for i in items])
            uow = UnitOfWork(self.store, self.writer, conn)
            handled = 0
            for item in items:
                if item.envelope.message_id not in fresh:
                    continue
                fresh.discard(item.envelope.message_id)  # a duplicate within one batch
                self._invoke(item, uow)
                handled += 1
            uow.flush()
        if handled:
            self.store.outbox.wake.set()
        return handled, len(items) - handled

    def _invoke(self, item: _Item, uow: UnitOfWork) -> None:
        env = item.envelope
        attrs = {
            "messaging.message.id": env.message_id,
            "messaging.message.type": env.type,
            "messaging.kafka.partition": item.record.partition,
            "messaging.kafka.offset": item.record.offset,
            "eventmart.correlation_id": env.correlation_id,
            "eventmart.key": env.key,
            "eventmart.service": self.writer.source,
        }
        with (
            consume_span(
                self.writer.tracer, item.record.topic, self.group, item.record.headers, attrs
            ) as span,
            caused_by(env.correlation_id, env.message_id),
        ):
            try:
                self.handlers.handler(env.type)(item.message, env, uow)
            except BaseException as e:
                span_error(span, e)
                raise

    def _one_by_one(
        self, items: Sequence[_Item], outcome: BatchOutcome, commit: dict[TopicPartition, int]
    ) -> None:
        """Handle a failed batch message by message. A failing message never blocks the
        thread: its partition is rewound to it and paused for the backoff, and the other
        partitions go on; after `max_attempts` it is dead-lettered."""
        stopped: set[TopicPartition] = set()
        for item in items:
            tp = item.record.tp
            if tp in stopped:
                continue
            position = (tp, item.record.offset)
            try:
                handled, dups = self._handle_batch([item])
                outcome.handled += handled
                outcome.duplicates += dups
                self._attempts.pop(position, None)
            except RetryLaterError as e:
                # A dependency is down: wait for it without counting towards the DLQ.
                self._hold(item, e.delay_s, stopped, commit, outcome)
                log.warning(
                    "%s paused %s/%d for %.1fs: %s",
                    self.group,
                    tp.topic,
                    tp.partition,
                    e.delay_s,
                    e,
                )
            except PoisonMessageError as e:
                self._dead_letter([(item.record, e, self._attempts.pop(position, 0) + 1)])
                outcome.dead_lettered += 1
            except Exception as e:
                attempts = self._attempts.get(position, 0) + 1
                if attempts >= self.retry.max_attempts:
                    self._attempts.pop(position, None)
                    self._dead_letter([(item.record, e, attempts)])
                    outcome.dead_lettered += 1
                    continue
                self._attempts[position] = attempts
                self._counted["retried"].inc()
                self._hold(item, self.retry.backoff(attempts), stopped, commit, outcome)

    def _hold(
        self,
        item: _Item,
        delay_s: float,
        stopped: set[TopicPartition],
        commit: dict[TopicPartition, int],
        outcome: BatchOutcome,
    ) -> None:
        """Rewind the item's partition to it and pause the partition for `delay_s`:
        per-key order is kept, and nothing after it is handled first."""
        tp = item.record.tp
        stopped.add(tp)
        commit[tp] = item.record.offset
        self.consumer.seek(tp, item.record.offset)
        self.consumer.pause([tp])
        self._resume_at[tp] = time.monotonic() + delay_s
        outcome.paused.append(tp)

    def _resume_due(self, consumer: Consumer) -> None:
        if not self._resume_at:
            return
        now = time.monotonic()
        due = [tp for tp, at in self._resume_at.items() if at <= now]
        if due:
            consumer.resume(due)
            for tp in due:
                del self._resume_at[tp]

    def _dead_letter(self, failures: Sequence[tuple[Record, BaseException, int]]) -> None:
        topic = dead_letter_topic(self.group)
        if self._dlq is None:
            self.bus.ensure_topic(topic, 1)
            self._dlq = self.bus.producer()
        out = []
        for record, error, attempts in failures:
            reason = str(error) or type(error).__name__
            log.warning(
                "dead-lettering %s/%d@%d in %s: %s",
                record.topic,
                record.partition,
                record.offset,
                self.group,
                reason,
            )
            extra = (
                (DLQ_REASON, reason.encode()),
                (DLQ_ERROR, type(error).__name__.encode()),
                (DLQ_TOPIC, record.topic.encode()),
                (DLQ_PARTITION, str(record.partition).encode()),
                (DLQ_OFFSET, str(record.offset).encode()),
                (DLQ_GROUP, self.group.encode()),
                (DLQ_ATTEMPTS, str(attempts).encode()),
                (DLQ_FAILED_AT, str(now_ms()).encode()),
            )
            headers = tuple(h for h in record.headers if h[0] not in DLQ_HEADERS) + extra
            out.append(OutgoingRecord(topic, record.key, record.value, headers))
        self._dlq.send(out)
