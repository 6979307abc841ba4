"""KafkaBus against raw confluent-kafka, in one process, on the same broker and messages.

    python -m bench.kafka_bus --bootstrap 127.0.0.1:9092 -n 100000 --size 256

`run()` produces `n` records of `size` bytes (keys spread like aggregate ids, the
CloudEvents headers eventmart sends) and consumes them in consumer groups, through the
raw client and through the adapter, for `rounds` rounds. In a round each side runs twice,
in mirrored order (raw, adapter, adapter, raw; the next round starts with the adapter),
and its figure for the round is the mean of the two: the order matters on this machine
(a consumer right after a produce is slower), and mirroring cancels it. Every consumer
reads the same records (the adapter's topic, each from its own group). Rates are each
side's best round. The ratio adapter / raw is the median of the rounds' ratios (a round
runs both sides back to back, so load from elsewhere slows both alike); the floor to
keep is 0.7. Both sides use the same producer
settings (idempotent, acks=all, CRC32 partitioner, linger 5 ms) and both commit
synchronously after each consumed batch, so the ratio is the adapter's own cost: a Record
per message, the per-send flush its contract needs (`send` returns when every record is
acknowledged), assignment bookkeeping.

Two raw producer baselines are reported: flushing once at the end (the client at its
fastest) and flushing per batch of `batch` records (the same acknowledgement points as
the adapter's sends). The ratio uses the first.

Each side's CPU time in this process is reported too (µs per message, and `cpu_ratio`,
raw CPU / adapter CPU): on a busy machine, where the wall clock swings with whatever
else runs, it is the steadier measure of what the adapter adds.

On consumption the raw side reads each message's fields and keeps nothing; the adapter
must hand out a batch of `Record`s (a named tuple and a headers tuple per message) that
live until the caller is done with them. Kept objects are what sets off CPython's cyclic
garbage collector: with Python's default thresholds, collections cost this process 2-3
µs per consumed record (most of it full collections walking every object the imports
made), more than the adapter's own code. A service process settles its heap once it has
started (`eventmart.platform.runtime.settle_heap`: gc.freeze and a higher young-
generation threshold); `run` does the same before measuring, so both sides run under the
collector settings eventmart's processes run under.
"""

from __future__ import annotations

import argparse
import json
import statistics
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

from confluent_kafka import Consumer as RawConsumer
from confluent_kafka import Producer as RawProducer
from confluent_kafka import TopicPartition as RawPartition

from bench.common import Timer
from eventmart.platform.bus import OutgoingRecord, TopicPartition
from eventmart.platform.bus.kafka import KafkaBus
from eventmart.platform.runtime import settle_heap
from eventmart.platform.settings import Settings

PARTITIONS = 8
FLOOR = 0.7


def _headers(i: int) -> tuple[tuple[str, bytes], ...]:
    return (
        ("ce_id", uuid.UUID(int=i).hex.encode()),
        ("ce_type", b"eventmart.ordering.OrderPlaced"),
        ("ce_source", b"ordering"),
        ("ce_specversion", b"1.0"),
        ("ce_time", b"1767225600000"),
        ("content-type", b"application/vnd.eventmart.avro"),
        ("ce_correlationid", b"0190d6a4-8f7e-7c3a-9b1d-2f4e6a8c0b1d"),
    )


def _records(topic: str, n: int, size: int) -> list[OutgoingRecord]:
    value = b"\x00" * size
    return [OutgoingRecord(topic, f"order-{i % 1000}", value, _headers(i)) for i in range(n)]


def raw_producer_config(bootstrap: str) -> dict[str, Any]:
    """The raw baselines' producer: the settings KafkaProducer uses (idempotent, acks=all,
    CRC32 partitioner, linger 5 ms)."""
    return {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "consistent",
        "linger.ms": 5,
    }


def _raw_produce(
    bus: KafkaBus, topic: str, n: int, size: int, flush_every: int
) -> tuple[float, float]:
    # Records are built here and dropped on return: a big live heap would make the
    # consumers' garbage collections, not the code under test, dominate what follows.
    records = _records(topic, n, size)
    producer = RawProducer(raw_producer_config(bus.bootstrap_servers))
    producer.produce(records[0].topic, b"warm-up", b"warm-up")  # connection and producer id
    producer.flush()
    clock = Timer.started()
    for i, r in enumerate(records, start=1):
        # Inline, not a helper call: this loop is the baseline being timed.
        while True:
            try:
                producer.produce(r.topic, r.value, r.key.encode(), headers=list(r.headers))
                break
            except BufferError:
                producer.poll(0.01)
        if i % flush_every == 0:
            producer.flush()
    producer.flush()
    return clock.stop()


def _bus_produce(bus: KafkaBus, topic: str, n: int, size: int, batch: int) -> tuple[float, float]:
    records = _records(topic, n, size)
    producer = bus.producer()
    producer.send([OutgoingRecord(records[0].topic, "warm-up", b"warm-up")])
    clock = Timer.started()
    for i in range(0, len(records), batch):
        producer.send(records[i : i + batch])
    took = clock.stop()
    producer.close()
    return took


def _raw_consume(bus: KafkaBus, topic: str, n: int, batch: int) -> tuple[float, float]:
    consumer = RawConsumer(
        {
            "bootstrap.servers": bus.bootstrap_servers,
            "group.id": f"bench-raw-{uuid.uuid4().hex[:8]}",
            "partition.assignment.strategy": "cooperative-sticky",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    seen = 0
    clock: Timer | None = None  # from the first batch: the group join is not measured
    try:
        while seen < n:
            messages = consumer.consume(batch, 1.0)
            if not messages:
                continue
            if clock is None:
                clock = Timer.started()
            offsets: dict[tuple[Any, Any], Any] = {}
            for m in messages:
                if m.error() is not None:
                    continue
                # What an application reads of each record (the key as text, as the
                # envelope needs it), without keeping any of it.
                key = m.key()
                key.decode() if key is not None else ""
                m.value()
                m.headers()
                m.timestamp()
                offsets[(m.topic(), m.partition())] = m.offset()
                seen += 1
            consumer.commit(
                offsets=[RawPartition(t, p, o + 1) for (t, p), o in offsets.items()],
                asynchronous=False,
            )
        assert clock is not None
        return clock.stop()
    finally:
        consumer.close()


def _bus_consume(bus: KafkaBus, topic: str, n: int, batch: int) -> tuple[float, float]:
    consumer = bus.consumer(f"bench-bus-{uuid.uuid4().hex[:8]}", [topic])
    seen = 0
    clock: Timer | None = None  # from the first batch: the group join is not measured
    try:
        while seen < n:
            records = consumer.poll(batch, 1.0)
            if not records:
                continue
            if clock is None:
                clock = Timer.started()
            ends: dict[tuple[str, int], int] = {}
            for r in records:
                ends[(r.topic, r.partition)] = r.offset + 1
            seen += len(records)
            consumer.commit({TopicPartition(t, p): o for (t, p), o in ends.items()})
        assert clock is not None
        return clock.stop()
    finally:
        consumer.close()


def run(bootstrap: str, n: int, size: int, *, batch: int = 1000, rounds: int = 2) -> dict[str, Any]:
    """Throughput of KafkaBus and of raw confluent-kafka for `n` records of `size` bytes;
    ratios adapter / raw (1.0: as fast as the raw client)."""
    # Typed as Any: without pydantic's mypy plugin, Field() defaults look required.
    settings_class: Any = Settings
    settings = settings_class(kafka_bootstrap_servers=bootstrap, partitions=PARTITIONS)
    settle_heap(settings.gc_young_threshold)  # as `eventmart serve` does once started
    bus = KafkaBus(settings)
    try:
        timings: dict[str, list[tuple[float, float]]] = {
            "raw_produce": [],
            "raw_produce_flush_per_batch": [],
            "bus_produce": [],
            "raw_consume": [],
            "bus_consume": [],
        }
        for round_ in range(rounds):
            raw_topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
            bus_topic = f"bench-bus-{uuid.uuid4().hex[:8]}"
            bus.ensure_topic(raw_topic, PARTITIONS)
            bus.ensure_topic(bus_topic, PARTITIONS)
            writes: list[tuple[str, Callable[[], tuple[float, float]]]] = [
                ("raw_produce", partial(_raw_produce, bus, raw_topic, n, size, n + 1)),
                (
                    "raw_produce_flush_per_batch",
                    partial(_raw_produce, bus, raw_topic, n, size, batch),
                ),
                ("bus_produce", partial(_bus_produce, bus, bus_topic, n, size, batch)),
            ]
            # Every consumer reads the first n records of the adapter's topic, in a
            # group of its own: the same bytes in the same broker batches. (The raw topic
            # holds batches of another shape: a producer that flushes once packs larger
            # ones, which are cheaper to fetch and parse.)
            reads: list[tuple[str, Callable[[], tuple[float, float]]]] = [
                ("raw_consume", partial(_raw_consume, bus, bus_topic, n, batch)),
                ("bus_consume", partial(_bus_consume, bus, bus_topic, n, batch)),
            ]
            # Each side runs twice a round, in mirrored order (A B B A): whoever runs
            # second on a topic just written is measurably slower (the broker is still
            # writing back what was produced), so a plain alternation favours whoever goes
            # first in more rounds. A side's figure for the round is its mean of the two.
            if round_ % 2:
                writes.reverse()
                reads.reverse()
            runs: dict[str, list[tuple[float, float]]] = {}
            for name, step in [*writes, *reversed(writes), *reads, *reversed(reads)]:
                runs.setdefault(name, []).append(step())
            for name, (first, second) in runs.items():
                timings[name].append(((first[0] + second[0]) / 2, (first[1] + second[1]) / 2))
    finally:
        bus.close()

    def rate(name: str) -> float:
        """The best of the rounds (msgs/s, wall clock)."""
        return round(n / min(wall for wall, _ in timings[name]), 1)

    def cpu_us(name: str) -> float:
        """The least CPU time of this process per message over the rounds (µs)."""
        return round(min(cpu for _, cpu in timings[name]) / n * 1e6, 2)

    def ratio(adapter: str, raw: str, cpu: bool = False) -> float:
        """Median over the rounds of adapter / raw throughput, each pair measured back to
        back: load from elsewhere on the machine slows both sides of a pair alike. With
        `cpu`, from this process's CPU time instead of the wall clock."""
        i = 1 if cpu else 0
        pairs = zip(timings[adapter], timings[raw], strict=True)
        return round(statistics.median(r[i] / a[i] for a, r in pairs), 3)

    produce_ratio = ratio("bus_produce", "raw_produce")
    consume_ratio = ratio("bus_consume", "raw_consume")
    return {
        "n": n,
        "size": size,
        "batch": batch,
        "rounds": rounds,
        "produce": {
            "raw_msgs_per_s": rate("raw_produce"),
            "raw_flush_per_batch_msgs_per_s": rate("raw_produce_flush_per_batch"),
            "kafkabus_msgs_per_s": rate("bus_produce"),
            "ratio": produce_ratio,
            "ratio_vs_flush_per_batch": ratio("bus_produce", "raw_produce_flush_per_batch"),
            "raw_cpu_us_per_msg": cpu_us("raw_produce"),
            "kafkabus_cpu_us_per_msg": cpu_us("bus_produce"),
            "cpu_ratio": ratio("bus_produce", "raw_produce", cpu=True),
        },
        "consume": {
            "raw_msgs_per_s": rate("raw_consume"),
            "kafkabus_msgs_per_s": rate("bus_consume"),
            "ratio": consume_ratio,
            "raw_cpu_us_per_msg": cpu_us("raw_consume"),
            "kafkabus_cpu_us_per_msg": cpu_us("bus_consume"),
            "cpu_ratio": ratio("bus_consume", "raw_consume", cpu=True),
        },
        "floor": FLOOR,
        "meets_floor": produce_ratio >= FLOOR and consume_ratio >= FLOOR,
        # Every round's (msgs/s, msgs per CPU-second of this process), per side.
        "samples": {
            name: [(n / wall, n / max(cpu, 1e-9)) for wall, cpu in rows]
            for name, rows in timings.items()
        },
    }


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="bench.kafka_bus", description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("-n", type=int, default=100_000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    result = run(args.bootstrap, args.n, args.size, batch=args.batch, rounds=args.rounds)
    out(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
