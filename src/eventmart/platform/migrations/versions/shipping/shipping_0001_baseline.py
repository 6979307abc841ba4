"""Baseline of shipping: shipments, cancelled orders.

Revision ID: shipping_0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "shipping_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("shipping",)
depends_on: str | Sequence[str] | None = None

# The tables this revision creates: a database with all of them and no version table was
# made before migrations, and is stamped with this revision.
TABLES = ("cancelled_orders", "shipments")


def upgrade() -> None:
    op.create_table(
        "cancelled_orders",
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.Column("cancelled_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_id"),
    )
    op.create_table(
        "shipments",
        sa.Column("shipment_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("tracking_code", sa.String(length=64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("dispatched_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("delivered_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("cancelled_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("cancellation_reason", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("shipment_id"),
        sa.UniqueConstraint("order_id"),
    )


def downgrade() -> None:
    op.drop_table("shipments")
    op.drop_table("cancelled_orders")
