"""Stores a service keeps in its own database: event store, outbox, inbox, timers."""

from __future__ import annotations

import logging

from sqlalchemy import MetaData, inspect

from eventmart.platform.db import Database
from eventmart.platform.migrations import (
    CHASSIS,
    MigrationError,
    Migrations,
    Outcome,
    safe_url,
    version_table,
)
from eventmart.platform.store.eventstore import SqlEventStore
from eventmart.platform.store.inbox import Inbox
from eventmart.platform.store.outbox import Outbox
from eventmart.platform.store.timers import Timers

log = logging.getLogger(__name__)


class ServiceStore:
    """A service's database with the chassis tables; services add their own tables to
    `metadata` before calling `create()`.

    `migrations` names the service's own branch of migrations
    (`platform/migrations/versions/<name>/`), which must create exactly the tables the
    service adds. A store without one (the read side's, which adds no tables; tests and
    tools) gets the chassis migrations, and `create_all` for any tables it added.
    """

    def __init__(self, db: Database, migrations: str | None = None) -> None:
        self.db = db
        self.metadata = MetaData()
        version_table(self.metadata)
        self.events = SqlEventStore(self.metadata)
        self.outbox = Outbox(self.metadata)
        self.inbox = Inbox(self.metadata)
        self.timers = Timers(self.metadata, self.outbox)
        self._chassis = frozenset(self.metadata.tables)
        self.branch = migrations
        self.migrations = Migrations(db, [CHASSIS] if migrations is None else [CHASSIS, migrations])

    def create(self) -> None:
        """Bring the database to the schema of this code (see `migrate`)."""
        self.migrate()

    def migrate(self) -> Outcome:
        """Upgrade the database to the heads of its migrations; safe when several
        processes start at once. Raises MigrationError when a table of a service with its
        own migrations is still missing afterwards (a Table added without a migration)."""
        outcome = self.migrations.upgrade()
        if outcome.changed:
            log.info(
                "%s migrated: %s -> %s",
                safe_url(self.db.url),
                ", ".join(outcome.before) or "empty",
                ", ".join(outcome.after),
            )
        own = [t for t in self.metadata.sorted_tables if t.name not in self._chassis]
        if not own:
            return outcome
        if self.branch is None:
            self.metadata.create_all(self.db.engine, tables=own)
            return outcome
        with self.db.read() as conn:
            missing = {t.name for t in own} - set(inspect(conn).get_table_names())
        if missing:
            raise MigrationError(
                f"the {self.branch} database has no table {', '.join(sorted(missing))}: "
                f"add a migration under platform/migrations/versions/{self.branch}/ "
                "(python -m eventmart.platform.migrations.revision)"
            )
        return outcome
