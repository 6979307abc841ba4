"""Baseline of ordering: the checkout saga's state and steps (orders are event-sourced).

Revision ID: ordering_0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "ordering_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("ordering",)
depends_on: str | Sequence[str] | None = None

# The tables this revision creates: a database with all of them and no version table was
# made before migrations, and is stamped with this revision.
TABLES = ("saga_steps", "sagas")


def upgrade() -> None:
    op.create_table(
        "saga_steps",
        sa.Column("saga_type", sa.String(length=100), nullable=False),
        sa.Column("saga_id", sa.String(length=100), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("saga_type", "saga_id", "seq"),
    )
    op.create_table(
        "sagas",
        sa.Column("saga_type", sa.String(length=100), nullable=False),
        sa.Column("saga_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("step", sa.String(length=100), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("compensations", sa.LargeBinary(), nullable=False),
        sa.Column("deadlines", sa.LargeBinary(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("steps_taken", sa.Integer(), nullable=False),
        sa.Column("started_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("saga_type", "saga_id"),
    )


def downgrade() -> None:
    op.drop_table("sagas")
    op.drop_table("saga_steps")
