"""The bus contract: what every Bus adapter guarantees (see `eventmart.platform.bus`).

Runs once per backend of tests/contract/conftest.py. Only the port's public API is used,
every topic and group name comes from `unique`, and group membership is awaited by
polling until a generous deadline, never by sleeping: an adapter may take up to its
session timeout to settle. Dead members are in test_bus_multiprocess.py (killing a
member portably takes an OS process).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

import pytest

from eventmart.platform.bus import (
    Bus,
    Consumer,
    OutgoingRecord,
    Record,
    TopicPartition,
    partition_for,
)
from eventmart.platform.messages import H_ID, H_TYPE, Envelope
from tests.contract.conftest import BusFactory
from tests.support.records import (
    key_in_partition,
    keyed_stream,
    next_offsets,
    outgoing,
    read_everything,
    seq_of,
    seqs_by_key,
)

PARTITIONS = 4
SETTLE_S = 20.0  # membership changes: generous, a Kafka rebalance takes seconds
CONSUME_S = 15.0


class Members:
    """The consumers a test creates; those still in their group leave at teardown."""

    def __init__(self) -> None:
        self.open: list[Consumer] = []

    def join(self, bus: Bus, group: str, topics: Sequence[str]) -> Consumer:
        consumer = bus.consumer(group, topics)
        self.open.append(consumer)
        return consumer

    def leave(self, consumer: Consumer) -> None:
        self.open.remove(consumer)
        consumer.close()


@pytest.fixture
def members() -> Iterator[Members]:
    m = Members()
    yield m
    for consumer in m.open:
        consumer.close()


@pytest.fixture
def topic(bus: Bus, unique: Callable[[str], str]) -> str:
    name = unique("topic")
    bus.ensure_topic(name, PARTITIONS)
    return name


def partitions_of(topic: str, count: int = PARTITIONS) -> set[TopicPartition]:
    return {TopicPartition(topic, p) for p in range(count)}


def poll_once(consumer: Consumer, max_records: int = 100, timeout_s: float = 0.05) -> list[Record]:
    """One poll, checking what every poll guarantees: records only from partitions the
    member is assigned, in offset order per partition."""
    records = consumer.poll(max_records, timeout_s)
    assigned = consumer.assignment()
    stray = {r.tp for r in records} - assigned
    assert not stray, f"poll returned records of {stray}, assignment is {assigned}"
    offsets: dict[TopicPartition, list[int]] = defaultdict(list)
    for r in records:
        offsets[r.tp].append(r.offset)
    for tp, seen in offsets.items():
        assert seen == sorted(set(seen)), f"{tp}: offsets out of order {seen}"
    return records


def consume(
    consumer: Consumer,
    until: Callable[[list[Record]], bool],
    *,
    commit: bool = True,
    timeout_s: float = CONSUME_S,
) -> list[Record]:
    """Poll one member until `until(records so far)`; commits each batch unless told not to."""
    got: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while not until(got):
        assert time.monotonic() < deadline, f"gave up after {len(got)} records"
        records = poll_once(consumer)
        got.extend(records)
        if commit and records:
            consumer.commit(next_offsets(records))
    return got


def count(n: int) -> Callable[[list[Record]], bool]:
    return lambda got: len(got) >= n


def settle(
    consumers: Sequence[Consumer],
    done: Callable[[], bool],
    what: str,
    *,
    sink: dict[Consumer, list[Record]] | None = None,
    commit: bool = True,
    timeout_s: float = SETTLE_S,
) -> None:
    """Poll every member in turn (committing what it gets, unless told not to) until
    `done()`."""
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() >= deadline:
            state = [sorted(tp.partition for tp in c.assignment()) for c in consumers]
            raise AssertionError(f"not within {timeout_s}s: {what}; assignments {state}")
        for c in consumers:
            records = poll_once(c)
            if sink is not None:
                sink[c].extend(records)
            if commit and records:
                c.commit(next_offsets(records))


def split_completely(
    consumers: Sequence[Consumer], partitions: set[TopicPartition]
) -> Callable[[], bool]:
    """Every member has partitions, none has another's, and together they have them all."""

    def check() -> bool:
        sets = [c.assignment() for c in consumers]
        return (
            all(sets)
            and sum(len(s) for s in sets) == len(partitions)
            and set().union(*sets) == partitions
        )

    return check


def committed(bus: Bus, group: str, topic: str) -> dict[int, int]:
    return {lag.partition: lag.committed for lag in bus.lag(group) if lag.topic == topic}


# -- topics, producing, reading -------------------------------------------------------
def test_ensure_topic_creates_a_topic_once_and_topics_lists_it(
    make_bus: BusFactory, unique: Callable[[str], str]
) -> None:
    bus = make_bus(partitions=5)
    three, default = unique("topic"), unique("topic")
    assert three not in bus.topics()

    bus.ensure_topic(three, 3)
    bus.ensure_topic(three, 6)  # already there: left as it is
    bus.ensure_topic(default)

    topics = bus.topics()
    assert topics[three] == 3
    assert topics[default] == 5
    assert bus.end_offsets(three) == {0: 0, 1: 0, 2: 0}
    assert make_bus().topics()[three] == 3, "another client of the log sees the topic"


def test_a_key_always_lands_in_the_partition_partition_for_names(bus: Bus, topic: str) -> None:
    keys = [f"order-{i}" for i in range(24)]
    producer = bus.producer()
    records = keyed_stream(topic, keys, 240)
    for i in range(0, len(records), 37):
        producer.send(records[i : i + 37])
    producer.close()

    stored = read_everything(bus, topic)

    assert len(stored) == 240
    wrong = [
        (r.key, r.partition) for r in stored if r.partition != partition_for(r.key, PARTITIONS)
    ]
    assert not wrong, f"records outside partition_for's partition: {wrong[:5]}"
    partitions_per_key: dict[str, set[int]] = defaultdict(set)
    for r in stored:
        partitions_per_key[r.key].add(r.partition)
    assert all(len(p) == 1 for p in partitions_per_key.values())
    assert len({r.partition for r in stored}) == PARTITIONS, "the keys spread over partitions"


def test_records_of_one_key_are_consumed_in_the_order_they_were_sent(
    bus: Bus, topic: str, members: Members, unique: Callable[[str], str]
) -> None:
    keys = [f"cart-{i}" for i in range(10)]
    producer = bus.producer()
    records = keyed_stream(topic, keys, 300)
    for i in range(0, len(records), 7):  # many sends, keys interleaved in each
        producer.send(records[i : i + 7])

    got = consume(members.join(bus, unique("group"), [topic]), count(300))

    assert seqs_by_key(got) == {k: list(range(30)) for k in keys}


def test_offsets_are_contiguous_per_partition_with_concurrent_producers(
    make_bus: BusFactory, unique: Callable[[str], str]
) -> None:
    bus = make_bus()
    topic = unique("topic")
    bus.ensure_topic(topic, PARTITIONS)
    producers = [make_bus().producer(), make_bus().producer()]  # two clients, two threads each
    threads_n, batches, batch = 4, 30, 10
    start = threading.Barrier(threads_n)
    errors: list[BaseException] = []

    def produce(i: int) -> None:
        try:
            records = keyed_stream(topic, [f"t{i}-k{j}" for j in range(6)], batches * batch)
            start.wait()
            for b in range(batches):
                producers[i % 2].send(records[b * batch : (b + 1) * batch])
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=produce, args=(i,)) for i in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors

    ends = bus.end_offsets(topic)
    assert sum(ends.values()) == threads_n * batches * batch
    stored = read_everything(bus, topic)
    for partition, end in ends.items():
        offsets = [r.offset for r in stored if r.partition == partition]
        assert offsets == list(range(end)), f"partition {partition} has gaps or repeats"
    for key, seqs in seqs_by_key(stored).items():
        assert seqs == list(range(len(seqs))), f"{key} out of order"


def test_end_offsets_and_read_need_no_group(bus: Bus, unique: Callable[[str], str]) -> None:
    topic = unique("topic")
    bus.ensure_topic(topic, 2)
    key = key_in_partition(0, 2)
    bus.producer().send([outgoing(topic, key, i) for i in range(5)])

    assert bus.end_offsets(topic) == {0: 5, 1: 0}
    page = bus.read(topic, 0, 2, 2)
    assert [(r.topic, r.partition, r.offset, r.key) for r in page] == [
        (topic, 0, 2, key),
        (topic, 0, 3, key),
    ]
    assert [seq_of(r) for r in page] == [2, 3]
    assert page[0].header("ce_id") == f"{key}#2", "headers travel with the record"
    assert page[0].timestamp_ms > 0
    assert [r.offset for r in bus.read(topic, 0, 0, 100)] == [0, 1, 2, 3, 4]
    assert bus.read(topic, 0, 5, 10) == []
    assert bus.read(topic, 1, 0, 10) == []


def test_a_header_without_a_value_is_read_back_as_none_and_decodes_as_empty(
    bus: Bus, members: Members, unique: Callable[[str], str]
) -> None:
    # Kafka allows a null header value; eventmart never writes one, but other clients do.
    topic = unique("topic")
    bus.ensure_topic(topic, 1)
    headers = ((H_ID, b"m-1"), ("note", None), (H_TYPE, b"x.Y"))
    bus.producer().send([OutgoingRecord(topic, "k", b"v", headers)])

    (stored,) = bus.read(topic, 0, 0, 10)
    (polled,) = consume(members.join(bus, unique("group"), [topic]), count(1))

    for record in (stored, polled):
        assert record.headers == headers
        assert record.header("note") == ""
        envelope = Envelope.from_record(record)
        assert (envelope.message_id, envelope.type, envelope.extra) == ("m-1", "x.Y", {"note": ""})


# -- consumer groups ------------------------------------------------------------------
def test_two_members_split_the_partitions_disjointly_and_completely(
    bus: Bus, topic: str, members: Members, unique: Callable[[str], str]
) -> None:
    group = unique("group")
    a, b = members.join(bus, group, [topic]), members.join(bus, group, [topic])
    settle([a, b], split_completely([a, b], partitions_of(topic)), "a complete, disjoint split")
    assert abs(len(a.assignment()) - len(b.assignment())) <= 1, "a balanced split"

    producer = bus.producer()
    producer.send(keyed_stream(topic, [f"k{i}" for i in range(40)], 200))
    got: dict[Consumer, list[Record]] = defaultdict(list)
    settle([a, b], lambda: len(got[a]) + len(got[b]) >= 200, "all 200 records", sink=got)

    assert {r.tp for r in got[a]} <= a.assignment()
    assert {r.tp for r in got[b]} <= b.assignment()
    positions = [(r.partition, r.offset) for r in got[a] + got[b]]
    assert len(positions) == len(set(positions)) == 200, "each record to one member once"


def test_poll_returns_only_assigned_partitions_through_a_rebalance(
    bus: Bus, topic: str, members: Members, unique: Callable[[str], str]
) -> None:
    group = unique("group")
    producer = bus.producer()
    keys = [f"k{i}" for i in range(40)]
    records = keyed_stream(topic, keys, 800)
    producer.send(records[:400])
    a = members.join(bus, group, [topic])
    got: dict[Consumer, list[Record]] = defaultdict(list)
    got[a].extend(consume(a, count(1)))  # a has started on its own

    b = members.join(bus, group, [topic])  # the rebalance happens while a is consuming
    settle([a, b], split_completely([a, b], partitions_of(topic)), "a split", sink=got)
    producer.send(records[400:])

    def delivered() -> int:
        return len({(r.partition, r.offset) for rs in got.values() for r in rs})

    settle([a, b], lambda: delivered() >= 800, "every record delivered", sink=got)
    # poll_once checked every batch against the assignment of the moment
    assert {r.tp for r in got[b]} & b.assignment(), "the member that joined got records"


def test_a_joining_member_takes_partitions_from_the_others(
    bus: Bus, topic: str, members: Members, unique: Callable[[str], str]
) -> None:
    group = unique("group")
    everything = partitions_of(topic)
    a = members.join(bus, group, [topic])
    settle([a], lambda: a.assignment() == everything, "a alone owns every partition")

    b = members.join(bus, group, [topic])
    settle([a, b], split_completely([a, b], everything), "a split after b joined")

    assert a.assignment() == everything - b.assignment(), "a gave up what b received"


def test_a_member_that_leaves_hands_over_without_waiting_for_the_session_timeout(
    make_bus: BusFactory, members: Members, unique: Callable[[str], str]
) -> None:
    session_s = 10.0
    bus = make_bus(session_timeout_s=session_s, heartbeat_interval_s=0.5)
    topic, group = unique("topic"), unique("group")
    bus.ensure_topic(topic, PARTITIONS)
    a, b = members.join(bus, group, [topic]), members.join(bus, group, [topic])
    everything = partitions_of(topic)
    settle([a, b], split_completely([a, b], everything), "a split")
    b_parts = b.assignment()
    keys = {tp.partition: key_in_partition(tp.partition, PARTITIONS) for tp in everything}
    bus.producer().send(
        [outgoing(topic, keys[tp.partition], s) for tp in b_parts for s in range(6)]
    )
    consume(b, count(6 * len(b_parts)), commit=False)
    b.commit({tp: 4 for tp in b_parts})  # b handled 0..3 of each of its partitions

    left_at = time.monotonic()
    members.leave(b)
    got: dict[Consumer, list[Record]] = defaultdict(list)
    settle([a], lambda: a.assignment() == everything, "a takes b's partitions", sink=got)
    handover_s = time.monotonic() - left_at

    assert handover_s < session_s / 2, f"handover took {handover_s:.1f}s"
    rest = consume(a, count(2 * len(b_parts) - len(got[a])))
    resumed = sorted((r.partition, r.offset) for r in got[a] + rest)
    assert resumed == sorted((tp.partition, o) for tp in b_parts for o in (4, 5)), (
        "a goes on from b's committed offsets"
    )


def test_a_new_member_resumes_from_the_committed_offset(
    bus: Bus, members: Members, unique: Callable[[str], str]
) -> None:
    topic, group = unique("topic"), unique("group")
    bus.ensure_topic(topic, 1)
    producer = bus.producer()
    producer.send([outgoing(topic, "k", i) for i in range(10)])
    first = members.join(bus, group, [topic])
    consume(first, count(10))  # commits as it goes
    members.leave(first)
    producer.send([outgoing(topic, "k", i) for i in range(10, 13)])

    second = members.join(bus, group, [topic])
    got = consume(second, lambda got: any(r.offset == 12 for r in got))

    assert [r.offset for r in got] == [10, 11, 12]


def test_records_after_the_committed_offset_are_delivered_again(
    bus: Bus, members: Members, unique: Callable[[str], str]
) -> None:
    topic, group = unique("topic"), unique("group")
    bus.ensure_topic(topic, 1)
    bus.producer().send([outgoing(topic, "k", i) for i in range(10)])
    first = members.join(bus, group, [topic])
    assert len(consume(first, count(10), commit=False)) == 10
    first.commit({TopicPartition(topic, 0): 4})  # it handled only 0..3 before it went
    members.leave(first)

    second = members.join(bus, group, [topic])
    got = consume(second, lambda got: any(r.offset == 9 for r in got))

    assert [r.offset for r in got] == [4, 5, 6, 7, 8, 9]


def test_each_group_gets_every_record(
    bus: Bus, topic: str, members: Members, unique: Callable[[str], str]
) -> None:
    bus.producer().send(keyed_stream(topic, [f"k{i}" for i in range(20)], 120))
    one = members.join(bus, unique("group"), [topic])
    two = members.join(bus, unique("group"), [topic])

    got_one = consume(one, count(120))
    got_two = consume(two, count(120))

    everything = {(r.partition, r.offset) for r in read_everything(bus, topic)}
    assert {(r.partition, r.offset) for r in got_one} == everything
    assert {(r.partition, r.offset) for r in got_two} == everything


def test_a_commit_for_a_partition_the_member_no_longer_owns_does_not_move_the_offset(
    bus: Bus, members: Members, unique: Callable[[str], str]
) -> None:
    topic, group = unique("topic"), unique("group")
    bus.ensure_topic(topic, 2)
    everything = partitions_of(topic, 2)
    bus.producer().send(
        [outgoing(topic, key_in_partition(p, 2), s) for p in range(2) for s in range(5)]
    )
    a = members.join(bus, group, [topic])
    consume(a, count(10), commit=False)
    a.commit(dict.fromkeys(everything, 1))
    b = members.join(bus, group, [topic])
    settle([a, b], split_completely([a, b], everything), "a split", commit=False)
    (lost,) = b.assignment()
    (kept,) = a.assignment()

    a.commit({lost: 5, kept: 5})

    offsets = committed(bus, group, topic)
    assert offsets[lost.partition] == 1, "the stale commit did not move b's partition"
    assert offsets[kept.partition] == 5
    b.commit({lost: 3})
    assert committed(bus, group, topic)[lost.partition] == 3


# -- flow control ---------------------------------------------------------------------
def test_poll_returns_at_most_max_records(
    bus: Bus, topic: str, members: Members, unique: Callable[[str], str]
) -> None:
    bus.producer().send(
        [
            outgoing(topic, key_in_partition(p, PARTITIONS), s)
            for p in range(PARTITIONS)
            for s in range(5)
        ]
    )
    c = members.join(bus, unique("group"), [topic])
    got: list[Record] = []
    sizes: list[int] = []
    deadline = time.monotonic() + CONSUME_S
    while len(got) < 5 * PARTITIONS and time.monotonic() < deadline:
        records = poll_once(c, max_records=2)
        sizes.append(len(records))
        got.extend(records)
        if records:
            c.commit(next_offsets(records))

    assert max(sizes) <= 2, f"poll(max_records=2) returned batches of {sorted(set(sizes))}"
    assert len({(r.partition, r.offset) for r in got}) == 5 * PARTITIONS


def test_pause_stops_a_partition_and_resume_goes_on_where_it_stopped(
    bus: Bus, members: Members, unique: Callable[[str], str]
) -> None:
    topic = unique("topic")
    bus.ensure_topic(topic, 2)
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    k0, k1 = key_in_partition(0, 2), key_in_partition(1, 2)
    producer = bus.producer()
    producer.send([outgoing(topic, k, s) for k in (k0, k1) for s in range(3)])
    c = members.join(bus, unique("group"), [topic])
    consume(c, count(6))

    c.pause([p0])
    assert c.paused() == {p0}
    producer.send([outgoing(topic, k0, s) for s in range(3, 6)])  # the paused one first
    producer.send([outgoing(topic, k1, s) for s in range(3, 6)])
    while_paused = consume(c, lambda got: sum(r.tp == p1 for r in got) >= 3)

    assert all(r.tp == p1 for r in while_paused), "nothing from the paused partition"
    assert p0 in c.assignment(), "a paused partition stays assigned"

    c.resume([p0])
    assert c.paused() == set()
    after = consume(c, count(3))
    assert [(r.tp, seq_of(r)) for r in after] == [(p0, 3), (p0, 4), (p0, 5)]


def test_seek_rereads_a_partition_from_the_given_offset(
    bus: Bus, members: Members, unique: Callable[[str], str]
) -> None:
    topic = unique("topic")
    bus.ensure_topic(topic, 1)
    tp = TopicPartition(topic, 0)
    bus.producer().send([outgoing(topic, "k", i) for i in range(10)])
    c = members.join(bus, unique("group"), [topic])
    consume(c, count(10))

    c.seek(tp, 3)
    again = consume(c, lambda got: any(r.offset == 9 for r in got))
    c.seek(tp, 8)
    tail = consume(c, lambda got: any(r.offset == 9 for r in got))

    assert [r.offset for r in again] == list(range(3, 10))
    assert [r.offset for r in tail] == [8, 9]


# -- inspection and admin -------------------------------------------------------------
def test_lag_is_the_end_offset_minus_the_committed_offset_per_group_and_partition(
    bus: Bus, members: Members, unique: Callable[[str], str]
) -> None:
    topic, slow, fast = unique("topic"), unique("group"), unique("group")
    bus.ensure_topic(topic, 2)
    p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    k0, k1 = key_in_partition(0, 2), key_in_partition(1, 2)
    producer = bus.producer()
    producer.send([outgoing(topic, k0, s) for s in range(7)])
    producer.send([outgoing(topic, k1, s) for s in range(3)])
    behind = members.join(bus, slow, [topic])
    consume(behind, count(10), commit=False)
    behind.commit({p0: 5, p1: 3})
    ahead = members.join(bus, fast, [topic])
    consume(ahead, count(10))

    lags = {(x.partition): x for x in bus.lag(slow) if x.topic == topic}
    assert {p: (x.end_offset, x.committed, x.lag) for p, x in lags.items()} == {
        0: (7, 5, 2),
        1: (3, 3, 0),
    }
    assert {x.group for x in bus.lag(slow)} == {slow}
    everyone = {(x.group, x.partition): x.lag for x in bus.lag() if x.topic == topic}
    assert everyone == {(slow, 0): 2, (slow, 1): 0, (fast, 0): 0, (fast, 1): 0}
    assert {slow, fast} <= set(bus.groups())

    producer.send([outgoing(topic, k1, s) for s in range(3, 7)])
    assert {x.partition: x.lag for x in bus.lag(slow) if x.topic == topic} == {0: 2, 1: 4}


def test_reset_group_makes_a_group_read_its_topics_from_the_start(
    bus: Bus, members: Members, unique: Callable[[str], str]
) -> None:
    replayed, kept, group = unique("topic"), unique("topic"), unique("group")
    bus.ensure_topic(replayed, 2)
    bus.ensure_topic(kept, 1)
    producer = bus.producer()
    producer.send(keyed_stream(replayed, [f"k{i}" for i in range(6)], 12))
    producer.send([outgoing(kept, "k", i) for i in range(4)])
    first = members.join(bus, group, [replayed, kept])
    consume(first, count(16))
    members.leave(first)
    assert all(x.lag == 0 for x in bus.lag(group)), bus.lag(group)

    bus.reset_group(group, [replayed])
    producer.send([outgoing(kept, "k", 4)])  # a marker: the kept topic goes on from 4
    second = members.join(bus, group, [replayed, kept])
    got = consume(second, lambda got: len(got) >= 12 and any(r.topic == kept for r in got))

    assert sorted((r.partition, r.offset) for r in got if r.topic == replayed) == sorted(
        (r.partition, r.offset) for r in read_everything(bus, replayed)
    )
    assert [r.offset for r in got if r.topic == kept] == [4]
