"""The bus port: publish/subscribe over a partitioned, replayable log.

Semantics every adapter guarantees (the contract suite in tests/contract checks them):
- a topic has N partitions; a record's partition is a stable hash of its key, so records
  with one key keep their order;
- a consumer group divides a topic's partitions among its live members; a member that
  dies loses its partitions to the others after the session timeout; members joining or
  leaving rebalance;
- a group's committed offset is the next offset it will read; records after it are
  delivered again to whoever owns the partition next (at-least-once);
- lag is the end offset minus the committed offset, per group and partition.
"""

from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from eventmart.platform.messages import OutgoingRecord, Record, TopicPartition

__all__ = [
    "Bus",
    "Consumer",
    "OutgoingRecord",
    "PartitionLag",
    "Producer",
    "Record",
    "TopicPartition",
    "partition_for",
]


def partition_for(key: str, partitions: int) -> int:
    """The partition of a key: CRC32 of its UTF-8 bytes, modulo the partition count."""
    return zlib.crc32(key.encode()) % partitions


@dataclass(frozen=True, slots=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    end_offset: int
    owner: str | None = None

    @property
    def lag(self) -> int:
        return max(0, self.end_offset - self.committed)


class Producer(ABC):
    """Sends records; when `send` returns, every record is durably in the log."""

    @abstractmethod
    def send(self, records: Sequence[OutgoingRecord]) -> None: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the default has none."""


class Consumer(ABC):
    """One member of a consumer group."""

    member_id: str

    @abstractmethod
    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Records from this member's partitions, in offset order per partition.

        Waits up to `timeout_s` for records. Group membership (rebalancing, takeover of
        a dead member's partitions) is settled here, between batches.
        """

    @abstractmethod
    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Record, per partition, the next offset to read. Offsets of partitions this
        member no longer owns are not written (another member is now responsible)."""

    @abstractmethod
    def assignment(self) -> set[TopicPartition]: ...

    @abstractmethod
    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        """Stop fetching from these partitions (membership is kept)."""

    @abstractmethod
    def resume(self, partitions: Iterable[TopicPartition]) -> None: ...

    @abstractmethod
    def paused(self) -> set[TopicPartition]: ...

    @abstractmethod
    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read `partition` from `offset` at the next poll (to redeliver after a failure)."""

    @abstractmethod
    def close(self) -> None:
        """Leave the group now, so others take the partitions without waiting."""


class Bus(ABC):
    """Factory of producers and consumers, plus the admin and inspection operations."""

    @abstractmethod
    def ensure_topic(self, name: str, partitions: int | None = None) -> None:
        """Create the topic if it does not exist (default partition count from settings)."""

    @abstractmethod
    def topics(self) -> dict[str, int]:
        """Topic name -> partition count."""

    @abstractmethod
    def producer(self) -> Producer: ...

    @abstractmethod
    def consumer(
        self, group: str, topics: Sequence[str], member_id: str | None = None
    ) -> Consumer: ...

    @abstractmethod
    def end_offsets(self, topic: str) -> dict[int, int]:
        """Partition -> offset the next record will get."""

    @abstractmethod
    def read(self, topic: str, partition: int, offset: int, limit: int) -> list[Record]:
        """Read records without a group (tools: dead letters, inspection)."""

    @abstractmethod
    def lag(self, group: str | None = None) -> list[PartitionLag]:
        """Lag per group and partition, for every group that has committed or is live."""

    @abstractmethod
    def groups(self) -> list[str]: ...

    @abstractmethod
    def reset_group(self, group: str, topics: Sequence[str]) -> None:
        """Move a group's offsets back to the start of `topics` (for a replay)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the default has none."""
