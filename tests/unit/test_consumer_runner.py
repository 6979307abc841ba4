"""The consumer runtime: batches, inbox, retries, dead letters, pause/resume, redrive."""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Column, Integer, String, Table, func, select

from eventmart.platform.consumer import ConsumerRunner, RetryPolicy
from eventmart.platform.dlq import DeadLetters
from eventmart.platform.errors import PoisonMessageError, RetryLaterError
from eventmart.platform.infra import Platform
from eventmart.platform.messages import Envelope, OutgoingRecord
from eventmart.platform.messaging import Handlers, MessageWriter, UnitOfWork, unit_of_work
from eventmart.platform.store import ServiceStore
from eventmart.platform.store.outbox import OutboxRelay
from tests.unit.sample_messages import DoThing, ThingHappened


@dataclass
class Harness:
    platform: Platform
    store: ServiceStore
    writer: MessageWriter
    effects: Table
    handlers: Handlers = field(default_factory=Handlers)
    runner: ConsumerRunner | None = None

    def send(self, *messages: DoThing) -> None:
        """Publish through an outbox and relay, as a service would."""
        with unit_of_work(self.store, self.writer) as uow:
            for m in messages:
                uow.publish(m)
        OutboxRelay(self.store.db, self.store.outbox, self.platform.bus.producer()).relay_once()

    def start(self, attempts: int = 3) -> ConsumerRunner:
        self.runner = ConsumerRunner(
            bus=self.platform.bus,
            group="things",
            handlers=self.handlers,
            store=self.store,
            writer=self.writer,
            topics=[DoThing.topic],
            poll_timeout_s=0.05,
            retry=RetryPolicy(max_attempts=attempts, initial_backoff_s=0.001, max_backoff_s=0.002),
        )
        return self.runner

    def run_until(self, done: Callable[[], bool], timeout_s: float = 10.0) -> None:
        assert self.runner is not None
        deadline = time.monotonic() + timeout_s
        while not done():
            assert time.monotonic() < deadline, "condition not reached in time"
            self.runner.step()

    def effect_rows(self) -> list[tuple[str, int]]:
        with self.store.db.read() as conn:
            return [
                tuple(r)
                for r in conn.execute(  # type: ignore[misc]
                    select(self.effects.c.thing_id, self.effects.c.amount).order_by(
                        self.effects.c.id
                    )
                )
            ]

    def record_effect(self, msg: DoThing, uow: UnitOfWork) -> None:
        uow.conn.execute(self.effects.insert().values(thing_id=msg.thing_id, amount=msg.amount))


@pytest.fixture
def h(platform: Platform) -> Harness:
    store = ServiceStore(platform.database("things"))
    effects = Table(
        "effects",
        store.metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("thing_id", String),
        Column("amount", Integer),
    )
    store.create()
    return Harness(platform, store, MessageWriter(platform.codec, "things"), effects)


def test_each_message_has_one_effect_even_when_delivered_twice(h: Harness) -> None:
    @h.handlers.on(DoThing)
    def handle(msg: DoThing, _env: Envelope, uow: UnitOfWork) -> None:
        h.record_effect(msg, uow)

    h.send(*(DoThing(thing_id=f"t{i}", amount=i) for i in range(20)))
    runner = h.start()
    h.run_until(lambda: len(h.effect_rows()) == 20)
    runner.close()
    # Rewind the group: every message arrives again, and the inbox drops each one.
    h.platform.bus.reset_group("things", [DoThing.topic])
    again = h.start()
    outcome = again.step()
    while outcome.duplicates < 20:
        outcome.duplicates += again.step().duplicates
    assert sorted(h.effect_rows()) == sorted((f"t{i}", i) for i in range(20))


def test_failing_message_is_retried_then_dead_lettered_and_others_proceed(h: Harness) -> None:
    calls: dict[str, int] = {}

    @h.handlers.on(DoThing)
    def handle(msg: DoThing, _env: Envelope, uow: UnitOfWork) -> None:
        calls[msg.thing_id] = calls.get(msg.thing_id, 0) + 1
        if msg.amount < 0:
            raise ValueError(f"amount {msg.amount} is negative")
        h.record_effect(msg, uow)

    h.send(
        DoThing(thing_id="good1", amount=1),
        DoThing(thing_id="bad", amount=-5),
        DoThing(thing_id="good2", amount=2),
    )
    h.start(attempts=3)
    h.run_until(
        lambda: len(DeadLetters(h.platform.bus).list("things")) == 1 and len(h.effect_rows()) == 2
    )
    (letter,) = DeadLetters(h.platform.bus).list("things")
    assert letter.reason == "amount -5 is negative"
    assert letter.error_type == "ValueError"
    assert letter.attempts == 3
    assert letter.key == "bad"
    assert letter.original_topic == DoThing.topic
    assert calls["bad"] >= 3
    assert sorted(h.effect_rows()) == [("good1", 1), ("good2", 2)]


def test_transient_failure_is_retried_without_dead_letter(h: Harness) -> None:
    failures = {"left": 2}

    @h.handlers.on(DoThing)
    def handle(msg: DoThing, _env: Envelope, uow: UnitOfWork) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ConnectionError("flaky")
        h.record_effect(msg, uow)

    h.send(DoThing(thing_id="t", amount=1))
    h.start(attempts=3)
    h.run_until(lambda: h.effect_rows() == [("t", 1)])
    assert DeadLetters(h.platform.bus).list("things") == []


def test_undecodable_body_and_unknown_type_go_to_dead_letters(h: Harness) -> None:
    @h.handlers.on(DoThing)
    def handle(msg: DoThing, _env: Envelope, uow: UnitOfWork) -> None:
        h.record_effect(msg, uow)

    good = h.writer.record(DoThing(thing_id="ok", amount=1))
    bad_body = OutgoingRecord(
        good.topic, "bad", struct.pack(">bI", 0, 424242) + b"\x02", good.headers
    )
    unknown = OutgoingRecord(
        good.topic,
        "odd",
        good.value,
        tuple((k, b"eventmart.test.Unheard" if k == "ce_type" else v) for k, v in good.headers),
    )
    h.platform.bus.producer().send([bad_body, unknown, good])
    h.start()
    h.run_until(
        lambda: (
            h.effect_rows() == [("ok", 1)] and len(DeadLetters(h.platform.bus).list("things")) == 2
        )
    )
    reasons = sorted(d.reason for d in DeadLetters(h.platform.bus).list("things"))
    assert "schema id 424242 is not in the registry" in reasons[0]
    assert "unknown message type 'eventmart.test.Unheard'" in reasons[1]


def test_poison_error_from_handler_skips_retries(h: Harness) -> None:
    calls = {"n": 0}

    @h.handlers.on(DoThing)
    def handle(msg: DoThing, _env: Envelope, _uow: UnitOfWork) -> None:
        calls["n"] += 1
        raise PoisonMessageError(f"thing {msg.thing_id} cannot exist")

    h.send(DoThing(thing_id="x", amount=1))
    h.start(attempts=5)
    h.run_until(lambda: len(DeadLetters(h.platform.bus).list("things")) == 1)
    assert calls["n"] == 2  # once in the batch, once alone: never the 5 retries
    assert DeadLetters(h.platform.bus).list("things")[0].attempts == 1


def test_messages_of_types_without_handler_are_skipped(h: Harness) -> None:
    @h.handlers.on(ThingHappened)
    def handle(_msg: ThingHappened, _env: Envelope, _uow: UnitOfWork) -> None:
        raise AssertionError("not called")

    h.send(DoThing(thing_id="t", amount=1))
    runner = h.start()
    h.run_until(
        lambda: sum(x.lag for x in h.platform.bus.lag("things")) == 0 and runner.processed == 1
    )
    assert DeadLetters(h.platform.bus).list("things") == []


def test_retry_later_pauses_the_partition_and_keeps_order(h: Harness) -> None:
    # Down until the runner has paused (however long joining the group takes), then
    # for 0.3 s more: the retries after the pause meet the outage too.
    down = {"until": math.inf}

    @h.handlers.on(DoThing)
    def handle(msg: DoThing, _env: Envelope, uow: UnitOfWork) -> None:
        if time.monotonic() < down["until"]:
            raise RetryLaterError("payment gateway unavailable", delay_s=0.1)
        h.record_effect(msg, uow)

    h.send(*(DoThing(thing_id="same-key", amount=i) for i in range(5)))
    runner = h.start(attempts=1)
    deadline = time.monotonic() + 30
    first = runner.step()
    while not first.paused:
        assert time.monotonic() < deadline, "RetryLaterError never paused the partition"
        first = runner.step()
    assert runner.consumer.paused() == set(first.paused)
    assert h.effect_rows() == []
    down["until"] = time.monotonic() + 0.3
    h.run_until(lambda: len(h.effect_rows()) == 5)
    assert [a for _, a in h.effect_rows()] == [0, 1, 2, 3, 4]
    assert DeadLetters(h.platform.bus).list("things") == []
    assert runner.consumer.paused() == set()


def test_redrive_sends_a_dead_letter_back_to_its_group(h: Harness) -> None:
    broken = {"on": True}

    @h.handlers.on(DoThing)
    def handle(msg: DoThing, _env: Envelope, uow: UnitOfWork) -> None:
        if broken["on"]:
            raise RuntimeError("bug in handler")
        h.record_effect(msg, uow)

    h.send(DoThing(thing_id="t", amount=3))
    h.start(attempts=1)
    letters = DeadLetters(h.platform.bus)
    h.run_until(lambda: len(letters.list("things")) == 1)
    broken["on"] = False  # the fix is deployed
    letters.redrive(letters.list("things")[0].id)
    h.run_until(lambda: h.effect_rows() == [("t", 3)])
    assert letters.list("things")[0].redriven is True


def test_emitted_messages_carry_correlation_and_causation(h: Harness) -> None:
    @h.handlers.on(DoThing)
    def handle(msg: DoThing, _env: Envelope, uow: UnitOfWork) -> None:
        uow.publish(ThingHappened(thing_id=msg.thing_id, seq=msg.amount))

    h.send(DoThing(thing_id="t", amount=1))
    h.start()
    incoming = h.platform.bus.read(DoThing.topic, _partition(h, "t"), 0, 1)[0]
    h.run_until(lambda: _outbox_count(h) == 1)
    OutboxRelay(h.store.db, h.store.outbox, h.platform.bus.producer()).relay_once()
    out = h.platform.bus.read(ThingHappened.topic, _partition(h, "t", ThingHappened.topic), 0, 1)[0]
    cause = Envelope.from_record(incoming)
    effect = Envelope.from_record(out)
    assert effect.correlation_id == cause.correlation_id
    assert effect.causation_id == cause.message_id
    assert effect.source == "things"


def _partition(h: Harness, key: str, topic: str = DoThing.topic) -> int:
    from eventmart.platform.bus import partition_for

    return partition_for(key, h.platform.bus.topics()[topic])


def _outbox_count(h: Harness) -> int:
    with h.store.db.read() as conn:
        return int(
            conn.execute(select(func.count()).select_from(h.store.outbox.table)).scalar() or 0
        )


def test_publish_latest_keeps_the_last_message_per_type_and_key_in_a_unit_of_work(
    h: Harness,
) -> None:
    with unit_of_work(h.store, h.writer) as uow:
        uow.publish_latest(ThingHappened(thing_id="a", seq=1))
        uow.publish_latest(ThingHappened(thing_id="b", seq=1))
        uow.publish(ThingHappened(thing_id="a", seq=100))  # plain publish: always emitted
        uow.publish_latest(ThingHappened(thing_id="a", seq=2))
        uow.publish_latest(DoThing(thing_id="a", amount=7))  # another type, same key
        assert [(r.key, r.topic) for r in uow.pending] == [
            ("b", ThingHappened.topic),
            ("a", ThingHappened.topic),
            ("a", ThingHappened.topic),
            ("a", DoThing.topic),
        ]
    OutboxRelay(h.store.db, h.store.outbox, h.platform.bus.producer()).relay_once()
    seqs = {
        key: [
            h.platform.codec.decode(ThingHappened.type_name(), r.value).seq  # type: ignore[attr-defined]
            for r in h.platform.bus.read(
                ThingHappened.topic, _partition(h, key, ThingHappened.topic), 0, 10
            )
            if r.key == key
        ]
        for key in ("a", "b")
    }
    assert seqs == {"a": [100, 2], "b": [1]}
    # The next unit of work starts afresh: its first level is emitted again.
    with unit_of_work(h.store, h.writer) as uow:
        uow.publish_latest(ThingHappened(thing_id="a", seq=3))
        assert len(uow.pending) == 1
