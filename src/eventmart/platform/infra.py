"""The infrastructure a process uses, built from settings: the one place adapters are chosen.

Nothing connects here at construction; each adapter opens on first use.
"""

from __future__ import annotations

import functools

from eventmart.platform.avro import AvroCodec
from eventmart.platform.bus import Bus
from eventmart.platform.db import Database
from eventmart.platform.errors import ConfigurationError
from eventmart.platform.schemas.registry import SchemaRegistry
from eventmart.platform.settings import Settings
from eventmart.platform.tracing import SpanStore


class Platform:
    """Bus, schema registry, codec, databases and span store for one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._databases: dict[str, Database] = {}

    @functools.cached_property
    def bus(self) -> Bus:
        bus = self._bus()
        if self.settings.namespace:
            from eventmart.platform.bus.namespaced import NamespacedBus

            return NamespacedBus(bus, self.settings.namespace)
        return bus

    def _bus(self) -> Bus:
        s = self.settings
        if s.profile == "embedded":
            from eventmart.platform.bus.sqlite_log import SqliteLog

            return SqliteLog(
                s.path("bus.db"),
                default_partitions=s.partitions,
                session_timeout_s=s.session_timeout_s,
                heartbeat_interval_s=s.heartbeat_interval_s,
                poll_interval_s=s.poll_interval_s,
            )
        try:
            from eventmart.platform.bus.kafka import KafkaBus
        except ImportError as e:  # pragma: no cover - depends on the install
            raise ConfigurationError(f"the Kafka adapter cannot load: {e}") from e
        return KafkaBus(s)

    @functools.cached_property
    def registry(self) -> SchemaRegistry:
        s = self.settings
        if s.schema_registry_url:
            from eventmart.platform.schemas.http import HttpSchemaRegistry

            return HttpSchemaRegistry(s.schema_registry_url)
        from eventmart.platform.schemas.sql import SqlSchemaRegistry

        return SqlSchemaRegistry(self.database("registry"))

    @functools.cached_property
    def codec(self) -> AvroCodec:
        from eventmart.contracts import all_message_types

        return AvroCodec(self.registry, all_message_types())

    @functools.cached_property
    def spans(self) -> SpanStore:
        return SpanStore(self.database("traces"))

    def database(self, name: str) -> Database:
        db = self._databases.get(name)
        if db is None:
            db = Database(self.settings.store_url(name))
            self._databases[name] = db
        return db

    def close(self) -> None:
        if "bus" in self.__dict__:
            self.bus.close()
        for db in self._databases.values():
            db.dispose()
