"""Messages used by the chassis' unit tests (not part of the published language)."""

from __future__ import annotations

import datetime as dt

import msgspec

from eventmart.platform.messages import Command, Event


class Line(msgspec.Struct, frozen=True):
    sku: str
    quantity: int
    price_cents: int


class ThingHappened(Event, frozen=True, kw_only=True):
    namespace = "eventmart.test"
    topic = "test.things"
    key_field = "thing_id"

    thing_id: str
    seq: int
    lines: list[Line] = []
    note: str | None = None
    at: dt.datetime | None = None


class DoThing(Command, frozen=True, kw_only=True):
    namespace = "eventmart.test"
    topic = "test.commands"
    key_field = "thing_id"

    thing_id: str
    amount: int


class UndoThing(Command, frozen=True, kw_only=True):
    namespace = "eventmart.test"
    topic = "test.commands"
    key_field = "thing_id"

    thing_id: str
