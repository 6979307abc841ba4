"""Write a new migration for a branch, drafted by Alembic's autogenerate (a developer tool).

    python -m eventmart.platform.migrations.revision ordering "add the refunds table"

It upgrades a scratch SQLite database to the branch's head, compares it with the code's
tables (the service's `store.metadata`, the chassis', or the registry's) and writes
`versions/<branch>/<branch>_<NNNN>_<slug>.py` with the differences as operations. Review
the draft: autogenerate cannot see renames, and it compares on SQLite, so anything
PostgreSQL-only (e.g. an index with `ddl_if(dialect="postgresql")`) is for you to add. The
drift test (tests/unit/test_migrations.py, tests/contract/test_migrations.py) then checks
the result on both databases.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import MetaData

from eventmart.platform.db import Database
from eventmart.platform.migrations import (
    CHASSIS,
    REGISTRY,
    VERSION_TABLE,
    VERSIONS,
    MigrationError,
    Migrations,
    has_branch,
    schema_filter,
)


def database_branches(branch: str) -> list[str]:
    """The branches of the database `branch` belongs to."""
    return [branch] if branch in (CHASSIS, REGISTRY) else [CHASSIS, branch]


def target_metadata(branch: str, data_dir: Path) -> tuple[MetaData, set[str]]:
    """The code's tables for the database of `branch`, and those that belong to it."""
    from eventmart.platform.store import ServiceStore

    scratch = Database(f"sqlite:///{data_dir / 'metadata.db'}")
    chassis = set(ServiceStore(scratch).metadata.tables)
    if branch == CHASSIS:
        md = ServiceStore(scratch).metadata
        return md, chassis
    if branch == REGISTRY:
        from eventmart.platform.schemas.sql import metadata

        return metadata, set(metadata.tables)
    from eventmart.platform.infra import Platform
    from eventmart.platform.settings import Settings
    from eventmart.services import build_service

    overrides: dict[str, Any] = {"data_dir": data_dir, "profile": "embedded"}
    platform = Platform(Settings(**overrides))
    store = build_service(branch, platform).store
    if store is None:
        raise MigrationError(f"service {branch} has no store")
    return store.metadata, set(store.metadata.tables) - chassis


def new_revision(branch: str, message: str, *, autogenerate: bool = True) -> Path:
    """Write the next revision of `branch` (its baseline if it has none yet)."""
    folder = VERSIONS / branch
    first = not has_branch(branch)
    if first:
        folder.mkdir()
        (folder / "__init__.py").write_text(f'"""Migrations of the {branch} branch."""\n')
    number = len(list(folder.glob(f"{branch}_[0-9][0-9][0-9][0-9]_*.py"))) + 1
    with tempfile.TemporaryDirectory() as tmp:
        md, own = target_metadata(branch, Path(tmp))

        drafted = schema_filter("sqlite")

        def include(obj: Any, name: str | None, type_: str, reflected: bool, other: Any) -> bool:
            if type_ == "table" and name not in own:
                return False
            return drafted(obj, name, type_, reflected, other)

        scratch = Database(f"sqlite:///{Path(tmp) / 'scratch.db'}")
        migrations = Migrations(scratch, database_branches(branch))
        migrations.upgrade()
        with migrations.locked() as conn:
            script = command.revision(
                migrations.config(conn, target_metadata=md, include_object=include),
                message,
                autogenerate=autogenerate,
                rev_id=f"{branch}_{number:04d}",
                head="base" if number == 1 else f"{branch}@head",
                branch_label=branch if number == 1 else None,
                version_path=str(folder),
            )
        scratch.dispose()
    assert script is not None and not isinstance(script, list)
    path = Path(script.path)
    if number == 1:  # a baseline lists its tables, for adopting databases made without it
        listed = ", ".join(f'"{t}"' for t in sorted(own - {VERSION_TABLE}))
        text = path.read_text()
        marker = "depends_on: str | Sequence[str] | None = None\n"
        tables = f"\n# The tables this revision creates.\nTABLES = ({listed},)\n"
        path.write_text(text.replace(marker, marker + tables))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("branch", help="chassis, registry, or a service with tables")
    parser.add_argument("message", help="what the migration does, e.g. 'add refunds'")
    parser.add_argument("--empty", action="store_true", help="no autogenerate: blank draft")
    args = parser.parse_args()
    path = new_revision(args.branch, args.message, autogenerate=not args.empty)
    print(f"wrote {path}; format it (make fmt), review it, then run tests/*/test_migrations.py")


if __name__ == "__main__":
    main()
