"""What every local engine shares: its folder, launching it detached, waiting, stopping, status.

Each engine runs as a plain OS process in its own session (so a Ctrl-C in the terminal that
ran `eventmart stack up` does not reach it), with stdout and stderr appended to one log file
and its pid in a pid file, both inside `<data_dir>/stack/<engine>/`. The pid file is checked
against `/proc/<pid>/cmdline`, which must name the engine's folder, so a pid reused by an
unrelated process after a reboot is never mistaken for the engine (nor killed).
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import functools
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from eventmart.platform.errors import EventmartError

HOST = "127.0.0.1"
# A log past this size is moved aside (one generation kept) when its engine starts again.
LOG_ROTATE_BYTES = 64 * 1024 * 1024
LOG_TAIL_LINES = 25
POLL_INTERVAL_S = 0.25

ProgressCallback = Callable[[str, str, bool], None]
"""Called with (engine name, what is happening now, whether that engine is done)."""


class StackError(EventmartError):
    """An engine could not be prepared, started, reached or stopped; the text says what to do."""


@dataclass(frozen=True)
class EngineStatus:
    """What `eventmart stack status` knows about one engine."""

    name: str
    state: str  # running | starting | stopped | stale
    pid: int | None
    address: str  # what clients are given (for PostgreSQL a libpq URI)
    listen: str  # host:port of the client listener
    memory_bytes: int | None  # proportional set size of the engine's whole process tree
    startup_s: float | None  # how long its last start took, from launch to ready
    log_file: Path


def _noop_progress(_engine: str, _message: str, _done: bool) -> None:
    pass


class Engine(abc.ABC):
    """One engine: how to prepare its folder, what to run, and how to know it is ready.

    Subclasses fill in `command` and `probe`; the process handling here is the same for all.
    `port_offset` shifts every port the engine binds, so a test can run a private stack next
    to a developer's one on the default ports.
    """

    name: ClassVar[str]
    default_port: ClassVar[int]
    start_timeout_s: ClassVar[float] = 120.0
    stop_grace_s: ClassVar[float] = 30.0
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def __init__(self, stack_dir: Path, port_offset: int = 0) -> None:
        self.dir = stack_dir.resolve() / self.name
        self.port_offset = port_offset

    # --- layout -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return self.default_port + self.port_offset

    @property
    def listen(self) -> str:
        """host:port of the client listener."""
        return f"{HOST}:{self.port}"

    @property
    def address(self) -> str:
        """What a client is given to reach the engine."""
        return self.listen

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.name}.pid"

    @property
    def endpoint_file(self) -> Path:
        return self.dir / "endpoint.json"

    def ports(self) -> dict[str, int]:
        """Every port the engine listens on, by role; all must be free before it starts."""
        return {"client": self.port}

    # --- what subclasses provide ----------------------------------------------------------

    def check_prerequisites(self) -> None:  # noqa: B027 - an optional hook
        """Raise StackError naming the missing piece and how to install it."""

    def prepare(self, log: IO[bytes]) -> None:  # noqa: B027 - an optional hook
        """Write configuration and do first-start initialisation; output goes to `log`."""

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The argv of the long-running engine process."""

    def environment(self) -> dict[str, str]:
        """The engine process's environment."""
        return dict(os.environ)

    def run_as_user(self) -> str | None:
        """A user to switch to before exec (PostgreSQL refuses to run as root)."""
        return None

    def probe(self) -> bool:
        """Once the client port answers: does the engine really serve requests yet?"""
        return True

    # --- state on disk ------------------------------------------------------------------

    def read_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def read_endpoint(self) -> dict[str, Any]:
        try:
            data = json.loads(self.endpoint_file.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def running_pid(self) -> int | None:
        """The engine's pid if its process is alive, else None."""
        pid = self.read_pid()
        if pid is not None and process_alive(pid, marker=str(self.dir)):
            return pid
        return None


# --- processes ---------------------------------------------------------------------------


def process_alive(pid: int, marker: str | None = None) -> bool:
    """Whether `pid` runs (a zombie does not count), and its command line holds `marker`."""
    proc = Path("/proc") / str(pid)
    if not proc.exists():
        if not Path("/proc/self").exists():  # no procfs (not Linux): trust the pid alone
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        return False
    try:
        stat = (proc / "stat").read_text()
        # The state letter follows the parenthesised command name, which may hold spaces.
        state = stat.rsplit(")", 1)[1].split()[0]
        if state in ("Z", "X"):
            return False
        if marker is None:
            return True
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    # Right after exec the kernel shows an empty command line for a moment; that is our
    # freshly started engine, not a stranger.
    return not cmdline or marker in cmdline


# The engines this process started and has not reaped yet. An engine outlives `start()`
# by design (`stop` ends it, from this process or another), and a Popen dropped while its
# child runs is what subprocess reports as a ResourceWarning ("still running").
_started: dict[int, subprocess.Popen[bytes]] = {}


def _reap(pid: int) -> None:
    # An engine started by this very process stays its child until reaped; without this it
    # would linger as a zombie after it exits.
    child = _started.get(pid)
    if child is not None:
        if child.poll() is not None:
            del _started[pid]
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (PostgreSQL forks one backend per connection)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, []))
    return tree


def memory_of_tree(pid: int, field: str = "Pss") -> int | None:
    """Summed memory of a process tree in bytes: `Pss` (shared pages split fairly) or `Rss`."""
    total, seen = 0, False
    for member in process_tree(pid):
        try:
            text = (Path("/proc") / str(member) / "smaps_rollup").read_text()
        except OSError:
            continue
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
        if match:
            total += int(match.group(1)) * 1024
            seen = True
    return total if seen else None


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


# Below the kernel's ephemeral range (32768+), so no outgoing connection of this machine
# can sit on one of these ports between the check and the bind.
FREE_PORT_RANGE = (20_000, 32_000)


def free_port_block(size: int, host: str = HOST) -> int:
    """A base port such that base .. base+size are all free to bind on `host` (for a
    shop whose processes listen at `port_base + n`: tests and benchmarks run their own)."""

    def free(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
        return True

    low, high = FREE_PORT_RANGE
    for _ in range(500):
        base = random.randrange(low, high - size)
        if all(free(p) for p in range(base, base + size + 1)):
            return base
    raise EventmartError(f"no block of {size + 1} free ports in {low}-{high}")


def log_tail(path: Path, since: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines written to a log after byte offset `since`."""
    try:
        with path.open("rb") as handle:
            handle.seek(since)
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    # Our own banners (with the full java command line) would crowd out the engine's words.
    kept = [line for line in text.splitlines() if not line.startswith("===== eventmart stack")]
    return "\n".join(kept[-lines:])


@contextlib.contextmanager
def engine_lock(engine: Engine) -> Iterator[None]:
    """Serialise up/down of one engine across processes (e.g. pytest-xdist workers)."""
    engine.dir.mkdir(parents=True, exist_ok=True)
    with (engine.dir / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _open_log(engine: Engine) -> IO[bytes]:
    engine.dir.mkdir(parents=True, exist_ok=True)
    if engine.log_file.exists() and engine.log_file.stat().st_size > LOG_ROTATE_BYTES:
        engine.log_file.replace(engine.log_file.with_suffix(".log.1"))
    return engine.log_file.open("ab")


def _banner(log: IO[bytes], text: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    log.write(f"\n===== eventmart stack {stamp}: {text}\n".encode())
    log.flush()


def run_step(engine: Engine, argv: list[str], log: IO[bytes], what: str, timeout: float) -> None:
    """Run a one-off setup command (initdb, storage format) to completion, output to the log."""
    since = log.tell()
    _banner(log, f"{what}: {shlex.join(argv)}")
    user = engine.run_as_user()
    try:
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=engine.dir,
            env=engine.environment(),
            timeout=timeout,
            check=False,
            user=user,
            group=user,
            extra_groups=[] if user else None,
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(
            f"{engine.name}: {what} did not finish within {timeout:.0f} s; read {engine.log_file}"
        ) from exc
    if result.returncode != 0:
        raise StackError(
            f"{engine.name}: {what} failed (exit {result.returncode}); read {engine.log_file}:\n"
            f"{log_tail(engine.log_file, since=since, lines=12)}"
        )


def start(
    engine: Engine,
    progress: ProgressCallback = _noop_progress,
    cancel: threading.Event | None = None,
) -> float | None:
    """Start the engine unless it already runs, and wait until it serves requests.

    Returns the seconds the start took (first-start initialisation included), or None when
    the engine was already running.
    """
    with engine_lock(engine):
        pid = engine.running_pid()
        if pid is not None:
            recorded = engine.read_endpoint().get("port_offset", engine.port_offset)
            if recorded != engine.port_offset:
                raise StackError(
                    f"{engine.name} already runs (pid {pid}) with port offset {recorded}, "
                    f"not {engine.port_offset}; run `eventmart stack down` first"
                )
            progress(engine.name, f"already running (pid {pid})", False)
            size = engine.log_file.stat().st_size if engine.log_file.exists() else 0
            _wait_ready(engine, pid, None, size, progress=progress, cancel=cancel)
            return None

        engine.check_prerequisites()
        for role, port in engine.ports().items():
            if port_open(port):
                raise StackError(
                    f"{engine.name}: port {port} ({role}) is already in use by another process; "
                    f"stop it (find it with `ss -ltnp 'sport = :{port}'`) or start the stack "
                    "in another data dir with a port offset"
                )
        began = time.monotonic()
        with _open_log(engine) as log:
            offset = log.tell()
            progress(engine.name, "preparing", False)
            engine.prepare(log)
            argv = engine.command()
            _banner(log, f"starting {engine.name}: {shlex.join(argv)}")
            user = engine.run_as_user()
            child = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=engine.dir,
                env=engine.environment(),
                start_new_session=True,  # its own process group: no terminal signals
                close_fds=True,
                user=user,
                group=user,
                extra_groups=[] if user else None,
            )
        _started[child.pid] = child
        engine.pid_file.write_text(f"{child.pid}\n")
        endpoint: dict[str, Any] = {
            "address": engine.address,
            "listen": engine.listen,
            "port": engine.port,
            "ports": engine.ports(),
            "port_offset": engine.port_offset,
            "pid": child.pid,
            "startup_s": None,
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        # Written at once, so `status` from another shell already sees the right ports.
        engine.endpoint_file.write_text(json.dumps(endpoint, indent=2) + "\n")
        progress(engine.name, f"started (pid {child.pid}), waiting for port {engine.port}", False)
        try:
            _wait_ready(engine, child.pid, child, offset, progress=progress, cancel=cancel)
        except BaseException:
            # A half-started engine would hold its ports and block the next `up`.
            _terminate(engine, child.pid)
            engine.pid_file.unlink(missing_ok=True)
            raise
        startup = time.monotonic() - began
        endpoint["startup_s"] = round(startup, 2)
        engine.endpoint_file.write_text(json.dumps(endpoint, indent=2) + "\n")
        return startup


def _wait_ready(
    engine: Engine,
    pid: int,
    child: subprocess.Popen[bytes] | None,
    log_offset: int,
    *,
    progress: ProgressCallback,
    cancel: threading.Event | None,
) -> None:
    deadline = time.monotonic() + engine.start_timeout_s
    port_seen = False
    while True:
        if cancel is not None and cancel.is_set():
            raise StackError(f"{engine.name}: start interrupted")
        exited = child.poll() if child is not None else None
        if exited is not None or not process_alive(pid, marker=str(engine.dir)):
            code = f" with exit code {exited}" if exited is not None else ""
            raise StackError(
                f"{engine.name} exited during start-up{code}; read {engine.log_file}. "
                f"Its last lines:\n{log_tail(engine.log_file, since=log_offset)}"
            )
        if port_open(engine.port):
            if not port_seen:
                port_seen = True
                progress(
                    engine.name, f"port {engine.port} answers, checking it serves requests", False
                )
            if engine.probe():
                return
        if time.monotonic() > deadline:
            raise StackError(
                f"{engine.name} did not become ready within {engine.start_timeout_s:.0f} s "
                f"(port {engine.port} {'answers' if port_seen else 'closed'}); "
                f"read {engine.log_file}. Its last lines:\n"
                f"{log_tail(engine.log_file, since=log_offset)}"
            )
        time.sleep(POLL_INTERVAL_S)


def _terminate(engine: Engine, pid: int) -> bool:
    """Ask politely, then SIGKILL the whole process group after the grace period."""
    marker = str(engine.dir)
    if not process_alive(pid, marker):
        _reap(pid)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, engine.stop_signal)
    deadline = time.monotonic() + engine.stop_grace_s
    while time.monotonic() < deadline:
        _reap(pid)
        if not process_alive(pid, marker):
            break
        time.sleep(POLL_INTERVAL_S)
    else:
        # The engine was started with start_new_session, so its pgid is its pid; killing the
        # group also takes down helpers it forked (PostgreSQL backends).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        for _ in range(40):
            _reap(pid)
            if not process_alive(pid, marker):
                break
            time.sleep(POLL_INTERVAL_S / 2)
    return True


def stop(engine: Engine, progress: ProgressCallback = _noop_progress) -> bool:
    """Stop the engine if it runs; returns whether there was anything to stop."""
    if not engine.dir.exists():  # never started in this data dir: leave no trace
        return False
    with engine_lock(engine):
        pid = engine.running_pid()
        stopped = False
        if pid is not None:
            progress(engine.name, f"stopping pid {pid}", False)
            stopped = _terminate(engine, pid)
        engine.pid_file.unlink(missing_ok=True)
        return stopped


def status(engine: Engine) -> EngineStatus:
    """Alive and answering, alive but not answering yet, or stopped."""
    endpoint = engine.read_endpoint()
    address = str(endpoint.get("address", engine.address))
    listen = str(endpoint.get("listen", engine.listen))
    port = int(endpoint.get("port", engine.port))
    startup = endpoint.get("startup_s")
    pid = engine.read_pid()
    if pid is None:
        state, pid = "stopped", None
    elif not process_alive(pid, marker=str(engine.dir)):
        state = "stale"  # a pid file left by a crash or a reboot
    else:
        state = "running" if port_open(port) else "starting"
    memory = memory_of_tree(pid) if pid is not None and state != "stale" else None
    return EngineStatus(
        name=engine.name,
        state=state,
        pid=pid if state != "stale" else None,
        address=address,
        listen=listen,
        memory_bytes=memory,
        startup_s=float(startup) if isinstance(startup, int | float) else None,
        log_file=engine.log_file,
    )


# --- Java ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Java:
    """A Java runtime found for the JVM engines."""

    executable: Path
    major: int


@functools.cache
def find_java() -> Java:
    """The `java` of JAVA_HOME, else the one on PATH; it must be Java 17 or newer."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if not candidate.is_file():
            raise StackError(
                f"JAVA_HOME={java_home} has no bin/java: point JAVA_HOME at a Java 17 "
                "installation (e.g. /usr/lib/jvm/java-17-openjdk-amd64) or unset it"
            )
        source = "JAVA_HOME"
    else:
        found = shutil.which("java")
        if found is None:
            raise StackError(
                "Java 17 not found (no JAVA_HOME, no `java` on PATH): install "
                "openjdk-17-jre-headless (`make stack-deps` does)"
            )
        candidate, source = Path(found), "PATH"
    try:
        result = subprocess.run(
            [str(candidate), "-XshowSettings:properties", "-version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StackError(f"cannot run {candidate} (from {source}): {exc}") from exc
    match = re.search(r"java\.specification\.version = (\d+)(?:\.(\d+))?", result.stderr)
    if match is None:
        raise StackError(f"cannot tell the version of {candidate} (from {source})")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # Java 8 reports "1.8"
        major = int(match.group(2))
    if major < 17:
        raise StackError(
            f"Java 17+ is needed, but {candidate} (from {source}) is Java {major}: install "
            "openjdk-17-jre-headless and set JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64"
        )
    return Java(executable=candidate, major=major)


def infra_dir() -> Path:
    """The repository's infra/ folder (jars and pom), or $EVENTMART_INFRA_DIR."""
    override = os.environ.get("EVENTMART_INFRA_DIR")
    if override:
        return Path(override).resolve()
    for parent in Path(__file__).resolve().parents:
        if (parent / "infra" / "pom.xml").is_file():
            return parent / "infra"
    return (Path.cwd() / "infra").resolve()


def jar_dir(engine: str, marker_glob: str) -> Path:
    """infra/lib/<engine>/, checked to hold the engine's jars."""
    lib = infra_dir() / "lib" / engine
    if not any(lib.glob(marker_glob)):
        raise StackError(
            f"{engine} jars are missing from {lib}: run `make stack-deps` "
            "(fetches them from Maven Central as pinned in infra/pom.xml)"
        )
    return lib


def write_if_changed(path: Path, text: str) -> None:
    """Write a generated config file, leaving its mtime alone when nothing changed."""
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def render_properties(values: Mapping[str, object]) -> str:
    """A Java .properties body from a mapping, in the mapping's order."""
    return "".join(f"{key}={value}\n" for key, value in values.items())
