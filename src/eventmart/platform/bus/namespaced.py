"""A namespace on a shared bus: topics and consumer groups prefixed, invisibly to callers.

Several shops (a developer's and the test suite's, or one per test) can share one Kafka
cluster: each sees only its own topics and groups, under their ordinary names. Records and
partitions cross this layer with the logical names; only the broker sees the prefix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from eventmart.platform.bus import (
    Bus,
    Consumer,
    OutgoingRecord,
    PartitionLag,
    Producer,
    Record,
    TopicPartition,
)


class _Names:
    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}."

    def out(self, name: str) -> str:
        return self.prefix + name

    def back(self, name: str) -> str:
        return name[len(self.prefix) :]

    def mine(self, name: str) -> bool:
        return name.startswith(self.prefix)

    def records_back(self, records: Iterable[Record]) -> list[Record]:
        """Records with their logical topic names: built directly, per message (cheaper
        than `dataclasses.replace`), with each topic's name looked up once."""
        names: dict[str, str] = {}
        out: list[Record] = []
        for r in records:
            topic = names.get(r.topic)
            if topic is None:
                topic = names[r.topic] = self.back(r.topic)
            out.append(
                Record(topic, r.partition, r.offset, r.key, r.value, r.headers, r.timestamp_ms)
            )
        return out

    def tp_out(self, tp: TopicPartition) -> TopicPartition:
        return TopicPartition(self.out(tp.topic), tp.partition)

    def tp_back(self, tp: TopicPartition) -> TopicPartition:
        return TopicPartition(self.back(tp.topic), tp.partition)


class _Producer(Producer):
    def __init__(self, inner: Producer, names: _Names) -> None:
        self.inner = inner
        self.names = names

    def send(self, records: Sequence[OutgoingRecord]) -> None:
        out = self.names.out
        self.inner.send([OutgoingRecord(out(r.topic), r.key, r.value, r.headers) for r in records])

    def close(self) -> None:
        self.inner.close()


class _Consumer(Consumer):
    def __init__(self, inner: Consumer, names: _Names) -> None:
        self.inner = inner
        self.names = names
        self.member_id = inner.member_id

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        return self.names.records_back(self.inner.poll(max_records, timeout_s))

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        self.inner.commit({self.names.tp_out(tp): o for tp, o in offsets.items()})

    def assignment(self) -> set[TopicPartition]:
        return {self.names.tp_back(tp) for tp in self.inner.assignment()}

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self.inner.pause([self.names.tp_out(tp) for tp in partitions])

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self.inner.resume([self.names.tp_out(tp) for tp in partitions])

    def paused(self) -> set[TopicPartition]:
        return {self.names.tp_back(tp) for tp in self.inner.paused()}

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.inner.seek(self.names.tp_out(partition), offset)

    def close(self) -> None:
        self.inner.close()


class NamespacedBus(Bus):
    """`inner` with every topic and group name under `<namespace>.`."""

    def __init__(self, inner: Bus, namespace: str) -> None:
        self.inner = inner
        self.names = _Names(namespace)

    def ensure_topic(self, name: str, partitions: int | None = None) -> None:
        self.inner.ensure_topic(self.names.out(name), partitions)

    def topics(self) -> dict[str, int]:
        n = self.names
        return {n.back(t): p for t, p in self.inner.topics().items() if n.mine(t)}

    def producer(self) -> Producer:
        return _Producer(self.inner.producer(), self.names)

    def consumer(self, group: str, topics: Sequence[str], member_id: str | None = None) -> Consumer:
        n = self.names
        return _Consumer(
            self.inner.consumer(n.out(group), [n.out(t) for t in topics], member_id), n
        )

    def end_offsets(self, topic: str) -> dict[int, int]:
        return self.inner.end_offsets(self.names.out(topic))

    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        return self.names.records_back(
            self.inner.read(self.names.out(topic), partition, offset, limit)
        )

    def lag(self, group: str | None = None) -> list[PartitionLag]:
        n = self.names
        rows = self.inner.lag(None if group is None else n.out(group))
        return [
            dataclasses.replace(r, group=n.back(r.group), topic=n.back(r.topic))
            for r in rows
            if n.mine(r.group) and n.mine(r.topic)
        ]

    def groups(self) -> list[str]:
        n = self.names
        return [n.back(g) for g in self.inner.groups() if n.mine(g)]

    def reset_group(self, group: str, topics: Sequence[str]) -> None:
        n = self.names
        self.inner.reset_group(n.out(group), [n.out(t) for t in topics])

    def close(self) -> None:
        self.inner.close()
