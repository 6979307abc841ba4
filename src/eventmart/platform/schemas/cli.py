"""`eventmart schemas export|check`: the contracts' Avro schemas as reviewed files, and a CI gate.

Mount with `app.add_typer(schemas_app, name="schemas")`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from eventmart.contracts import AVRO_DIR
from eventmart.platform.schemas.check import (
    COMPATIBILITY_FILE,
    CheckReport,
    check_schemas,
    export_schemas,
)
from eventmart.platform.schemas.registry import DEFAULT_COMPATIBILITY, CompatibilityMode

schemas_app = typer.Typer(
    name="schemas",
    help="Avro schemas of the published contracts: export them, check their compatibility.",
    no_args_is_help=True,
)

AvroDirOption = Annotated[
    Path,
    typer.Option(
        "--avro-dir",
        help="Directory of the exported .avsc files.",
        file_okay=False,
    ),
]


@schemas_app.command("export")
def export_command(avro_dir: AvroDirOption = AVRO_DIR) -> None:
    """Write each contract class's Avro schema to <avro-dir>/<type name>.avsc."""
    from eventmart.contracts import all_message_types  # imports every contract module

    console = Console()
    result = export_schemas(avro_dir, all_message_types())
    for path in result.written:
        console.print(f"[green]wrote[/] {path}")
    console.print(f"{len(result.written)} written, {len(result.unchanged)} unchanged in {avro_dir}")
    for path in result.stale:
        console.print(
            f"[yellow]stale[/] {path}: no contract class derives it; it was left in place — "
            "delete it yourself if the message type is retired"
        )


@schemas_app.command("check")
def check_command(
    avro_dir: AvroDirOption = AVRO_DIR,
    repo: Annotated[
        Path | None,
        typer.Option(
            help="The git checkout whose history to read (default: the one holding the avro dir)."
        ),
    ] = None,
    default_mode: Annotated[
        CompatibilityMode,
        typer.Option(
            "--default-mode",
            case_sensitive=False,
            help=f"Mode for subjects not named in {COMPATIBILITY_FILE}.",
        ),
    ] = DEFAULT_COMPATIBILITY,
) -> None:
    """Fail if an exported schema is out of date or breaks compatibility with its history."""
    from eventmart.contracts import all_message_types

    started = time.perf_counter()
    report = check_schemas(avro_dir, all_message_types(), repo=repo, default_mode=default_mode)
    print_report(report, Console(), elapsed_s=time.perf_counter() - started)
    if not report.ok:
        raise typer.Exit(1)


def print_report(report: CheckReport, console: Console, *, elapsed_s: float = 0.0) -> None:
    """A table per subject, then notes, problems and a one-line verdict."""
    if report.subjects:
        table = Table(title="Schema compatibility", show_lines=False)
        table.add_column("subject")
        table.add_column("mode")
        table.add_column("versions", justify="right")
        table.add_column("compared", justify="right")
        table.add_column("result")
        for s in report.subjects:
            verdict = "[red]incompatible[/]" if s.problems else "[green]ok[/]"
            table.add_row(s.subject, s.mode.value, str(s.versions), str(s.compared), verdict)
        console.print(table)
    for note in [*report.notes, *(n for s in report.subjects for n in s.notes)]:
        console.print(f"[dim]note:[/] {note}")
    for problem in report.problems:
        console.print(f"[red]✗[/] {problem}", soft_wrap=True)
    summary = (
        f"{len(report.subjects)} subjects checked, {report.versions_compared} versions "
        f"compared in {elapsed_s:.1f}s"
    )
    if report.ok:
        console.print(f"[green]schemas ok[/]: {summary}")
    else:
        console.print(f"[red]schemas check failed[/]: {len(report.problems)} problem(s); {summary}")
