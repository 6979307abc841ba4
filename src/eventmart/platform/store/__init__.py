"""Stores a service keeps in its own database: event store, outbox, inbox, timers."""

from __future__ import annotations

from sqlalchemy import MetaData

from eventmart.platform.db import Database
from eventmart.platform.store.eventstore import SqlEventStore
from eventmart.platform.store.inbox import Inbox
from eventmart.platform.store.outbox import Outbox
from eventmart.platform.store.timers import Timers


class ServiceStore:
    """A service's database with the chassis tables; services add their own tables to
    `metadata` before calling `create()`."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.metadata = MetaData()
        self.events = SqlEventStore(self.metadata)
        self.outbox = Outbox(self.metadata)
        self.inbox = Inbox(self.metadata)
        self.timers = Timers(self.metadata, self.outbox)

    def create(self) -> None:
        self.db.create_all(self.metadata)
