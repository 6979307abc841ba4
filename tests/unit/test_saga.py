"""Process managers: durable state, compensations newest first, deadlines that survive a
restart, optimistic concurrency."""

from __future__ import annotations

import time

import msgspec
import pytest
from sqlalchemy import select

from eventmart.platform.errors import ConcurrencyError
from eventmart.platform.infra import Platform
from eventmart.platform.messages import OutgoingRecord
from eventmart.platform.messaging import MessageWriter, unit_of_work
from eventmart.platform.saga import ProcessManager, SagaStatus
from eventmart.platform.store import ServiceStore
from tests.unit.sample_messages import DoThing, ThingHappened, UndoThing


class Data(msgspec.Struct):
    thing_id: str
    amount: int = 0


def _service(platform: Platform) -> tuple[ServiceStore, ProcessManager[Data], MessageWriter]:
    store = ServiceStore(platform.database("sagas"))
    pm = ProcessManager("demo", Data, store.metadata, platform.codec)
    store.create()
    return store, pm, MessageWriter(platform.codec, "sagas")


def _outbox(store: ServiceStore) -> list[OutgoingRecord]:
    t = store.outbox.table
    with store.db.read() as conn:
        rows = conn.execute(select(t.c.topic, t.c.key, t.c.value).order_by(t.c.id)).all()
    return [OutgoingRecord(r.topic, r.key, r.value) for r in rows]


def _decode(platform: Platform, record: OutgoingRecord) -> object:
    for cls in (DoThing, UndoThing, ThingHappened):
        try:
            return platform.codec.decode(cls.type_name(), record.value)
        except Exception:
            continue
    raise AssertionError("undecodable")


def test_steps_compensations_and_history(platform: Platform) -> None:
    store, pm, writer = _service(platform)
    with unit_of_work(store, writer) as uow:
        saga = pm.start("s1", Data("t1"))
        saga.step(
            "reserve",
            send=[DoThing(thing_id="t1", amount=1)],
            compensation=UndoThing(thing_id="t1-first"),
        )
        saga.step(
            "charge",
            send=[DoThing(thing_id="t1", amount=2)],
            compensation=UndoThing(thing_id="t1-second"),
        )
        pm.save(uow, saga)
    with unit_of_work(store, writer) as uow:
        loaded = pm.load(uow, "s1")
        assert loaded is not None
        assert loaded.step_name == "charge"
        assert loaded.compensate("declined") == 2
        assert loaded.compensate("declined again") == 0  # idempotent
        pm.save(uow, loaded)
    records = _outbox(store)
    decoded = [_decode(platform, r) for r in records]
    assert decoded == [
        DoThing(thing_id="t1", amount=1),
        DoThing(thing_id="t1", amount=2),
        UndoThing(thing_id="t1-second"),
        UndoThing(thing_id="t1-first"),
    ]
    with unit_of_work(store, writer) as uow:
        final = pm.load(uow, "s1")
        assert final is not None and final.status is SagaStatus.COMPENSATED
        steps = [s.step for s in pm.history(uow, "s1")]
    assert steps == ["started", "reserve", "charge", "compensated"]


def test_deadline_fires_after_a_restart_and_is_cancelled_by_completion(platform: Platform) -> None:
    store, pm, writer = _service(platform)
    with unit_of_work(store, writer) as uow:
        late = pm.start("late", Data("a"))
        late.set_deadline("reply", 0.05, UndoThing(thing_id="late-deadline"))
        pm.save(uow, late)
        done = pm.start("done", Data("b"))
        done.set_deadline("reply", 0.05, UndoThing(thing_id="done-deadline"))
        pm.save(uow, done)
    with unit_of_work(store, writer) as uow:
        finished = pm.load(uow, "done")
        assert finished is not None
        finished.complete()
        pm.save(uow, finished)
    time.sleep(0.1)
    # A new process: fresh objects on the same database.
    store2, _pm2, _ = _service(platform)
    with store2.db.transaction() as conn:
        assert store2.timers.fire_due(conn) == 1
    assert [_decode(platform, r) for r in _outbox(store2)] == [UndoThing(thing_id="late-deadline")]


def test_stale_save_is_a_concurrency_error(platform: Platform) -> None:
    store, pm, writer = _service(platform)
    with unit_of_work(store, writer) as uow:
        pm.save(uow, pm.start("s", Data("t")))
    with unit_of_work(store, writer) as uow:
        a = pm.load(uow, "s")
    with unit_of_work(store, writer) as uow:
        b = pm.load(uow, "s")
        assert b is not None
        b.step("first")
        pm.save(uow, b)
    assert a is not None
    a.step("second")
    with pytest.raises(ConcurrencyError), unit_of_work(store, writer) as uow:
        pm.save(uow, a)
