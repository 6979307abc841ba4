"""Process managers (orchestrated sagas): durable state, a step log, compensations and
deadlines, all written in the unit of work of the message that moved the saga.

A saga instance records, as it goes, the compensating message for each step that has an
effect to undo (`step(..., compensation=ReleaseStock(...))`). `compensate()` publishes them
newest first and cancels pending deadlines. A deadline is a durable timer: it fires even if
every process of the service was down when it fell due.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

import msgspec
from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    and_,
    bindparam,
    select,
)

from eventmart.platform.avro import AvroCodec
from eventmart.platform.db import DriverStatement, FastInsert, column_params, driver_insert
from eventmart.platform.errors import ConcurrencyError, EventmartError
from eventmart.platform.messages import Message, now_ms
from eventmart.platform.messaging import UnitOfWork

S = TypeVar("S", bound=msgspec.Struct)


class SagaStatus(StrEnum):
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    COMPENSATED = "COMPENSATED"


class SagaError(EventmartError):
    pass


class _Pending(msgspec.Struct, frozen=True):
    type: str
    body: bytes


@dataclass
class SagaStep:
    seq: int
    step: str
    at_ms: int
    detail: str


@dataclass
class SagaInstance(Generic[S]):
    """One running saga; change it through its methods, then `ProcessManager.save`."""

    saga_id: str
    data: S
    status: SagaStatus = SagaStatus.RUNNING
    step_name: str = "started"
    version: int = 0
    compensations: list[_Pending] = field(default_factory=list)
    deadlines: list[str] = field(default_factory=list)
    new_steps: list[SagaStep] = field(default_factory=list)
    steps_taken: int = 0
    _outbox: list[Message] = field(default_factory=list)
    _schedule: list[tuple[str, float, Message]] = field(default_factory=list)
    _cancel: list[str] = field(default_factory=list)
    _compensate_now: list[_Pending] = field(default_factory=list)

    @property
    def running(self) -> bool:
        return self.status is SagaStatus.RUNNING

    def step(
        self,
        name: str,
        *,
        send: tuple[Message, ...] | list[Message] = (),
        compensation: Message | None = None,
        detail: str = "",
    ) -> None:
        """Move to step `name`, sending `send`; `compensation` undoes this step's effect."""
        self.step_name = name
        self._log(name, detail)
        self._outbox.extend(send)
        if compensation is not None:
            self.compensations.append(
                _Pending(compensation.type_name(), msgspec.json.encode(compensation))
            )

    def set_deadline(self, name: str, delay_s: float, message: Message) -> None:
        """Deliver `message` to this service after `delay_s` unless cleared first."""
        self.deadlines.append(name)
        self._schedule.append((name, delay_s, message))

    def clear_deadline(self, name: str) -> None:
        if name in self.deadlines:
            self.deadlines.remove(name)
            self._cancel.append(name)

    def complete(self, detail: str = "") -> None:
        for name in list(self.deadlines):
            self.clear_deadline(name)
        self.status = SagaStatus.COMPLETED
        self.step_name = "completed"
        self._log("completed", detail)

    def compensate(self, reason: str) -> int:
        """Undo every recorded step, newest first; the number of compensations sent.

        Calling it on a saga already compensated sends nothing again.
        """
        if self.status is SagaStatus.COMPENSATED:
            return 0
        for name in list(self.deadlines):
            self.clear_deadline(name)
        pending = list(reversed(self.compensations))
        self.compensations.clear()
        self._compensate_now.extend(pending)
        self.status = SagaStatus.COMPENSATED
        self.step_name = "compensated"
        self._log("compensated", reason)
        return len(pending)

    def _log(self, name: str, detail: str) -> None:
        self.steps_taken += 1
        self.new_steps.append(SagaStep(self.steps_taken, name, now_ms(), detail))


class ProcessManager(Generic[S]):
    """Loads and saves instances of one saga type in the service's database."""

    def __init__(self, name: str, data_type: type[S], metadata: MetaData, codec: AvroCodec) -> None:
        self.name = name
        self.data_type = data_type
        self.codec = codec
        self.table = _saga_table(metadata)
        self.steps = _steps_table(metadata)
        t = self.table
        # Every message a saga handles loads and saves it: the statements run on the
        # driver (DriverStatement), compiled once.
        self._select = DriverStatement(
            select(
                t.c.status,
                t.c.step,
                t.c.data,
                t.c.compensations,
                t.c.deadlines,
                t.c.version,
                t.c.steps_taken,
            ).where(and_(t.c.saga_type == bindparam("b_type"), t.c.saga_id == bindparam("b_id")))
        )
        self._insert = driver_insert(t)
        self._update = DriverStatement(
            t.update()
            .where(
                and_(
                    t.c.saga_type == bindparam("b_type"),
                    t.c.saga_id == bindparam("b_id"),
                    t.c.version == bindparam("b_version"),
                )
            )
            .values(column_params(_SAVED))
        )
        self._insert_steps = FastInsert(self.steps, [c.name for c in self.steps.columns])

    def start(self, saga_id: str, data: S) -> SagaInstance[S]:
        instance: SagaInstance[S] = SagaInstance(saga_id=saga_id, data=data)
        instance._log("started", "")
        return instance

    def load(self, uow: UnitOfWork, saga_id: str) -> SagaInstance[S] | None:
        row = self._select.first(uow.conn, {"b_type": self.name, "b_id": saga_id})
        if row is None:
            return None
        status, step, data, compensations, deadlines, version, steps_taken = row
        return SagaInstance(
            saga_id=saga_id,
            data=msgspec.json.decode(data, type=self.data_type),
            status=SagaStatus(status),
            step_name=step,
            version=version,
            compensations=msgspec.json.decode(compensations, type=list[_Pending]),
            deadlines=msgspec.json.decode(deadlines, type=list[str]),
            steps_taken=steps_taken,
        )

    def save(self, uow: UnitOfWork, instance: SagaInstance[S]) -> None:
        """Persist the instance and emit what its steps asked for, in the caller's
        transaction. Raises ConcurrencyError if another transaction saved it first."""
        values = {
            "status": instance.status.value,
            "step": instance.step_name,
            "data": msgspec.json.encode(instance.data),
            "compensations": msgspec.json.encode(instance.compensations),
            "deadlines": msgspec.json.encode(instance.deadlines),
            "version": instance.version + 1,
            "steps_taken": instance.steps_taken,
            "updated_at_ms": now_ms(),
        }
        if instance.version == 0:
            self._insert.run(
                uow.conn,
                {
                    "saga_type": self.name,
                    "saga_id": instance.saga_id,
                    "started_at_ms": now_ms(),
                    **values,
                },
            )
        else:
            where = {"b_type": self.name, "b_id": instance.saga_id, "b_version": instance.version}
            updated = self._update.run(uow.conn, {**where, **values})
            if updated != 1:
                raise ConcurrencyError(f"saga {instance.saga_id}", instance.version, -1)
        instance.version += 1
        if instance.new_steps:
            self._insert_steps.execute(
                uow.conn,
                [
                    (self.name, instance.saga_id, s.seq, s.step, s.at_ms, s.detail)
                    for s in instance.new_steps
                ],
            )
            instance.new_steps.clear()
        for message in instance._outbox:
            uow.publish(message)
        instance._outbox.clear()
        for name in instance._cancel:
            uow.cancel_timer(self._timer_id(instance.saga_id, name))
        instance._cancel.clear()
        for name, delay, message in instance._schedule:
            uow.schedule(self._timer_id(instance.saga_id, name), delay, message)
        instance._schedule.clear()
        for pending in instance._compensate_now:
            cls = self.codec.known_type(pending.type)
            if cls is None:
                raise SagaError(f"compensation type {pending.type} is not known to this service")
            uow.publish(msgspec.json.decode(pending.body, type=cls))
        instance._compensate_now.clear()

    def history(self, uow: UnitOfWork, saga_id: str) -> list[SagaStep]:
        s = self.steps
        rows = uow.conn.execute(
            select(s.c.seq, s.c.step, s.c.at_ms, s.c.detail)
            .where(and_(s.c.saga_type == self.name, s.c.saga_id == saga_id))
            .order_by(s.c.seq)
        ).all()
        return [SagaStep(*r) for r in rows]

    def _timer_id(self, saga_id: str, name: str) -> str:
        return f"{self.name}:{saga_id}:{name}"


# The columns a save writes (the key and started_at_ms are written once).
_SAVED = (
    "status",
    "step",
    "data",
    "compensations",
    "deadlines",
    "version",
    "steps_taken",
    "updated_at_ms",
)


def _saga_table(metadata: MetaData) -> Table:
    if "sagas" in metadata.tables:
        return metadata.tables["sagas"]
    return Table(
        "sagas",
        metadata,
        Column("saga_type", String(100), primary_key=True),
        Column("saga_id", String(100), primary_key=True),
        Column("status", String(20), nullable=False),
        Column("step", String(100), nullable=False),
        Column("data", LargeBinary, nullable=False),
        Column("compensations", LargeBinary, nullable=False),
        Column("deadlines", LargeBinary, nullable=False),
        Column("version", Integer, nullable=False),
        Column("steps_taken", Integer, nullable=False),
        Column("started_at_ms", BigInteger, nullable=False),
        Column("updated_at_ms", BigInteger, nullable=False),
    )


def _steps_table(metadata: MetaData) -> Table:
    if "saga_steps" in metadata.tables:
        return metadata.tables["saga_steps"]
    return Table(
        "saga_steps",
        metadata,
        Column("saga_type", String(100), primary_key=True),
        Column("saga_id", String(100), primary_key=True),
        Column("seq", Integer, primary_key=True),
        Column("step", String(100), nullable=False),
        Column("at_ms", BigInteger, nullable=False),
        Column("detail", Text, nullable=False),
    )
