"""Baseline of basket: prices, baskets and their lines, checkouts.

Revision ID: basket_0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "basket_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("basket",)
depends_on: str | Sequence[str] | None = None

# The tables this revision creates: a database with all of them and no version table was
# made before migrations, and is stamped with this revision.
TABLES = ("basket_items", "baskets", "checkouts", "products")


def upgrade() -> None:
    op.create_table(
        "basket_items",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("added_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "product_id"),
    )
    op.create_table(
        "baskets",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
    )
    op.create_table(
        "checkouts",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "idempotency_key"),
        sa.UniqueConstraint("order_id"),
    )
    op.create_table(
        "products",
        sa.Column("product_id", sa.String(length=64), nullable=False),
        sa.Column("sku", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("price_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.PrimaryKeyConstraint("product_id"),
    )


def downgrade() -> None:
    op.drop_table("products")
    op.drop_table("checkouts")
    op.drop_table("baskets")
    op.drop_table("basket_items")
