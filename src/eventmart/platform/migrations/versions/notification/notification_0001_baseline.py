"""Baseline of notification: customers, mails sent.

Revision ID: notification_0001
Revises:
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "notification_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("notification",)
depends_on: str | Sequence[str] | None = None

# The tables this revision creates: a database with all of them and no version table was
# made before migrations, and is stamped with this revision.
TABLES = ("customers", "mails")


def upgrade() -> None:
    op.create_table(
        "customers",
        sa.Column("user_id", sa.String(length=64), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("user_id"),
    )
    op.create_table(
        "mails",
        sa.Column("message_id", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("to", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("file", sa.String(length=300), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("message_id"),
        sa.UniqueConstraint("order_id", "kind", name="uq_mails_order_kind"),
    )
    op.create_index("ix_mails_to", "mails", ["to", "created_at_ms"])


def downgrade() -> None:
    op.drop_table("mails")
    op.drop_table("customers")
