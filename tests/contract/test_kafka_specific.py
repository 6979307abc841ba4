"""What the Kafka adapter promises beyond the bus contract (tests/contract/test_bus.py):
librdkafka's partitioner agrees with `partition_for`, the producer is idempotent and
reports failed deliveries, polls answer promptly, lag names the owning member, and a
session timeout the broker refuses is an error that says so.

Runs against the session's Kafka broker (tests/engines.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import consistent

from eventmart.platform.bus import OutgoingRecord, TopicPartition, partition_for
from eventmart.platform.bus.kafka import KafkaBus, KafkaBusError, KafkaConsumer, KafkaProducer
from eventmart.platform.settings import Settings
from tests.support.records import key_in_partition, next_offsets, outgoing, read_everything

pytestmark = pytest.mark.distributed

KEYS = [
    *(f"order-{i}" for i in range(300)),
    *(str(i) for i in range(50)),
    "",  # an empty key is still hashed: CRC32 of nothing is 0
    "ü-ñ-日本",  # non-ASCII: the UTF-8 bytes are hashed
    "k" * 500,
    "0190d6a4-8f7e-7c3a-9b1d-2f4e6a8c0b1d",  # a UUIDv7, like real aggregate ids
]


@pytest.fixture
def make_kafka(engines: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., KafkaBus]]:
    made: list[KafkaBus] = []

    def factory(**options: Any) -> KafkaBus:
        settings = Settings(
            profile="distributed",
            environment="test",
            data_dir=tmp_path / "data",
            kafka_bootstrap_servers=engines["kafka"],
            **{"session_timeout_s": 2.0, "heartbeat_interval_s": 0.2, **options},
        )
        bus = KafkaBus(settings)
        made.append(bus)
        return bus

    yield factory
    for bus in made:
        bus.close()


@pytest.fixture
def kafka(make_kafka: Callable[..., KafkaBus]) -> KafkaBus:
    return make_kafka()


@pytest.fixture
def consumers() -> Iterator[list[KafkaConsumer]]:
    opened: list[KafkaConsumer] = []
    yield opened
    for c in opened:
        c.close()


def join(bus: KafkaBus, group: str, topic: str, member_id: str) -> KafkaConsumer:
    consumer = bus.consumer(group, [topic], member_id)
    assert isinstance(consumer, KafkaConsumer)
    return consumer


def poll_until(consumers: list[KafkaConsumer], done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not done():
        assert time.monotonic() < deadline, f"not within 30s: {what}"
        for c in consumers:
            records = c.poll(100, 0.05)
            if records:
                c.commit(next_offsets(records))


@pytest.mark.parametrize("partitions", [1, 3, 8, 13])
def test_librdkafkas_consistent_partitioner_is_partition_for(
    kafka: KafkaBus, unique: Callable[[str], str], partitions: int
) -> None:
    # The function librdkafka runs, called directly...
    assert [consistent(k.encode(), partitions) for k in KEYS] == [
        partition_for(k, partitions) for k in KEYS
    ]
    # ... and what the producer really does, read back from the broker.
    topic = unique("topic")
    kafka.ensure_topic(topic, partitions)
    producer = kafka.producer()
    producer.send([OutgoingRecord(topic, k, k.encode()) for k in KEYS])
    producer.close()

    stored = read_everything(kafka, topic)

    assert len(stored) == len(KEYS)
    wrong = [
        (r.key, r.partition) for r in stored if r.partition != partition_for(r.key, partitions)
    ]
    assert not wrong, f"librdkafka placed keys elsewhere than partition_for: {wrong[:5]}"


def test_the_producer_is_idempotent_and_waits_for_every_replica(kafka: KafkaBus) -> None:
    producer = kafka.producer()
    assert isinstance(producer, KafkaProducer)
    config = producer.config
    assert config["enable.idempotence"] is True
    assert config["acks"] == "all"
    assert config["partitioner"] == "consistent"
    producer.close()


def test_values_and_headers_travel_byte_for_byte(
    kafka: KafkaBus, unique: Callable[[str], str]
) -> None:
    topic = unique("topic")
    kafka.ensure_topic(topic, 1)
    value = bytes(range(256)) * 3
    headers = (("ce_id", b"m-1"), ("empty", b""), ("binary", b"\x00\xff\x00"), ("ce_id", b"dup"))
    kafka.producer().send(
        [OutgoingRecord(topic, "k", value, headers), OutgoingRecord(topic, "k", b"")]
    )

    first, second = kafka.read(topic, 0, 0, 10)

    assert (first.key, first.value, first.headers) == ("k", value, headers)
    assert (second.value, second.headers) == (b"", ())


def test_send_raises_when_the_broker_refuses_a_record(
    kafka: KafkaBus, unique: Callable[[str], str]
) -> None:
    from confluent_kafka.admin import NewTopic

    topic = unique("topic")
    small = NewTopic(topic, 1, replication_factor=-1, config={"max.message.bytes": "2000"})
    kafka.admin.create_topics([small])[topic].result(timeout=30)
    kafka.ensure_topic(topic)  # waits for the metadata

    with pytest.raises(KafkaBusError, match="not written"):
        kafka.producer().send([outgoing(topic, "k", 0), OutgoingRecord(topic, "k", b"x" * 5000)])
    with pytest.raises(KafkaBusError, match="MSG_SIZE_TOO_LARGE"):  # refused before sending
        kafka.producer().send([OutgoingRecord(topic, "k", b"x" * (2 * 1024 * 1024))])


def test_topics_are_created_with_the_partitions_asked_and_kept_forever(
    kafka: KafkaBus, unique: Callable[[str], str]
) -> None:
    from confluent_kafka.admin import ConfigResource, ResourceType

    topic = unique("topic")
    kafka.ensure_topic(topic, 3)
    found = kafka.admin.describe_configs([ConfigResource(ResourceType.TOPIC, topic)])
    (config,) = (f.result(timeout=30) for f in found.values())

    assert config["retention.ms"].value == "-1"
    assert kafka.topics()[topic] == 3


def test_poll_returns_as_soon_as_a_record_arrives(
    kafka: KafkaBus, unique: Callable[[str], str], consumers: list[KafkaConsumer]
) -> None:
    topic, group = unique("topic"), unique("group")
    kafka.ensure_topic(topic, 1)
    c = join(kafka, group, topic, "prompt")
    consumers.append(c)
    poll_until([c], lambda: bool(c.assignment()), "the member has its partition")
    kafka.producer().send([outgoing(topic, "k", 0)])

    started = time.monotonic()
    got = c.poll(500, 10.0)  # far more than is there, with a long timeout
    took = time.monotonic() - started

    assert [r.offset for r in got] == [0]
    assert took < 2.0, f"poll waited {took:.1f}s for a batch it could not fill"


def test_lag_names_the_member_that_owns_each_partition(
    kafka: KafkaBus, unique: Callable[[str], str], consumers: list[KafkaConsumer]
) -> None:
    topic, group = unique("topic"), unique("group")
    kafka.ensure_topic(topic, 4)
    kafka.producer().send(
        [outgoing(topic, key_in_partition(p, 4), s) for p in range(4) for s in range(3)]
    )
    a, b = join(kafka, group, topic, "member-a"), join(kafka, group, topic, "member-b")
    consumers += [a, b]
    everything = {TopicPartition(topic, p) for p in range(4)}

    def split() -> bool:
        mine, theirs = a.assignment(), b.assignment()
        return bool(mine and theirs) and mine | theirs == everything and not mine & theirs

    poll_until([a, b], split, "a split between a and b")
    owners_expected = {tp.partition: "member-a" for tp in a.assignment()} | {
        tp.partition: "member-b" for tp in b.assignment()
    }
    poll_until(
        [a, b],
        lambda: {x.partition: x.owner for x in kafka.lag(group)} == owners_expected,
        "lag reports both members as owners",
    )

    lags = kafka.lag(group)
    assert {(x.partition, x.end_offset) for x in lags} == {(p, 3) for p in range(4)}
    a.close()
    consumers.remove(a)
    poll_until(
        [b],
        lambda: {x.owner for x in kafka.lag(group)} == {"member-b"},
        "b owns everything after a left",
    )


def test_a_session_timeout_the_broker_refuses_is_an_error_naming_the_setting(
    make_kafka: Callable[..., KafkaBus],
    unique: Callable[[str], str],
    consumers: list[KafkaConsumer],
) -> None:
    bus = make_kafka(session_timeout_s=0.2, heartbeat_interval_s=0.05)
    topic = unique("topic")
    bus.ensure_topic(topic, 1)
    c = join(bus, unique("group"), topic, "too-short")
    consumers.append(c)

    with pytest.raises(KafkaBusError, match=r"group\.min\.session\.timeout\.ms"):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            c.poll(10, 0.2)


def test_reset_group_refuses_while_the_group_has_a_live_member(
    make_kafka: Callable[..., KafkaBus],
    unique: Callable[[str], str],
    consumers: list[KafkaConsumer],
) -> None:
    bus = make_kafka(session_timeout_s=1.0, heartbeat_interval_s=0.1)
    bus.RESET_MARGIN_S = 0.5
    topic, group = unique("topic"), unique("group")
    bus.ensure_topic(topic, 1)
    c = join(bus, group, topic, "live")
    consumers.append(c)
    poll_until([c], lambda: bool(c.assignment()), "the member joined")

    with pytest.raises(KafkaBusError, match="live members"):
        bus.reset_group(group, [topic])

    c.close()
    consumers.remove(c)
    bus.reset_group(group, [topic])  # empty now: allowed
