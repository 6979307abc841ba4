"""`eventmart stack up|down|status`: the Typer sub-app the main CLI mounts as `stack`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from eventmart.stack import api
from eventmart.stack.base import EngineStatus, StackError

stack_app = typer.Typer(
    no_args_is_help=True,
    help="Local Kafka, PostgreSQL, Cassandra and Temporal as plain processes (no Docker).",
)

console = Console()
errors = Console(stderr=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Data directory; engines live in DATA_DIR/stack/<engine>/ "
        "(default: EVENTMART_DATA_DIR or ./.eventmart).",
        file_okay=False,
    ),
]
EnginesArgument = Annotated[
    list[str] | None,
    typer.Argument(
        help=f"Engines to act on: {', '.join(api.ENGINES)} (default: all).",
        show_default=False,
    ),
]
STATE_STYLE = {"running": "green", "starting": "yellow", "stopped": "dim", "stale": "red"}


class _ProgressView:
    """A Rich progress line per engine, fed from the threads that start or stop them."""

    def __init__(self, progress: Progress, names: list[str]) -> None:
        self._progress = progress
        self._lock = threading.Lock()
        self._tasks: dict[str, TaskID] = {
            name: progress.add_task(name, total=1, status="waiting") for name in names
        }

    def __call__(self, name: str, message: str, done: bool) -> None:
        with self._lock:
            style = "red" if message == "failed" else "green" if done else ""
            status = f"[{style}]{message}[/{style}]" if style else message
            self._progress.update(self._tasks[name], status=status, completed=1 if done else 0)
            if done:
                self._progress.stop_task(self._tasks[name])


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(finished_text="•"),
        TextColumn("[bold]{task.description:<10}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=console,
        transient=False,
    )


def _fail(error: StackError) -> typer.Exit:
    errors.print(f"[red bold]eventmart stack:[/] {error}", highlight=False)
    return typer.Exit(code=1)


def _megabytes(value: int | None) -> str:
    return "" if value is None else f"{value / 2**20:,.0f} MiB"


def status_table(rows: list[EngineStatus]) -> Table:
    """The table `status` prints (and `up` after a start)."""
    folders = sorted({str(row.log_file.parent.parent) for row in rows})
    table = Table(
        title="eventmart stack",
        title_justify="left",
        caption=f"logs: {', '.join(folders)}/<engine>/<engine>.log",
        caption_justify="left",
    )
    table.add_column("engine", style="bold", no_wrap=True)
    table.add_column("pid", justify="right", no_wrap=True)
    table.add_column("listens on", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("memory", justify="right", no_wrap=True)
    table.add_column("start", justify="right", no_wrap=True)
    for row in rows:
        style = STATE_STYLE.get(row.state, "")
        table.add_row(
            row.name,
            "" if row.pid is None else str(row.pid),
            row.listen,
            f"[{style}]{row.state}[/{style}]",
            _megabytes(row.memory_bytes),
            "" if row.startup_s is None else f"{row.startup_s:.1f} s",
        )
    return table


@stack_app.command()
def up(
    engines: EnginesArgument = None,
    data_dir: DataDirOption = None,
    port_offset: Annotated[
        int,
        typer.Option(
            help="Add this to every port (e.g. 10000: Kafka on 19092), to run a second stack."
        ),
    ] = 0,
) -> None:
    """Start the engines that are not running yet and wait until each serves requests."""
    try:
        names = api.select(engines)
        with _progress() as progress:
            view = _ProgressView(progress, names)
            api.up(names, data_dir, port_offset=port_offset, progress=view)
        console.print(status_table(api.status(names, data_dir)))
    except StackError as error:
        raise _fail(error) from None
    except KeyboardInterrupt:
        errors.print("interrupted: engines not yet ready were stopped, ready ones keep running")
        raise typer.Exit(code=130) from None


@stack_app.command()
def down(engines: EnginesArgument = None, data_dir: DataDirOption = None) -> None:
    """Stop the engines: SIGTERM (PostgreSQL: fast shutdown), SIGKILL after a grace period."""
    try:
        names = api.select(engines)
        with _progress() as progress:
            view = _ProgressView(progress, names)
            api.down(names, data_dir, progress=view)
    except StackError as error:
        raise _fail(error) from None


@stack_app.command()
def status(engines: EnginesArgument = None, data_dir: DataDirOption = None) -> None:
    """Show each engine's pid, address, state and memory."""
    try:
        console.print(status_table(api.status(engines, data_dir)))
    except StackError as error:
        raise _fail(error) from None
