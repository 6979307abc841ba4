"""PostgreSQL 15 from Debian's package, as a private cluster in the stack's folder.

The distro's own cluster and service are not used: `initdb` makes a cluster under
`<stack>/postgres/data`, and the `postgres` server runs in the foreground of its own
process (no pg_ctl daemonising), so it is launched, watched and stopped like the others.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from pathlib import Path
from typing import IO, ClassVar

from eventmart.stack.base import HOST, Engine, StackError, run_step, write_if_changed

PG_MAJOR = 15
# Debian installs the server binaries here, outside PATH; EVENTMART_PG_BIN points elsewhere.
DEFAULT_BIN_DIR = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
SERVICE_USER = "postgres"


def find_bin_dir() -> Path:
    """$EVENTMART_PG_BIN, else Debian's PostgreSQL 15, else the newest Debian-installed major."""
    override = os.environ.get("EVENTMART_PG_BIN")
    if override:
        return Path(override)
    if (DEFAULT_BIN_DIR / "postgres").is_file():
        return DEFAULT_BIN_DIR
    # A newer Debian ships a newer major as `postgresql`; the settings used here suit it too.
    others = [path.parent for path in DEFAULT_BIN_DIR.parent.parent.glob("*/bin/postgres")]
    others.sort(key=lambda folder: int(folder.parent.name) if folder.parent.name.isdigit() else 0)
    return others[-1] if others else DEFAULT_BIN_DIR


class Postgres(Engine):
    """One PostgreSQL cluster: trust auth on 127.0.0.1 only, superuser `postgres`."""

    name: ClassVar[str] = "postgres"
    default_port: ClassVar[int] = 5433
    start_timeout_s: ClassVar[float] = 60.0
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to disconnect,
    # forever if a service holds a pool; SIGINT is "fast": roll back, close, checkpoint.
    stop_signal: ClassVar[signal.Signals] = signal.SIGINT

    @property
    def address(self) -> str:
        """A libpq URI (psycopg.connect takes it as it is)."""
        return f"postgresql://postgres@{HOST}:{self.port}/postgres"

    @property
    def data_dir(self) -> Path:
        return self.dir / "data"

    @property
    def bin_dir(self) -> Path:
        return find_bin_dir()

    def run_as_user(self) -> str | None:
        # The server and initdb refuse to run as root; as root (CI, a fresh VM) they run as
        # the `postgres` user that Debian's package creates.
        return SERVICE_USER if os.geteuid() == 0 else None

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        env["LC_ALL"] = "C"  # server messages in English, whatever the caller's locale
        return env

    def check_prerequisites(self) -> None:
        for tool in ("initdb", "postgres", "pg_isready"):
            if not (self.bin_dir / tool).is_file():
                raise StackError(
                    f"PostgreSQL {PG_MAJOR} not found ({self.bin_dir / tool} is missing): run "
                    "`make stack-deps` (installs Debian's postgresql package) or set "
                    "EVENTMART_PG_BIN to the folder holding initdb and postgres"
                )
        user = self.run_as_user()
        if user is None:
            return
        try:
            pwd.getpwnam(user)
        except KeyError as exc:
            raise StackError(
                f"running as root, PostgreSQL must run as user {user!r}, which does not exist: "
                "run `make stack-deps` (Debian's postgresql package creates it)"
            ) from exc
        self.dir.mkdir(parents=True, exist_ok=True)
        # Every folder above the cluster must be searchable by that user. pytest's tmp_path
        # (/tmp/pytest-of-root, mode 0700) is not, for one.
        reachable = subprocess.run(
            ["test", "-x", str(self.dir)],
            user=user,
            group=user,
            extra_groups=[],
            check=False,
        )
        if reachable.returncode != 0:
            raise StackError(
                f"PostgreSQL runs as user {user!r} (it refuses root), and that user cannot reach "
                f"{self.dir}: make its parent folders searchable (chmod o+x) or use a "
                "--data-dir elsewhere"
            )

    def settings(self) -> dict[str, str]:
        return {
            "port": str(self.port),
            "listen_addresses": f"'{HOST}'",
            # TCP only: no socket file to collide with the distro's /var/run/postgresql.
            "unix_socket_directories": "''",
            # Every service process holds a small pool, and the tests start many processes.
            "max_connections": "200",
            "shared_buffers": "128MB",
            "work_mem": "4MB",
            "maintenance_work_mem": "64MB",
            "max_wal_size": "1GB",
            # A development database: losing the last transactions on an OS crash is fine,
            # and skipping fsync makes tests and benches several times faster. A killed
            # server process still loses nothing (the WAL is written, only not flushed).
            "fsync": "off",
            "full_page_writes": "off",
            "timezone": "'UTC'",
            "log_timezone": "'UTC'",
            "logging_collector": "off",
            "log_line_prefix": "'%m [%p] %q%u@%d '",
        }

    def prepare(self, log: IO[bytes]) -> None:
        user = self.run_as_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        # The server insists on a private data dir.
        self.data_dir.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            run_step(
                self,
                [
                    str(self.bin_dir / "initdb"),
                    "--pgdata",
                    str(self.data_dir),
                    "--username",
                    "postgres",
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--no-locale",
                ],
                log,
                "creating the cluster (initdb)",
                timeout=120,
            )
        conf = self.data_dir / "postgresql.conf"
        include = "include_if_exists = 'eventmart.conf'\n"
        if include not in conf.read_text():
            with conf.open("a") as handle:
                handle.write("\n# Written by eventmart stack; its settings win.\n" + include)
        body = "".join(f"{key} = {value}\n" for key, value in self.settings().items())
        write_if_changed(
            self.data_dir / "eventmart.conf",
            "# Generated by eventmart stack on every start; edits are overwritten.\n" + body,
        )

    def command(self) -> list[str]:
        return [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)]

    def probe(self) -> bool:
        # The port accepts connections during recovery and start-up too ("the database
        # system is starting up"); pg_isready tells the difference.
        result = subprocess.run(
            [
                str(self.bin_dir / "pg_isready"),
                "--quiet",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--username",
                "postgres",
                "--timeout",
                "3",
            ],
            env=self.environment(),
            check=False,
        )
        return result.returncode == 0
