"""Baseline of the chassis: event store, outbox and relay lease, inbox, timers.

Every service database has these tables (platform/store). The tables match what
`MetaData.create_all` made before migrations, so such databases are stamped with this
revision.

Revision ID: chassis_0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "chassis_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("chassis",)
depends_on: str | Sequence[str] | None = None

# The tables this revision creates: a database with all of them and no version table was
# made before migrations, and is stamped with this revision.
TABLES = ("es_events", "es_snapshots", "inbox", "outbox", "outbox_relay_lease", "timers")

# SQLite makes a rowid alias (and so an autoincrementing key) of INTEGER PRIMARY KEY only.
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "es_events",
        sa.Column("position", _ID, autoincrement=True, nullable=False),
        sa.Column("stream_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("metadata", sa.LargeBinary(), nullable=False),
        sa.Column("recorded_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("position"),
        sa.UniqueConstraint("stream_id", "version", name="uq_es_stream_version"),
    )
    op.create_index("ix_es_events_stream", "es_events", ["stream_id", "version"])
    op.create_table(
        "es_snapshots",
        sa.Column("stream_id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("stream_id"),
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(length=200), nullable=False),
        sa.Column("message_id", sa.String(length=100), nullable=False),
        sa.Column("processed_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "message_id"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("headers", sa.LargeBinary(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    if op.get_context().dialect.name == "postgresql":
        # Relays claim batches by shard on PostgreSQL only (platform/store/outbox.py).
        op.create_index("ix_outbox_shard_id", "outbox", ["shard", "id"])
    op.create_table(
        "outbox_relay_lease",
        sa.Column("name", sa.String(length=50), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "timers",
        sa.Column("timer_id", sa.String(length=200), nullable=False),
        sa.Column("due_ms", sa.BigInteger(), nullable=False),
        sa.Column("topic", sa.String(length=200), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("headers", sa.LargeBinary(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("timer_id"),
    )
    op.create_index("ix_timers_due_ms", "timers", ["due_ms"])


def downgrade() -> None:
    op.drop_table("timers")
    op.drop_table("outbox_relay_lease")
    op.drop_table("outbox")
    op.drop_table("inbox")
    op.drop_table("es_snapshots")
    op.drop_table("es_events")
