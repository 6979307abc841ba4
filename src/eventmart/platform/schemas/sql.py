"""The schema registry on a SQL database: SQLite on the embedded profile, PostgreSQL otherwise.

Four tables: `sr_schemas` (one row per distinct canonical schema text: the global id),
`sr_subjects` (a row per subject, holding its compatibility override and serving as the
lock that serializes registrations under that subject), `sr_versions` (subject, version
-> schema id, soft-deleted flag) and `sr_settings` (the global compatibility mode).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import avro.schema
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError

from eventmart.platform.db import Database, dialect_insert
from eventmart.platform.errors import (
    IncompatibleSchemaError,
    SchemaNotFoundError,
    SchemaRegistryError,
    SubjectNotFoundError,
    VersionNotFoundError,
)
from eventmart.platform.migrations import REGISTRY, Migrations, version_table
from eventmart.platform.schemas.compatibility import (
    LabeledSchema,
    ParsedSchema,
    check_against,
    check_compatibility,
    schemas_to_check,
)
from eventmart.platform.schemas.registry import (
    DEFAULT_COMPATIBILITY,
    CompatibilityMode,
    RegisteredSchema,
    SchemaRegistry,
)

metadata = MetaData()
version_table(metadata)  # kept by the migrations (platform/migrations/versions/registry)

sr_schemas = Table(
    "sr_schemas",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # Unique on a hash, not the text: PostgreSQL cannot index long texts in a b-tree.
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("schema_type", String(16), nullable=False),
    Column("schema", Text, nullable=False),
    sqlite_autoincrement=True,
)

sr_subjects = Table(
    "sr_subjects",
    metadata,
    Column("subject", String, primary_key=True),
    Column("compatibility", String(32), nullable=True),
)

sr_versions = Table(
    "sr_versions",
    metadata,
    Column("subject", String, ForeignKey(sr_subjects.c.subject), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("schema_id", Integer, ForeignKey(sr_schemas.c.id), nullable=False),
    Column("deleted", Boolean, nullable=False),
    Index("ix_sr_versions_schema_id", "schema_id"),
)

sr_settings = Table(
    "sr_settings",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", String(255), nullable=False),
)

_GLOBAL_COMPATIBILITY = "compatibility"
_INVALID_VERSION = 42202


def parse_version(version: int | str) -> int | None:
    """A version number, or None for the latest; `-1` means latest, as in Confluent's API."""
    if isinstance(version, str):
        if version == "latest":
            return None
        try:
            number = int(version)
        except ValueError:
            number = 0
    else:
        number = version
    if number == -1:
        return None
    if not 1 <= number <= 2**31 - 1:
        raise SchemaRegistryError(
            f"The specified version '{version}' is not a valid version id. Allowed values are "
            'between [1, 2^31-1] and the string "latest"',
            _INVALID_VERSION,
        )
    return number


class SqlSchemaRegistry(SchemaRegistry):
    """The registry port on SQLAlchemy Core, safe for concurrent writers in several processes.

    Guarantees, beyond the port's: one global id per distinct canonical schema text, shared
    by every subject that registers it; registrations under one subject are serialized by a
    row lock on the subject (SQLite's BEGIN IMMEDIATE serializes all writers), so two
    processes registering the same new schema get one version and one id; version numbers
    only grow, also across soft deletes; soft-deleted versions keep their schema ids
    readable, so data written with them still decodes.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._ready = False
        self._lock = threading.Lock()
        # Schema ids name one text forever, so their parsed form never goes stale.
        self._parsed: dict[int, avro.schema.Schema] = {}

    # Tables are migrated on first use rather than in __init__: nothing connects early.
    def _ensure_tables(self) -> None:
        if self._ready:
            return
        with self._lock:
            if self._ready:
                return
            migrations = Migrations(self._db, [REGISTRY])
            for attempt in range(3):
                try:
                    # Serialized between processes by the migration lock.
                    migrations.upgrade()
                    break
                except DBAPIError:
                    # A brand-new SQLite file still being set up by another process.
                    if attempt == 2:
                        raise
                    time.sleep(0.05 * (attempt + 1))
            self._ready = True

    def create_tables(self) -> None:
        """Create the registry's tables now (they are otherwise created on first use)."""
        self._ensure_tables()

    # --- writes -------------------------------------------------------------------------

    def register(self, subject: str, schema: str) -> int:
        parsed = ParsedSchema.parse(schema)
        self._ensure_tables()
        with self._db.transaction() as conn:
            self._lock_subject(conn, subject)
            live = self._live_versions(conn, subject)
            for row in live:
                if row.fingerprint == parsed.fingerprint:
                    return int(row.schema_id)
            mode = self._mode(conn, subject)
            earlier = [
                LabeledSchema(f"version {row.version}", self._avro(row.schema_id, row.schema))
                for row in schemas_to_check(mode, live)
            ]
            reasons = check_compatibility(parsed.schema, earlier, mode)
            if reasons:
                raise IncompatibleSchemaError(subject, mode.value, reasons)
            schema_id = self._schema_id(conn, parsed)
            last = conn.execute(
                select(func.max(sr_versions.c.version)).where(sr_versions.c.subject == subject)
            ).scalar()
            conn.execute(
                sr_versions.insert().values(
                    subject=subject,
                    version=(last or 0) + 1,
                    schema_id=schema_id,
                    deleted=False,
                )
            )
            return schema_id

    def set_compatibility(self, mode: CompatibilityMode, subject: str | None = None) -> None:
        mode = CompatibilityMode(mode)
        self._ensure_tables()
        with self._db.transaction() as conn:
            if subject is None:
                stmt = dialect_insert(conn, sr_settings).values(
                    key=_GLOBAL_COMPATIBILITY, value=mode.value
                )
                conn.execute(
                    stmt.on_conflict_do_update(index_elements=["key"], set_={"value": mode.value})
                )
            else:
                stmt = dialect_insert(conn, sr_subjects).values(
                    subject=subject, compatibility=mode.value
                )
                conn.execute(
                    stmt.on_conflict_do_update(
                        index_elements=["subject"], set_={"compatibility": mode.value}
                    )
                )

    def delete_subject(self, subject: str) -> list[int]:
        self._ensure_tables()
        with self._db.transaction() as conn:
            versions = [row.version for row in self._live_versions(conn, subject)]
            if not versions:
                raise SubjectNotFoundError(subject)
            conn.execute(
                update(sr_versions)
                .where(sr_versions.c.subject == subject, sr_versions.c.version.in_(versions))
                .values(deleted=True)
            )
            return versions

    def delete_version(self, subject: str, version: int | str) -> int:
        wanted = parse_version(version)
        self._ensure_tables()
        with self._db.transaction() as conn:
            row = self._resolve(conn, subject, wanted, version)
            conn.execute(
                update(sr_versions)
                .where(sr_versions.c.subject == subject, sr_versions.c.version == row.version)
                .values(deleted=True)
            )
            return int(row.version)

    # --- reads --------------------------------------------------------------------------

    def lookup(self, subject: str, schema: str) -> RegisteredSchema | None:
        parsed = ParsedSchema.parse(schema)
        self._ensure_tables()
        with self._db.read() as conn:
            for row in self._live_versions(conn, subject):
                if row.fingerprint == parsed.fingerprint:
                    return _registered(subject, row)
        return None

    def get_schema(self, schema_id: int) -> str:
        self._ensure_tables()
        with self._db.read() as conn:
            text = conn.execute(
                select(sr_schemas.c.schema).where(sr_schemas.c.id == schema_id)
            ).scalar()
        if text is None:
            raise SchemaNotFoundError(str(schema_id))
        return str(text)

    def get_version(self, subject: str, version: int | str = "latest") -> RegisteredSchema:
        wanted = parse_version(version)
        self._ensure_tables()
        with self._db.read() as conn:
            return _registered(subject, self._resolve(conn, subject, wanted, version))

    def versions(self, subject: str) -> list[int]:
        self._ensure_tables()
        with self._db.read() as conn:
            versions = [int(row.version) for row in self._live_versions(conn, subject)]
        if not versions:
            raise SubjectNotFoundError(subject)
        return versions

    def subjects(self) -> list[str]:
        self._ensure_tables()
        with self._db.read() as conn:
            rows = conn.execute(
                select(sr_versions.c.subject)
                .where(sr_versions.c.deleted.is_(False))
                .distinct()
                .order_by(sr_versions.c.subject)
            )
            return [str(row.subject) for row in rows]

    def schema_usages(self, schema_id: int) -> list[tuple[str, int]]:
        """The live (subject, version) pairs holding a schema id; SchemaNotFoundError if unknown."""
        self._ensure_tables()
        with self._db.read() as conn:
            known = conn.execute(select(sr_schemas.c.id).where(sr_schemas.c.id == schema_id))
            if known.first() is None:
                raise SchemaNotFoundError(str(schema_id))
            rows = conn.execute(
                select(sr_versions.c.subject, sr_versions.c.version)
                .where(sr_versions.c.schema_id == schema_id, sr_versions.c.deleted.is_(False))
                .order_by(sr_versions.c.subject, sr_versions.c.version)
            )
            return [(str(row.subject), int(row.version)) for row in rows]

    def compatibility(self, subject: str | None = None) -> CompatibilityMode:
        self._ensure_tables()
        with self._db.read() as conn:
            return self._mode(conn, subject)

    def subject_compatibility(self, subject: str) -> CompatibilityMode | None:
        """The subject's own mode, or None when it follows the global mode."""
        self._ensure_tables()
        with self._db.read() as conn:
            value = conn.execute(
                select(sr_subjects.c.compatibility).where(sr_subjects.c.subject == subject)
            ).scalar()
        return CompatibilityMode(value) if value else None

    def check_compatibility(
        self, subject: str, schema: str, version: int | str | None = None
    ) -> list[str]:
        parsed = ParsedSchema.parse(schema)
        wanted = parse_version(version) if version is not None else None
        self._ensure_tables()
        with self._db.read() as conn:
            mode = self._mode(conn, subject)
            live = self._live_versions(conn, subject)
            if version is None:
                earlier = [
                    LabeledSchema(f"version {row.version}", self._avro(row.schema_id, row.schema))
                    for row in schemas_to_check(mode, live)
                ]
                return check_compatibility(parsed.schema, earlier, mode)
            if wanted is None and not live:
                return []  # nothing registered yet: any first version is compatible
            row = self._resolve(conn, subject, wanted, version)
            old = LabeledSchema(f"version {row.version}", self._avro(row.schema_id, row.schema))
            return check_against(parsed.schema, old, mode)

    # --- helpers ------------------------------------------------------------------------

    def _lock_subject(self, conn: Connection, subject: str) -> None:
        conn.execute(
            dialect_insert(conn, sr_subjects)
            .values(subject=subject, compatibility=None)
            .on_conflict_do_nothing(index_elements=["subject"])
        )
        # SQLite renders no FOR UPDATE; its BEGIN IMMEDIATE already holds the write lock.
        conn.execute(
            select(sr_subjects.c.subject).where(sr_subjects.c.subject == subject).with_for_update()
        )

    def _live_versions(self, conn: Connection, subject: str) -> Sequence[Any]:
        return conn.execute(
            select(
                sr_versions.c.version,
                sr_versions.c.schema_id,
                sr_schemas.c.fingerprint,
                sr_schemas.c.schema,
            )
            .join(sr_schemas, sr_schemas.c.id == sr_versions.c.schema_id)
            .where(sr_versions.c.subject == subject, sr_versions.c.deleted.is_(False))
            .order_by(sr_versions.c.version)
        ).all()

    def _resolve(self, conn: Connection, subject: str, wanted: int | None, asked: object) -> Any:
        live = self._live_versions(conn, subject)
        if not live:
            raise SubjectNotFoundError(subject)
        if wanted is None:
            return live[-1]
        for row in live:
            if row.version == wanted:
                return row
        raise VersionNotFoundError(subject, asked)

    def _mode(self, conn: Connection, subject: str | None) -> CompatibilityMode:
        if subject is not None:
            value = conn.execute(
                select(sr_subjects.c.compatibility).where(sr_subjects.c.subject == subject)
            ).scalar()
            if value:
                return CompatibilityMode(value)
        value = conn.execute(
            select(sr_settings.c.value).where(sr_settings.c.key == _GLOBAL_COMPATIBILITY)
        ).scalar()
        return CompatibilityMode(value) if value else DEFAULT_COMPATIBILITY

    def _schema_id(self, conn: Connection, parsed: ParsedSchema) -> int:
        by_fingerprint = select(sr_schemas.c.id).where(
            sr_schemas.c.fingerprint == parsed.fingerprint
        )
        schema_id = conn.execute(by_fingerprint).scalar()
        if schema_id is None:
            # Insert-or-ignore then read: under PostgreSQL a concurrent insert of the same
            # fingerprint makes this wait for the other transaction and then see its row.
            # (Reading first keeps ids dense: an ignored insert still uses up an id.)
            conn.execute(
                dialect_insert(conn, sr_schemas)
                .values(fingerprint=parsed.fingerprint, schema_type="AVRO", schema=parsed.text)
                .on_conflict_do_nothing(index_elements=["fingerprint"])
            )
            schema_id = conn.execute(by_fingerprint).scalar_one()
        self._parsed.setdefault(int(schema_id), parsed.schema)
        return int(schema_id)

    def _avro(self, schema_id: int, text: str) -> avro.schema.Schema:
        parsed = self._parsed.get(schema_id)
        if parsed is None:
            parsed = ParsedSchema.parse(text).schema
            self._parsed[schema_id] = parsed
        return parsed


def _registered(subject: str, row: Any) -> RegisteredSchema:
    return RegisteredSchema(
        subject=subject,
        version=int(row.version),
        schema_id=int(row.schema_id),
        schema=str(row.schema),
    )
