"""Dead letters: list them with their reasons, and redrive them to the group that failed.

A dead letter is a record on `dlq.<group>` carrying the original key, body and headers
plus the reason. Redrive re-publishes it to `retry.<group>`, a topic only that group reads,
so other groups never see it twice; a marker record on the dead-letter topic remembers the
redrive. Works on any bus adapter: it only reads and appends records.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventmart.platform.bus import Bus, OutgoingRecord, Record
from eventmart.platform.consumer import (
    DLQ_ATTEMPTS,
    DLQ_ERROR,
    DLQ_FAILED_AT,
    DLQ_HEADERS,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_REASON,
    DLQ_TOPIC,
)
from eventmart.platform.errors import EventmartError
from eventmart.platform.messages import H_ID, H_TYPE
from eventmart.platform.messaging import retry_topic

DLQ_PREFIX = "dlq."
REDRIVE_OF = "dlq_redrive_of"


class DeadLetterNotFoundError(EventmartError):
    pass


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: str
    group: str
    original_topic: str
    original_partition: int
    original_offset: int
    key: str
    message_type: str
    message_id: str
    reason: str
    error_type: str
    attempts: int
    failed_at_ms: int
    redriven: bool
    record: Record

    def as_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "group": self.group,
            "topic": self.original_topic,
            "partition": self.original_partition,
            "offset": self.original_offset,
            "key": self.key,
            "type": self.message_type,
            "message_id": self.message_id,
            "reason": self.reason,
            "error_type": self.error_type,
            "attempts": self.attempts,
            "failed_at_ms": self.failed_at_ms,
            "redriven": self.redriven,
        }


class DeadLetters:
    def __init__(self, bus: Bus) -> None:
        self.bus = bus

    def _records(self, topic: str) -> list[Record]:
        out: list[Record] = []
        for partition in sorted(self.bus.end_offsets(topic)):
            offset = 0
            while True:
                batch = self.bus.read(topic, partition, offset, 1000)
                out.extend(batch)
                if len(batch) < 1000:
                    break
                offset = batch[-1].offset + 1
        return out

    def list(self, group: str | None = None) -> list[DeadLetter]:
        topics = [t for t in self.bus.topics() if t.startswith(DLQ_PREFIX)]
        if group is not None:
            topics = [t for t in topics if t == DLQ_PREFIX + group]
        letters: list[DeadLetter] = []
        for topic in sorted(topics):
            records = self._records(topic)
            redriven = {r.header(REDRIVE_OF) for r in records if r.header(REDRIVE_OF)}
            grp = topic[len(DLQ_PREFIX) :]
            for r in records:
                if r.header(REDRIVE_OF):
                    continue
                letter_id = f"{grp}-{r.partition}-{r.offset}"
                letters.append(
                    DeadLetter(
                        id=letter_id,
                        group=grp,
                        original_topic=r.header(DLQ_TOPIC) or "",
                        original_partition=int(r.header(DLQ_PARTITION) or -1),
                        original_offset=int(r.header(DLQ_OFFSET) or -1),
                        key=r.key,
                        message_type=r.header(H_TYPE) or "",
                        message_id=r.header(H_ID) or "",
                        reason=r.header(DLQ_REASON) or "",
                        error_type=r.header(DLQ_ERROR) or "",
                        attempts=int(r.header(DLQ_ATTEMPTS) or 0),
                        failed_at_ms=int(r.header(DLQ_FAILED_AT) or r.timestamp_ms),
                        redriven=letter_id in redriven,
                        record=r,
                    )
                )
        return sorted(letters, key=lambda d: d.failed_at_ms)

    def get(self, letter_id: str) -> DeadLetter:
        try:
            group, _, _ = letter_id.rsplit("-", 2)
        except ValueError as e:
            raise DeadLetterNotFoundError(f"no dead letter {letter_id!r}") from e
        for letter in self.list(group):
            if letter.id == letter_id:
                return letter
        raise DeadLetterNotFoundError(f"no dead letter {letter_id!r}")

    def redrive(self, letter_id: str) -> DeadLetter:
        """Send the original message to its group again. A second redrive of the same
        letter sends it again too (the group's inbox keeps the effect single)."""
        letter = self.get(letter_id)
        r = letter.record
        original_headers = tuple(h for h in r.headers if h[0] not in DLQ_HEADERS)
        producer = self.bus.producer()
        try:
            producer.send(
                [OutgoingRecord(retry_topic(letter.group), r.key, r.value, original_headers)]
            )
            producer.send(
                [OutgoingRecord(r.topic, r.key, b"", ((REDRIVE_OF, letter_id.encode()),))]
            )
        finally:
            producer.close()
        return letter
