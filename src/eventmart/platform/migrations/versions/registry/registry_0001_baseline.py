"""Baseline of the schema registry: schemas, subjects, versions, settings.

Revision ID: registry_0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "registry_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("registry",)
depends_on: str | Sequence[str] | None = None

# The tables this revision creates: a database with all of them and no version table was
# made before migrations, and is stamped with this revision.
TABLES = ("sr_schemas", "sr_settings", "sr_subjects", "sr_versions")


def upgrade() -> None:
    op.create_table(
        "sr_schemas",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("schema_type", sa.String(length=16), nullable=False),
        sa.Column("schema", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fingerprint"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "sr_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    op.create_table(
        "sr_subjects",
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("compatibility", sa.String(length=32), nullable=True),
        sa.PrimaryKeyConstraint("subject"),
    )
    op.create_table(
        "sr_versions",
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("schema_id", sa.Integer(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["schema_id"], ["sr_schemas.id"]),
        sa.ForeignKeyConstraint(["subject"], ["sr_subjects.subject"]),
        sa.PrimaryKeyConstraint("subject", "version"),
    )
    op.create_index("ix_sr_versions_schema_id", "sr_versions", ["schema_id"])


def downgrade() -> None:
    op.drop_table("sr_versions")
    op.drop_table("sr_subjects")
    op.drop_table("sr_settings")
    op.drop_table("sr_schemas")
