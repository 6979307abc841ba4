"""Alembic's environment, run by `eventmart.platform.migrations.Migrations` with the
connection it passes; see that module."""

from alembic import context

from eventmart.platform.migrations import run_environment

run_environment(context)
