"""The event store keeps one index on (stream_id, version): the unique constraint's.

The baseline also had `ix_es_events_stream` on the same two columns. Every appended event
dirtied a page of both, and with random stream ids those pages are all over the file:
writing them out was about half the time of an append commit (cProfile in `make bench`).
Reads by stream use the unique constraint's index just as well.

Revision ID: chassis_0002
Revises: chassis_0001
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "chassis_0002"
down_revision: str | Sequence[str] | None = "chassis_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_es_events_stream", table_name="es_events")


def downgrade() -> None:
    op.create_index("ix_es_events_stream", "es_events", ["stream_id", "version"])
