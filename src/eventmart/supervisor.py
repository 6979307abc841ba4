"""`eventmart up`: every service, both gateways and the schema registry as separate OS
processes, watched and restarted.

Hand-written because it is small and specific (start order, readiness URLs, restart with
backoff, graceful stop in reverse order); a general process manager (supervisord, honcho)
would add a config language and a daemon for what is a loop over `subprocess.Popen`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from eventmart.platform.settings import Settings
from eventmart.services import SERVICE_INDEX

console = Console()

MAX_BACKOFF_S = 30.0
HEALTHY_AFTER_S = 60.0  # a process up this long has its backoff reset


@dataclass
class Managed:
    """One supervised process."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    started_at: float = 0.0
    next_start: float = 0.0
    backoff_s: float = 1.0
    history: list[int] = field(default_factory=list)

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/readyz"

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        log.close()
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log yet)"


class Supervisor:
    def __init__(self, settings: Settings, instances: dict[str, int] | None = None) -> None:
        self.settings = settings
        self.instances = instances or {}
        self.logs = settings.path("logs")
        self.env = {
            **os.environ,
            "EVENTMART_DATA_DIR": str(settings.data_dir.resolve()),
            "EVENTMART_PROFILE": settings.profile,
            "PYTHONUNBUFFERED": "1",
        }
        self.processes = self._plan()
        self._stopping = False
        # Set by SIGINT/SIGTERM; once the watch loop runs, a signal only sets it (see
        # `_stop_on_signals`). A plain flag: a handler that took a lock could deadlock
        # against the main thread it interrupted.
        self._stop_requested = False
        self._watching = False

    def _argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "eventmart", *args]

    def _plan(self) -> list[Managed]:
        s = self.settings
        plan = [
            Managed(
                "registry",
                self._argv("serve-registry", "--port", str(s.registry_port)),
                s.registry_port,
                self.logs / "registry.log",
            )
        ]
        for name, index in SERVICE_INDEX.items():
            count = self.instances.get(name, 1)
            for i in range(1, count + 1):
                label = name if count == 1 else f"{name}#{i}"
                plan.append(
                    Managed(
                        label,
                        self._argv("serve", name),
                        s.port_base + index,
                        self.logs / f"{label.replace('#', '-')}.log",
                    )
                )
        plan.append(Managed("web", self._argv("serve", "web"), s.web_port, self.logs / "web.log"))
        plan.append(
            Managed(
                "mobile", self._argv("serve", "mobile"), s.mobile_port, self.logs / "mobile.log"
            )
        )
        return plan

    # -- start --------------------------------------------------------------------------
    def start(self, timeout_s: float = 90.0) -> None:
        """Start everything and wait until every process answers /readyz. Ctrl-C and
        SIGTERM stop the supervisor from here on (see `_stop_on_signals`)."""
        self._stop_on_signals()
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} ready"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as progress:
            task = progress.add_task("starting eventmart", total=len(self.processes))
            for m in self.processes:
                m.start(self.env)
            pending = list(self.processes)
            deadline = time.monotonic() + timeout_s
            with httpx.Client(timeout=1.0) as client:
                while pending:
                    for m in list(pending):
                        if not m.alive():
                            code = m.proc.poll() if m.proc else None
                            raise SupervisorError(
                                f"{m.name} exited during start-up (code {code}).\n"
                                f"Last lines of {m.log_path}:\n{m.tail()}"
                            )
                        try:
                            if client.get(m.ready_url).status_code == 200:
                                pending.remove(m)
                                progress.advance(task)
                                progress.update(task, description=f"{m.name} ready")
                        except httpx.HTTPError:
                            pass
                    if time.monotonic() > deadline:
                        names = ", ".join(m.name for m in pending)
                        raise SupervisorError(
                            f"not ready after {timeout_s:.0f}s: {names}. Read the logs in "
                            f"{self.logs} (e.g. {pending[0].log_path})."
                        )
                    time.sleep(0.2)
            progress.update(task, description="all processes ready")

    # -- watch --------------------------------------------------------------------------
    def watch_once(self) -> list[str]:
        """Restart processes that died (with backoff); the names restarted."""
        restarted: list[str] = []
        now = time.monotonic()
        for m in self.processes:
            if m.alive():
                if now - m.started_at > HEALTHY_AFTER_S:
                    m.backoff_s = 1.0
                continue
            if self._stopping:
                continue
            if m.next_start == 0.0:
                code = m.proc.poll() if m.proc else None
                m.history.append(code if code is not None else -1)
                m.next_start = now + m.backoff_s
                console.print(
                    f"[yellow]{m.name} exited (code {code}); restarting in "
                    f"{m.backoff_s:.0f}s[/yellow]"
                )
                m.backoff_s = min(MAX_BACKOFF_S, m.backoff_s * 2)
            elif now >= m.next_start:
                m.start(self.env)
                m.restarts += 1
                m.next_start = 0.0
                restarted.append(m.name)
                console.print(f"[green]{m.name} restarted (restart #{m.restarts})[/green]")
        return restarted

    def run_forever(self) -> None:
        self._stop_on_signals()
        self._watching = True
        try:
            while not self._stop_requested:
                self.watch_once()
                time.sleep(0.5)
            console.print("\nstopping eventmart ...")
        except KeyboardInterrupt:
            console.print("\nstopping eventmart ...")
        finally:
            self.stop()

    def _stop_on_signals(self) -> None:
        """SIGINT and SIGTERM stop the supervisor. SIGINT explicitly too: started in the
        background by a non-interactive shell (`eventmart up &` in a script), a process
        inherits SIGINT *ignored*, and Python then installs no handler of its own.

        While starting, a signal raises KeyboardInterrupt (start waits in many places).
        In the watch loop it only sets `_stop_requested`: an exception raised between two
        bytecodes of `Popen.poll` can leave the Popen's wait lock held, and `stop()` then
        never reaps that child (seen as a Ctrl-C that hung for good)."""

        def on_signal(_signo: int, _frame: object) -> None:
            self._stop_requested = True
            if not self._watching:
                raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)

    # -- stop ---------------------------------------------------------------------------
    def stop(self, grace_s: float = 15.0) -> None:
        """Gateways first (no new work), then services (each finishes its batch)."""
        self._stopping = True
        for m in reversed(self.processes):
            if m.alive() and m.proc is not None:
                m.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        killed = 0
        for m in self.processes:
            if m.proc is None:
                continue
            try:
                m.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                console.print(f"[red]{m.name} did not stop in {grace_s:.0f}s; killing it[/red]")
                m.proc.kill()
                m.proc.wait()
                killed += 1
        if killed == 0:
            console.print("stopped: every process finished its work and exited")


class SupervisorError(RuntimeError):
    pass


def parse_instances(values: list[str]) -> dict[str, int]:
    """`ordering=2` -> {"ordering": 2}; names and counts checked."""
    out: dict[str, int] = {}
    for value in values:
        name, sep, count = value.partition("=")
        if not sep or name not in SERVICE_INDEX or not count.isdigit() or not 1 <= int(count) <= 8:
            raise ValueError(
                f"--instances {value!r}: use SERVICE=N with N from 1 to 8 and "
                f"SERVICE one of {', '.join(SERVICE_INDEX)}"
            )
        out[name] = int(count)
    return out
