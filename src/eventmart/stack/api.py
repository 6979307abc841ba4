"""Starting, stopping and inspecting several engines at once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from eventmart.stack import base
from eventmart.stack.base import Engine, EngineStatus, ProgressCallback, StackError
from eventmart.stack.cassandra import Cassandra
from eventmart.stack.kafka import Kafka
from eventmart.stack.postgres import Postgres
from eventmart.stack.temporal import Temporal

ENGINES: dict[str, type[Engine]] = {
    engine.name: engine for engine in (Kafka, Postgres, Cassandra, Temporal)
}
"""Every engine the stack knows, in the order commands list them."""


def _quiet(_engine: str, _message: str, _done: bool) -> None:
    pass


def stack_dir(data_dir: Path | None = None) -> Path:
    """`<data_dir>/stack`, data_dir defaulting to Settings().data_dir."""
    if data_dir is None:
        from eventmart.platform.settings import Settings

        # Typed as Any: without pydantic's mypy plugin, Field() defaults look required.
        settings_class: Any = Settings
        data_dir = Path(settings_class().data_dir)
    return Path(data_dir).resolve() / "stack"


def select(names: Iterable[str] | None) -> list[str]:
    """Validated engine names in canonical order; none given means all of them."""
    chosen = list(dict.fromkeys(names or ()))
    unknown = [name for name in chosen if name not in ENGINES]
    if unknown:
        raise StackError(
            f"unknown engine(s): {', '.join(unknown)}; choose from {', '.join(ENGINES)}"
        )
    return [name for name in ENGINES if not chosen or name in chosen]


def engine(name: str, data_dir: Path | None = None, port_offset: int | None = None) -> Engine:
    """One engine's handle; without a port offset, the one it was last started with."""
    folder = stack_dir(data_dir)
    handle = ENGINES[name](folder, port_offset or 0)
    if port_offset is None:
        recorded = handle.read_endpoint().get("port_offset", 0)
        if isinstance(recorded, int) and recorded:
            handle = ENGINES[name](folder, recorded)
    return handle


def _run_all(
    names: Sequence[str], work: Callable[[str], None], cancel: threading.Event | None = None
) -> None:
    """Run `work(name)` for each engine concurrently; report every failure, not the first."""
    failures: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="stack") as pool:
        futures = {name: pool.submit(work, name) for name in names}
        try:
            for name, future in futures.items():
                error = future.exception()
                if error is not None:
                    failures.append(_describe(name, error))
        except KeyboardInterrupt:
            # Ctrl-C during `up`: the workers notice, stop what they half-started, and end.
            if cancel is not None:
                cancel.set()
            wait(futures.values())
            raise
    if failures:
        raise StackError("\n\n".join(failures))


def _describe(name: str, error: BaseException) -> str:
    if isinstance(error, StackError):
        return str(error)
    return f"{name}: unexpected {type(error).__name__}: {error}"


def up(
    engines: Iterable[str] | None = None,
    data_dir: Path | None = None,
    *,
    port_offset: int = 0,
    progress: ProgressCallback | None = None,
) -> dict[str, str]:
    """Start the engines (all by default) that do not run yet and wait until each serves.

    Engines start concurrently. Returns each engine's client address: `host:port`, and for
    PostgreSQL a libpq URI. Raises StackError, naming each engine that failed and its log
    file, if any could not start; the others are left running.
    """
    names = select(engines)
    report = progress or _quiet
    handles = {name: engine(name, data_dir, port_offset) for name in names}

    cancel = threading.Event()

    def start_one(name: str) -> None:
        try:
            took = base.start(handles[name], report, cancel)
        except BaseException:
            report(name, "failed", True)
            raise
        report(name, "already running" if took is None else f"ready in {took:.1f} s", True)

    _run_all(names, start_one, cancel)
    return {name: handle.address for name, handle in handles.items()}


def down(
    engines: Iterable[str] | None = None,
    data_dir: Path | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> list[str]:
    """Stop the engines (all by default); returns the names of those that were running."""
    names = select(engines)
    report = progress or _quiet
    stopped: list[str] = []

    def stop_one(name: str) -> None:
        if base.stop(engine(name, data_dir), report):
            stopped.append(name)
            report(name, "stopped", True)
        else:
            report(name, "was not running", True)

    _run_all(names, stop_one)
    return [name for name in names if name in stopped]


def status(
    engines: Iterable[str] | None = None, data_dir: Path | None = None
) -> list[EngineStatus]:
    """Each engine's pid, address, state (running, starting, stopped, stale) and memory."""
    return [base.status(engine(name, data_dir)) for name in select(engines)]


def settings_environment(addresses: dict[str, str]) -> dict[str, str]:
    """EVENTMART_* variables pointing a process's Settings at the engines `up` returned."""
    env = {"EVENTMART_PROFILE": "distributed"}
    if "kafka" in addresses:
        env["EVENTMART_KAFKA_BOOTSTRAP_SERVERS"] = addresses["kafka"]
    if "postgres" in addresses:
        # Settings.postgres_url is a SQLAlchemy URL without a database name.
        host = addresses["postgres"].split("@", 1)[1].rsplit("/", 1)[0]
        env["EVENTMART_POSTGRES_URL"] = f"postgresql+psycopg://postgres@{host}"
    if "cassandra" in addresses:
        host, port = addresses["cassandra"].rsplit(":", 1)
        env["EVENTMART_CASSANDRA_HOSTS"] = host
        env["EVENTMART_CASSANDRA_PORT"] = port
    if "temporal" in addresses:
        env["EVENTMART_TEMPORAL_ADDRESS"] = addresses["temporal"]
    return env
