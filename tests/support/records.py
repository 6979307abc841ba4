"""Test records: a key and a per-key sequence number, with a message id in the headers.

The value is JSON so a failing assertion prints something readable.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence

from eventmart.platform.bus import Bus, OutgoingRecord, Record, TopicPartition, partition_for
from eventmart.platform.messages import H_ID


def message_id(key: str, seq: int) -> str:
    return f"{key}#{seq}"


def outgoing(topic: str, key: str, seq: int) -> OutgoingRecord:
    value = json.dumps({"key": key, "seq": seq}).encode()
    return OutgoingRecord(topic, key, value, ((H_ID, message_id(key, seq).encode()),))


def ids_sent(records: Iterable[OutgoingRecord]) -> set[str]:
    return {dict(r.headers)[H_ID].decode() for r in records}


def seq_of(record: Record) -> int:
    return int(json.loads(record.value)["seq"])


def id_of(record: Record) -> str:
    found = record.header(H_ID)
    assert found is not None, f"record without {H_ID}: {record}"
    return found


def keyed_stream(topic: str, keys: Sequence[str], count: int) -> list[OutgoingRecord]:
    """`count` records dealt round-robin over `keys`, each key numbered 0, 1, 2, ..."""
    seqs = dict.fromkeys(keys, 0)
    out: list[OutgoingRecord] = []
    for key in itertools.islice(itertools.cycle(keys), count):
        out.append(outgoing(topic, key, seqs[key]))
        seqs[key] += 1
    return out


def key_in_partition(partition: int, partitions: int, prefix: str = "k") -> str:
    """A key that `partition_for` sends to `partition`."""
    for i in itertools.count():
        key = f"{prefix}{i}"
        if partition_for(key, partitions) == partition:
            return key
    raise AssertionError("unreachable")


def read_everything(bus: Bus, topic: str, page: int = 1000) -> list[Record]:
    """Every record of `topic`, partition by partition, in offset order (group-less read)."""
    out: list[Record] = []
    for partition, end in sorted(bus.end_offsets(topic).items()):
        offset = 0
        while offset < end:
            batch = bus.read(topic, partition, offset, page)
            assert batch, f"{topic}/{partition}: nothing at offset {offset} below end {end}"
            out.extend(batch)
            offset = batch[-1].offset + 1
    return out


def seqs_by_key(records: Iterable[Record]) -> dict[str, list[int]]:
    """Per key, the sequence numbers in the order given."""
    out: dict[str, list[int]] = defaultdict(list)
    for r in records:
        out[r.key].append(seq_of(r))
    return dict(out)


def first_occurrences(seqs: Iterable[int]) -> list[int]:
    """The sequence with repeats of earlier items dropped (what an inbox lets through)."""
    seen: set[int] = set()
    out: list[int] = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def next_offsets(records: Iterable[Record]) -> dict[TopicPartition, int]:
    """What to commit after handling `records`: per partition, the offset after the last."""
    out: dict[TopicPartition, int] = {}
    for r in records:
        out[r.tp] = max(out.get(r.tp, 0), r.offset + 1)
    return out
