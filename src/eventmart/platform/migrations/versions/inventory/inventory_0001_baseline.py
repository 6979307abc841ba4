"""Baseline of inventory: reservations per order and their outcomes (stock is event-sourced).

Revision ID: inventory_0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "inventory_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("inventory",)
depends_on: str | Sequence[str] | None = None

# The tables this revision creates: a database with all of them and no version table was
# made before migrations, and is stamped with this revision.
TABLES = ("order_reservations", "reservation_outcomes")


def upgrade() -> None:
    op.create_table(
        "order_reservations",
        sa.Column("order_id", sa.String(length=100), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "product_id"),
    )
    op.create_index("ix_order_reservations_due", "order_reservations", ["state", "expires_at_ms"])
    op.create_table(
        "reservation_outcomes",
        sa.Column("order_id", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=False),
        sa.Column("unavailable", sa.Text(), nullable=False),
        sa.Column("decided_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )


def downgrade() -> None:
    op.drop_table("reservation_outcomes")
    op.drop_table("order_reservations")
