"""The distributed bus: Apache Kafka through confluent-kafka (librdkafka).

The same guarantees as the embedded log (see `eventmart.platform.bus`), kept like this:
- Partitions: librdkafka's `consistent` partitioner is CRC32 of the key modulo the
  partition count, which is `partition_for`; tests/contract/test_kafka_specific.py checks
  that they agree.
- Producing: idempotent (`enable.idempotence`, `acks=all`), so retries neither duplicate
  nor reorder a partition's records; `send` flushes and raises if any record of the batch
  was not acknowledged.
- Groups: the classic group protocol with the `cooperative-sticky` assignor, session
  timeout and heartbeat from Settings. A member tracks its assignment through the
  rebalance callbacks, which librdkafka runs inside `consume`, so `poll` hands out only
  records of partitions the member owns when it returns.
- Commits are synchronous and only for partitions the member still owns; a commit the
  group coordinator fences (the member was evicted, its generation is stale) moves nothing
  and is not an error: the new owner reads from the last committed offset. A commit put
  off by a rebalance in progress is retried at the next poll, for what the member keeps.
- `poll` returns as soon as records are there: librdkafka's `consume(n, t)` waits for n
  records or t, so it is called for what is ready, else for the first record only.
- Topics are created with `retention.ms=-1`: projections rebuild from the log.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from confluent_kafka import Consumer as _Consumer
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka import Producer as _Producer
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec  # type: ignore[attr-defined]
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from eventmart.platform.bus import (
    Bus,
    Consumer,
    OutgoingRecord,
    PartitionLag,
    Producer,
    Record,
    TopicPartition,
)
from eventmart.platform.errors import EventmartError
from eventmart.platform.settings import Settings

log = logging.getLogger(__name__)

# Consumer error events that heal by themselves (a broker restarting, metadata of a topic
# created a moment ago, a member that rejoins): logged, not raised.
_TRANSIENT = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._RESOLVE,
        KafkaError._TIMED_OUT,
        KafkaError._MAX_POLL_EXCEEDED,
        KafkaError._UNKNOWN_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    }
)

_COORDINATOR_BUSY = frozenset(
    {
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
    }
)

# Commit errors meaning "this member's claim on the partitions is gone": the offsets are
# not written, which is what the port promises for partitions the member no longer owns.
_FENCED = frozenset(
    {
        KafkaError.ILLEGAL_GENERATION,
        KafkaError.UNKNOWN_MEMBER_ID,
        KafkaError.REBALANCE_IN_PROGRESS,
        KafkaError.FENCED_INSTANCE_ID,
        KafkaError.STALE_MEMBER_EPOCH,
        KafkaError._ASSIGNMENT_LOST,
    }
)

_LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]
_EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
_READER_GROUP = "eventmart-reader"  # group-less reads need a group.id; it never commits


class KafkaBusError(EventmartError):
    """Kafka refused an operation, or did not confirm it in time; the message says which."""


class _CoordinatorBusyError(KafkaBusError):
    """The group coordinator is loading or moving: a moment later the same request works."""


def _error_of(exc: BaseException) -> KafkaError | None:
    arg = exc.args[0] if exc.args else None
    return arg if isinstance(arg, KafkaError) else None


def _retriable(error: KafkaError) -> bool:
    return bool(error.retriable()) or error.code() in _TRANSIENT


def _wait(future: Future[Any], timeout_s: float, what: str) -> Any:
    try:
        return future.result(timeout=timeout_s)
    except KafkaException as e:
        raise KafkaBusError(f"{what}: {e}") from e
    except TimeoutError as e:
        raise KafkaBusError(f"{what}: no answer from Kafka within {timeout_s:.0f}s") from e


# Record's generated constructor is a Python function around this same call; calling it
# directly saves ~100 ns per record on the consume path.
_new_record: Callable[[type[Record], tuple[Any, ...]], Record] = tuple.__new__


def _record(m: Any, topic: str, partition: int) -> Record:
    """The Record of a librdkafka message the caller read from `topic`/`partition`.

    Headers stay as librdkafka gives them (a null value stays None: see `Headers`); the
    message caches its parsed header list, which the record copies into a tuple."""
    key = m.key()
    headers = m.headers()
    return _new_record(
        Record,
        (
            topic,
            partition,
            m.offset(),
            key.decode() if key is not None else "",
            m.value() or b"",
            tuple(headers) if headers else (),
            m.timestamp()[1],
        ),
    )


class KafkaBus(Bus):
    """The bus on a Kafka cluster (`Settings.kafka_bootstrap_servers`).

    Opens nothing until first used. Producers and consumers are independent clients;
    admin and inspection share one admin client and one group-less reader.
    """

    ADMIN_TIMEOUT_S = 30.0
    FLUSH_TIMEOUT_S = 120.0
    # reset_group waits this long beyond a session timeout for a group to become empty.
    RESET_MARGIN_S = 10.0

    def __init__(self, settings: Settings) -> None:
        self.bootstrap_servers = settings.kafka_bootstrap_servers
        self.default_partitions = settings.partitions
        self.session_timeout_s = settings.session_timeout_s
        self.heartbeat_interval_s = settings.heartbeat_interval_s
        self._partitions: dict[str, int] = {}  # topics known to exist -> partition count
        self._lock = threading.Lock()
        self._admin: AdminClient | None = None
        self._reader: _Consumer | None = None
        self._reader_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------
    def client_config(self, **extra: Any) -> dict[str, Any]:
        """Configuration every client of this bus shares, plus `extra`."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "logger": logging.getLogger("eventmart.kafka"),
        }
        conf.update(extra)
        return conf

    @property
    def admin(self) -> AdminClient:
        if self._admin is None:
            with self._lock:
                if self._admin is None:
                    self._admin = AdminClient(
                        self.client_config(**{"client.id": "eventmart-admin"})
                    )
        return self._admin

    def partition_count(self, topic: str) -> int:
        """The topic's partition count, creating the topic on first use (default count),
        as the embedded log does."""
        count = self._partitions.get(topic)
        if count is None:
            self.ensure_topic(topic)
            count = self._partitions[topic]
        return count

    def _metadata_partitions(self, topic: str) -> int | None:
        """Partitions of `topic` once the cluster's metadata lists it with every partition
        led, else None."""
        md = self.admin.list_topics(topic=topic, timeout=self.ADMIN_TIMEOUT_S)
        found = md.topics.get(topic)
        if found is None or found.error is not None or not found.partitions:
            return None
        if any(p.leader < 0 for p in found.partitions.values()):
            return None
        return len(found.partitions)

    # -- Bus: topics ----------------------------------------------------------------
    def ensure_topic(self, name: str, partitions: int | None = None) -> None:
        if name in self._partitions:
            return
        count = partitions or self.default_partitions
        # One replica per partition unless the cluster says more (default.replication.factor).
        topic = NewTopic(name, count, replication_factor=-1, config={"retention.ms": "-1"})
        future = self.admin.create_topics([topic], request_timeout=self.ADMIN_TIMEOUT_S)[name]
        try:
            future.result(timeout=self.ADMIN_TIMEOUT_S)
        except KafkaException as e:
            error = _error_of(e)
            if error is None or error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaBusError(f"cannot create topic {name!r}: {e}") from e
        deadline = time.monotonic() + self.ADMIN_TIMEOUT_S
        while True:
            found = self._metadata_partitions(name)
            if found is not None:
                self._partitions[name] = found
                return
            if time.monotonic() >= deadline:
                raise KafkaBusError(
                    f"topic {name!r} was created but the cluster's metadata does not list it "
                    f"with a leader for every partition after {self.ADMIN_TIMEOUT_S:.0f}s"
                )
            time.sleep(0.05)

    def topics(self) -> dict[str, int]:
        md = self.admin.list_topics(timeout=self.ADMIN_TIMEOUT_S)
        out = {
            name: len(t.partitions)
            for name, t in md.topics.items()
            if t.error is None and not name.startswith("__")  # Kafka's internal topics
        }
        self._partitions.update(out)
        return out

    # -- Bus: clients ---------------------------------------------------------------
    def producer(self) -> Producer:
        return KafkaProducer(self)

    def consumer(self, group: str, topics: Sequence[str], member_id: str | None = None) -> Consumer:
        for t in topics:
            self.ensure_topic(t)
        return KafkaConsumer(self, group, list(topics), member_id)

    # -- Bus: inspection ------------------------------------------------------------
    def _offsets(
        self, partitions: Iterable[KafkaPartition], spec: OffsetSpec
    ) -> dict[tuple[str, int], int]:
        request = {tp: spec for tp in partitions}
        if not request:
            return {}
        out: dict[tuple[str, int], int] = {}
        deadline = time.monotonic() + self.ADMIN_TIMEOUT_S
        while request:
            futures = self.admin.list_offsets(request, request_timeout=self.ADMIN_TIMEOUT_S)
            retry: dict[KafkaPartition, OffsetSpec] = {}
            for tp, future in futures.items():
                try:
                    out[(tp.topic, tp.partition)] = int(future.result().offset)
                except KafkaException as e:
                    # A partition whose leadership is still settling (a topic created a
                    # moment ago, a broker restarting) answers with a retriable error.
                    error = _error_of(e)
                    if error is None or not _retriable(error) or time.monotonic() > deadline:
                        raise KafkaBusError(f"offsets of {tp.topic}/{tp.partition}: {e}") from e
                    retry[tp] = spec
            request = retry
            if request:
                time.sleep(0.05)
        return out

    def end_offsets(self, topic: str) -> dict[int, int]:
        count = self.partition_count(topic)
        ends = self._offsets((KafkaPartition(topic, p) for p in range(count)), _LATEST)
        return {p: ends[(topic, p)] for p in range(count)}

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        self.partition_count(topic)
        if limit <= 0:
            return []
        with self._reader_lock:
            if self._reader is None:
                self._reader = _Consumer(
                    self.client_config(
                        **{
                            "group.id": _READER_GROUP,
                            "client.id": "eventmart-reader",
                            "enable.auto.commit": False,
                            "enable.auto.offset.store": False,
                            "enable.partition.eof": False,
                            # A fetch in flight delays the next assign by up to this long.
                            "fetch.wait.max.ms": 10,
                        }
                    )
                )
            reader = self._reader
            high = self._offsets([KafkaPartition(topic, partition)], _LATEST)[(topic, partition)]
            stop = min(high, offset + limit)
            if offset >= stop:
                return []
            reader.assign([KafkaPartition(topic, partition, offset)])
            out: list[Record] = []
            deadline = time.monotonic() + self.ADMIN_TIMEOUT_S
            try:
                next_offset = offset
                while next_offset < stop:
                    if time.monotonic() >= deadline:
                        raise KafkaBusError(
                            f"reading {topic}/{partition} from {offset}: stuck at {next_offset} "
                            f"below the end {stop} for {self.ADMIN_TIMEOUT_S:.0f}s"
                        )
                    for m in reader.consume(stop - next_offset, 0.1):
                        err = m.error()
                        if err is not None:
                            if err.code() in _TRANSIENT or err.code() == KafkaError._PARTITION_EOF:
                                continue
                            raise KafkaBusError(f"reading {topic}/{partition}: {err}")
                        if m.topic() != topic or m.partition() != partition:
                            continue
                        position = m.offset()
                        if position is None or position < next_offset or position >= stop:
                            continue
                        out.append(_record(m, topic, partition))
                        next_offset = position + 1
            finally:
                reader.unassign()
        return out

    def groups(self) -> list[str]:
        result = _wait(
            self.admin.list_consumer_groups(request_timeout=self.ADMIN_TIMEOUT_S),
            self.ADMIN_TIMEOUT_S,
            "listing consumer groups",
        )
        return sorted(g.group_id for g in result.valid)

    def lag(self, group: str | None = None) -> list[PartitionLag]:
        # A fresh broker answers "coordinator loading" for a moment: ask again, briefly.
        for attempt in Retrying(
            retry=retry_if_exception_type(_CoordinatorBusyError),
            stop=stop_after_attempt(6),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            reraise=True,
        ):
            with attempt:
                return self._lag_once(group)
        raise AssertionError("unreachable")  # pragma: no cover

    def _group_answer(self, future: Any, what: str) -> Any:
        """An admin answer about one group; None if the group does not exist (any more)."""
        try:
            return future.result(timeout=self.ADMIN_TIMEOUT_S)
        except KafkaException as e:
            error = _error_of(e)
            code = error.code() if error is not None else None
            if code == KafkaError.GROUP_ID_NOT_FOUND:
                return None
            if code in _COORDINATOR_BUSY:
                raise _CoordinatorBusyError(f"{what}: {e}") from e
            raise KafkaBusError(f"{what}: {e}") from e

    def _lag_once(self, group: str | None) -> list[PartitionLag]:
        names = [group] if group is not None else self.groups()
        if not names:
            return []
        # Every group's committed offsets and members, asked for all at once.
        offset_futures = {
            g: self.admin.list_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(g)], request_timeout=self.ADMIN_TIMEOUT_S
            )[g]
            for g in names
        }
        described = self.admin.describe_consumer_groups(names, request_timeout=self.ADMIN_TIMEOUT_S)
        committed: dict[tuple[str, str, int], int] = {}
        for g, future in offset_futures.items():
            result = self._group_answer(future, f"committed offsets of group {g!r}")
            if result is None:
                continue
            for tp in result.topic_partitions or ():
                if tp.offset >= 0:
                    committed[(g, tp.topic, tp.partition)] = int(tp.offset)
                else:
                    committed.setdefault((g, tp.topic, tp.partition), 0)
        owners: dict[tuple[str, str, int], str] = {}
        for g, future in described.items():
            description = self._group_answer(future, f"members of group {g!r}")
            if description is None:
                continue
            for member in description.members or ():
                assignment = member.assignment.topic_partitions if member.assignment else []
                for tp in assignment or ():
                    # client.id is the port's member id (see KafkaConsumer).
                    owners[(g, tp.topic, tp.partition)] = member.client_id or member.member_id
        pairs = {(g, t) for g, t, _ in committed} | {(g, t) for g, t, _ in owners}
        counts = self.topics()
        topics_seen = sorted({t for _, t in pairs if t in counts})
        ends = self._offsets(
            (KafkaPartition(t, p) for t in topics_seen for p in range(counts[t])),
            _LATEST,
        )
        out: list[PartitionLag] = []
        for g, t in sorted(pairs):
            if t not in counts:
                continue  # a topic deleted since the group committed to it
            for p in range(counts[t]):
                out.append(
                    PartitionLag(
                        group=g,
                        topic=t,
                        partition=p,
                        committed=committed.get((g, t, p), 0),
                        end_offset=ends[(t, p)],
                        owner=owners.get((g, t, p)),
                    )
                )
        return out

    def reset_group(self, group: str, topics: Sequence[str]) -> None:
        """Move the group's offsets to the start of `topics`.

        Kafka alters a group's offsets only while the group has no live member: stop its
        consumers first. A member that died rather than left counts as live until its
        session times out, so this waits up to that long (plus a margin) before it
        gives up with KafkaBusError.
        """
        partitions = [KafkaPartition(t, p) for t in topics for p in range(self.partition_count(t))]
        if not partitions:
            return
        starts = self._offsets(partitions, _EARLIEST)
        request = ConsumerGroupTopicPartitions(
            group, [KafkaPartition(t, p, starts[(t, p)]) for t, p in sorted(starts)]
        )
        # The broker answers a group that still has members with UNKNOWN_MEMBER_ID.
        busy = (KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS)
        deadline = time.monotonic() + self.session_timeout_s + self.RESET_MARGIN_S
        while True:
            future = self.admin.alter_consumer_group_offsets(
                [request], request_timeout=self.ADMIN_TIMEOUT_S
            )[group]
            error: KafkaError | None
            try:
                result = future.result(timeout=self.ADMIN_TIMEOUT_S)
                errors = [tp.error for tp in result.topic_partitions or () if tp.error]
                error = errors[0] if errors else None
            except KafkaException as e:
                error = _error_of(e)
                if error is None:
                    raise KafkaBusError(f"cannot reset group {group!r}: {e}") from e
            if error is None:
                return
            if error.code() not in busy:
                raise KafkaBusError(f"cannot reset group {group!r}: {error}")
            if time.monotonic() >= deadline:
                raise KafkaBusError(
                    f"cannot reset group {group!r}: it still has live members; stop its "
                    f"consumers first ({error})"
                )
            time.sleep(0.2)

    def close(self) -> None:
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None


class KafkaProducer(Producer):
    """An idempotent producer; `send` returns once Kafka acknowledged every record."""

    def __init__(self, bus: KafkaBus) -> None:
        self._bus = bus
        self._fatal: KafkaError | None = None
        self._producer = self._create()

    @property
    def config(self) -> dict[str, Any]:
        """The librdkafka configuration of this producer."""
        return self._bus.client_config(
            **{
                "client.id": f"eventmart-producer-{os.getpid()}",
                "enable.idempotence": True,
                "acks": "all",
                # CRC32(key) % partitions, like `partition_for`.
                "partitioner": "consistent",
                "linger.ms": 5,
                # `send` needs to hear of failures only: flush() already waits for every
                # record, and a report per success costs a Python call per record.
                "delivery.report.only.error": True,
                "error_cb": self._on_error,
            }
        )

    def _create(self) -> _Producer:
        return _Producer(self.config)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._fatal = error
        log.warning("kafka producer: %s", error)

    def send(self, records: Sequence[OutgoingRecord]) -> None:
        if not records:
            return
        if self._fatal is not None:
            # An idempotent producer that hit a fatal error refuses all further work.
            log.warning("replacing the producer after a fatal error: %s", self._fatal)
            self._fatal = None
            self._producer.flush(0)
            self._producer = self._create()
        for topic in {r.topic for r in records}:
            self._bus.partition_count(topic)  # created with our settings, not auto-created
        failures: list[KafkaError] = []

        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                failures.append(error)

        producer = self._producer
        produce = producer.produce
        for r in records:
            headers: list[tuple[str, str | bytes | None]] | None = (
                list(r.headers) if r.headers else None
            )
            while True:
                try:
                    produce(
                        r.topic, r.value, r.key.encode(), headers=headers, on_delivery=delivered
                    )
                    break
                except BufferError:
                    producer.poll(0.05)  # the local queue is full: let deliveries drain
                except KafkaException as e:
                    raise KafkaBusError(f"cannot produce to {r.topic!r}: {e}") from e
        remaining = producer.flush(KafkaBus.FLUSH_TIMEOUT_S)
        if remaining:
            raise KafkaBusError(
                f"{remaining} records were not acknowledged within {KafkaBus.FLUSH_TIMEOUT_S:.0f}s"
            )
        if failures:
            raise KafkaBusError(
                f"{len(failures)} of {len(records)} records were not written: {failures[0]}"
            )

    def close(self) -> None:
        self._producer.flush(KafkaBus.FLUSH_TIMEOUT_S)


class KafkaConsumer(Consumer):
    """One member of a Kafka consumer group (see the module docstring).

    `member_id` is the client id Kafka shows for the member (`lag()` reports it as the
    owner); Kafka's own member id is assigned by the broker at each join.
    """

    def __init__(self, bus: KafkaBus, group: str, topics: list[str], member_id: str | None) -> None:
        self._bus = bus
        self.group = group
        self.topics = sorted(set(topics))
        self.member_id = member_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._lock = threading.RLock()
        self._assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        # First offset of a paused partition dropped by poll: where to go on at resume.
        self._rewind: dict[TopicPartition, int] = {}
        # Seeks librdkafka refused because the partition was not fetching yet.
        self._pending_seeks: dict[TopicPartition, int] = {}
        # Commits the coordinator put off during a rebalance: retried at the next poll for
        # the partitions this member still owns by then.
        self._deferred: dict[TopicPartition, int] = {}
        self._closed = False
        self.config: dict[str, Any] = bus.client_config(
            **{
                "group.id": group,
                "client.id": self.member_id,
                "partition.assignment.strategy": "cooperative-sticky",
                "session.timeout.ms": int(bus.session_timeout_s * 1000),
                "heartbeat.interval.ms": int(bus.heartbeat_interval_s * 1000),
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "enable.partition.eof": False,
                # The broker holds an empty fetch this long; a seek, resume or new
                # assignment waits for it (librdkafka has one fetch in flight per broker).
                "fetch.wait.max.ms": 100,
                "error_cb": self._on_error,
            }
        )
        self._consumer = _Consumer(self.config)
        self._consumer.subscribe(
            self.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )

    # -- rebalance callbacks (run by librdkafka inside consume/close) ---------------
    def _on_assign(self, _consumer: Any, partitions: list[KafkaPartition]) -> None:
        with self._lock:
            for p in partitions:
                tp = TopicPartition(p.topic, p.partition)
                self._assigned.add(tp)
                self._forget(tp)

    def _on_revoke(self, _consumer: Any, partitions: list[KafkaPartition]) -> None:
        with self._lock:
            for p in partitions:
                tp = TopicPartition(p.topic, p.partition)
                self._assigned.discard(tp)
                self._forget(tp)

    def _on_lost(self, consumer: Any, partitions: list[KafkaPartition]) -> None:
        log.warning(
            "%s lost %d partitions of group %s (session expired)",
            self.member_id,
            len(partitions),
            self.group,
        )
        self._on_revoke(consumer, partitions)

    def _forget(self, tp: TopicPartition) -> None:
        self._paused.discard(tp)
        self._rewind.pop(tp, None)
        self._pending_seeks.pop(tp, None)
        self._deferred.pop(tp, None)

    def _on_error(self, error: KafkaError) -> None:
        log.warning("kafka consumer %s in %s: %s", self.member_id, self.group, error)

    # -- Consumer -------------------------------------------------------------------
    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._closed:
            return []
        self._apply_pending_seeks()
        if self._deferred:
            with self._lock:
                deferred, self._deferred = self._deferred, {}
            self.commit(deferred)
        consume = self._consumer.consume
        messages = consume(max_records, 0)
        if not messages and timeout_s > 0:
            # consume(n, t) waits for n messages or t; wait for the first one only.
            messages = consume(1, timeout_s)
            if messages and max_records > 1:
                messages.extend(consume(max_records - 1, 0))
        return self._records(messages)

    def _records(self, messages: list[Any]) -> list[Record]:
        out: list[Record] = []
        append, new_record = out.append, _new_record
        failure: KafkaError | None = None
        with self._lock:
            # The hot path: per message only librdkafka's accessors and the Record. A batch
            # comes in runs of one partition, so the partition check is made per run.
            deliver = {
                tp
                for tp in self._assigned
                if tp not in self._paused and tp not in self._pending_seeks
            }
            topic, partition, wanted = "", -1, False
            for m in messages:
                error = m.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    if error.fatal() or error.code() not in _TRANSIENT:
                        failure = failure or error
                    else:
                        log.info("%s in %s: %s", self.member_id, self.group, error)
                    continue
                p = m.partition()
                if p != partition or m.topic() != topic:
                    topic, partition = m.topic(), p
                    wanted = (topic, partition) in deliver
                if not wanted:
                    # Revoked during this poll, paused, or about to be re-read from a seek.
                    tp = TopicPartition(topic, partition)
                    if tp in self._paused and tp not in self._pending_seeks:
                        self._rewind.setdefault(tp, m.offset())
                    continue
                # What _record does, inlined: a call per record is ~5% of this loop.
                key = m.key()
                headers = m.headers()
                append(
                    new_record(
                        Record,
                        (
                            topic,
                            p,
                            m.offset(),
                            key.decode() if key is not None else "",
                            m.value() or b"",
                            tuple(headers) if headers else (),
                            m.timestamp()[1],
                        ),
                    )
                )
            if failure is not None:
                # Nothing of this batch reaches the caller: read it again next time.
                firsts: dict[TopicPartition, int] = {}
                for r in out:
                    firsts.setdefault(r.tp, r.offset)
                for tp, offset in firsts.items():
                    self._seek(tp, offset)
                raise KafkaBusError(_describe_failure(failure, self._bus))
        return out

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        with self._lock:
            for superseded in offsets:
                self._deferred.pop(superseded, None)  # this commit is newer
            owned = [
                KafkaPartition(tp.topic, tp.partition, offset)
                for tp, offset in offsets.items()
                if tp in self._assigned
            ]
        if not owned or self._closed:
            return
        try:
            result = self._consumer.commit(offsets=owned, asynchronous=False)
        except KafkaException as e:
            error = _error_of(e)
            if error is None or error.code() not in _FENCED:
                raise KafkaBusError(f"commit in group {self.group!r}: {e}") from e
            self._fenced(owned, error)
            return
        others: list[KafkaPartition] = []
        for tp in result or ():
            if tp.error is not None:
                if tp.error.code() in _FENCED:
                    self._fenced([tp], tp.error)
                else:
                    others.append(tp)
        if others:
            raise KafkaBusError(f"commit in group {self.group!r} failed: {others}")

    def _fenced(self, partitions: list[KafkaPartition], error: KafkaError) -> None:
        """The coordinator refused a commit because of this member's group membership."""
        if error.code() == KafkaError.REBALANCE_IN_PROGRESS:
            # Still a member: the commit is retried after the rebalance, for what it keeps.
            with self._lock:
                for p in partitions:
                    self._deferred[TopicPartition(p.topic, p.partition)] = p.offset
            return
        # Evicted (stale generation, unknown member): the offsets must not move; the
        # partitions' next owner reads again from the last committed offset.
        log.warning(
            "%s in %s: commit refused (%s); not retried",
            self.member_id,
            self.group,
            error,
        )

    def assignment(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._assigned)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            chosen = [tp for tp in partitions if tp in self._assigned and tp not in self._paused]
            if chosen:
                self._consumer.pause([KafkaPartition(tp.topic, tp.partition) for tp in chosen])
                self._paused.update(chosen)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        with self._lock:
            chosen = [tp for tp in partitions if tp in self._paused]
            if not chosen:
                return
            self._consumer.resume([KafkaPartition(tp.topic, tp.partition) for tp in chosen])
            self._paused.difference_update(chosen)
            for tp in chosen:
                offset = self._rewind.pop(tp, None)
                if offset is not None:
                    self._seek(tp, offset)

    def paused(self) -> set[TopicPartition]:
        with self._lock:
            return set(self._paused)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        with self._lock:
            if partition in self._assigned:
                self._rewind.pop(partition, None)
                self._seek(partition, offset)

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        try:
            self._consumer.seek(KafkaPartition(tp.topic, tp.partition, offset))
            self._pending_seeks.pop(tp, None)
        except KafkaException:
            # Not fetching yet (just assigned): try again before the next fetch is used.
            self._pending_seeks[tp] = offset

    def _apply_pending_seeks(self) -> None:
        with self._lock:
            for tp, offset in list(self._pending_seeks.items()):
                if tp in self._assigned:
                    self._seek(tp, offset)
                else:
                    del self._pending_seeks[tp]

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._consumer.close()  # leaves the group: the others rebalance at once
        finally:
            with self._lock:
                self._assigned.clear()
                self._paused.clear()


def _describe_failure(error: KafkaError, bus: KafkaBus) -> str:
    if error.code() == KafkaError.INVALID_SESSION_TIMEOUT:
        return (
            f"Kafka refused session.timeout.ms={int(bus.session_timeout_s * 1000)} "
            "(outside the broker's group.min.session.timeout.ms .. "
            "group.max.session.timeout.ms); change EVENTMART_SESSION_TIMEOUT_S or the "
            f"broker's limits: {error}"
        )
    return f"kafka consumer error: {error}"


__all__ = ["KafkaBus", "KafkaBusError", "KafkaConsumer", "KafkaProducer"]
