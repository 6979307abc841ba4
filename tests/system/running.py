"""The real shop as OS processes: `eventmart up` in a fresh data directory on free ports.

`launch()` starts the supervisor exactly as a user would (`python -m eventmart up
--data-dir DIR`, settings from `EVENTMART_*` variables), waits for "eventmart is up",
and stops it with SIGINT, asserting the graceful stop. `RunningShop` is what tests get:
URLs, the administrator's login, the data directory, the supervisor and its children,
and the reads the invariant checker needs (ordering's event store opened read-only, the
bus, every service's outbox), so `tests.e2e.invariants.check_invariants` runs on it as it
does on the in-process shop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from eventmart.platform.db import Database
from eventmart.platform.infra import Platform
from eventmart.platform.settings import Settings
from eventmart.platform.store import ServiceStore
from eventmart.readside.views import VIEWS_DATABASE
from eventmart.services import SERVICE_INDEX
from eventmart.services.ordering.domain import Order
from eventmart.stack.base import free_port_block, process_alive
from tests.e2e.invariants import orders_in_store
from tests.support.records import read_everything

UP_BANNER = "eventmart is up"
START_TIMEOUT_S = 180.0  # the supervisor gives up by itself after 90 s of not-ready
STOP_TIMEOUT_S = 30.0
SERVICE_DATABASES = [*(n for n in SERVICE_INDEX if n != "readside"), VIEWS_DATABASE]


@dataclass(frozen=True)
class ShopOptions:
    """How to run the shop: extra `eventmart up` arguments and `EVENTMART_*` settings.

    The business timings are fast so orders finish within a test; the payment deadline
    is long enough to outlast a restart of ordering (a deadline that fires while ordering
    is down cancels the order, which is right, but not what the crash test looks at).
    """

    instances: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()

    def environment(self) -> dict[str, str]:
        values = {
            "EVENTMART_ENVIRONMENT": "test",
            "EVENTMART_PAYMENT_DEADLINE_S": "30",
            "EVENTMART_PAYMENT_SLOW_DELAY_S": "0.5",
            "EVENTMART_SHIPPING_DISPATCH_DELAY_S": "1",
            "EVENTMART_SHIPPING_DELIVERY_DELAY_S": "1.5",
            "EVENTMART_RATE_LIMIT": "100000/second",
            # The gateways' 2 s default is tight for argon2 logins on a busy 2-core machine
            # (a login then answers 503); these tests are about behaviour, not latency.
            "EVENTMART_DOWNSTREAM_TIMEOUT_S": "10",
        }
        values.update(dict(self.env))
        return values

    def label(self) -> str:
        parts = [f"--instances {i}" for i in self.instances]
        parts += [f"{k}={v}" for k, v in self.env]
        return " ".join(parts) or "default"


@dataclass(frozen=True)
class Child:
    pid: int
    argv: tuple[str, ...]

    @property
    def service(self) -> str:
        """`ordering` for `... -m eventmart serve ordering`, `registry` for the registry."""
        if "serve-registry" in self.argv:
            return "registry"
        if "serve" in self.argv:
            i = self.argv.index("serve")
            if i + 1 < len(self.argv):
                return self.argv[i + 1]
        return "?"


def _proc_children(parent: int) -> list[Child]:
    """The live children of `parent`, from /proc (no psutil in this environment)."""
    out: list[Child] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # pid (comm) state ppid ...: comm may hold spaces and parentheses.
            fields = stat[stat.rindex(")") + 2 :].split()
            state, ppid = fields[0], int(fields[1])
            if ppid != parent or state == "Z":
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile
        out.append(Child(int(entry.name), tuple(a.decode(errors="replace") for a in argv if a)))
    return sorted(out, key=lambda c: c.pid)


@dataclass
class RunningShop:
    """A running `eventmart up`, as tests see it."""

    options: ShopOptions
    data_dir: Path
    settings: Settings
    process: subprocess.Popen[bytes]
    output_path: Path
    admin_email: str = ""
    admin_password: str = ""
    _admin_token: str | None = None
    _platform: Platform | None = None
    _ordering_db: Database | None = None
    _databases: dict[str, Database] = field(default_factory=dict)

    # -- addresses ------------------------------------------------------------------
    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    @property
    def mobile_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.mobile_port}"

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.registry_port}"

    def service_url(self, name: str) -> str:
        return self.settings.service_url(name)

    def ready_urls(self) -> dict[str, str]:
        urls = {"registry": f"{self.registry_url}/readyz"}
        urls.update({n: f"{self.service_url(n)}/readyz" for n in SERVICE_INDEX})
        urls["web"] = f"{self.web_url}/readyz"
        urls["mobile"] = f"{self.mobile_url}/readyz"
        return urls

    # -- processes ------------------------------------------------------------------
    def children(self) -> list[Child]:
        return _proc_children(self.process.pid)

    def pids(self, service: str) -> list[int]:
        """The pids of `service`'s processes among the supervisor's live children."""
        return [c.pid for c in self.children() if c.service == service]

    def wait_for_pids(
        self, service: str, count: int, exclude: set[int] | None = None, timeout_s: float = 30
    ) -> list[int]:
        """Wait until `count` processes of `service` run (none of them in `exclude`)."""
        deadline = time.monotonic() + timeout_s
        while True:
            pids = [p for p in self.pids(service) if p not in (exclude or set())]
            if len(pids) >= count:
                return pids
            assert time.monotonic() < deadline, (
                f"{service}: {len(pids)} new process(es) after {timeout_s}s, expected {count}\n"
                + self.diagnostics()
            )
            time.sleep(0.1)

    def wait_ready(self, names: list[str] | None = None, timeout_s: float = 60) -> None:
        urls = self.ready_urls()
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2) as c:
            for name in names or list(urls):
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        if c.get(urls[name]).status_code == 200:
                            break
                    assert time.monotonic() < deadline, (
                        f"{name} not ready after {timeout_s}s\n" + self.diagnostics()
                    )
                    time.sleep(0.1)

    def output(self) -> str:
        return self.output_path.read_text(errors="replace")

    def log(self, name: str) -> str:
        path = self.data_dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def diagnostics(self, lines: int = 25) -> str:
        """The tail of the supervisor's output and of every process's log."""
        out = [f"data dir {self.data_dir}", "--- eventmart up output (tail) ---"]
        out += self.output().splitlines()[-lines:]
        logs = self.data_dir / "logs"
        for path in sorted(logs.glob("*.log")) if logs.exists() else []:
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            if tail:
                out.append(f"--- {path.name} (tail) ---")
                out += tail
        return "\n".join(out)

    # -- credentials ----------------------------------------------------------------
    def admin_token(self) -> str:
        """The administrator's token, from a real login through the web BFF."""
        if self._admin_token is None:
            r = httpx.post(
                f"{self.web_url}/api/auth/token",
                json={"email": self.admin_email, "password": self.admin_password},
                timeout=15,
            )
            assert r.status_code == 200, f"admin login: {r.status_code} {r.text}"
            self._admin_token = str(r.json()["access_token"])
        return self._admin_token

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token()}"}

    # -- reading the shop's files (what the invariant checker needs) ------------------
    @property
    def platform(self) -> Platform:
        """The shop's bus (and other adapters) opened from this process."""
        if self._platform is None:
            self._platform = Platform(self.settings)
        return self._platform

    def _read_only(self, name: str) -> Database | None:
        db = self._databases.get(name)
        if db is None:
            path = self.data_dir.resolve() / f"{name}.db"
            if not path.exists():
                return None
            db = Database(f"sqlite:///file:{path}?mode=ro&uri=true", pool_size=1)
            self._databases[name] = db
        return db

    def ordering_store(self) -> ServiceStore:
        """Ordering's event store, opened read-only on its database file."""
        db = self._read_only("ordering")
        assert db is not None, f"no ordering.db in {self.data_dir}"
        return ServiceStore(db)

    def orders(self) -> dict[str, Order]:
        return orders_in_store(self.ordering_store())

    def order_event_counts(self) -> dict[str, Counter[str]]:
        """Order id -> how many events of each type its stream holds."""
        store = self.ordering_store()
        out: dict[str, Counter[str]] = {}
        with store.db.read() as conn:
            position = 0
            while True:
                batch = store.events.read_all(conn, position, 5000)
                if not batch:
                    break
                for e in batch:
                    if e.stream_id.startswith("order-"):
                        out.setdefault(e.stream_id[len("order-") :], Counter())[e.type] += 1
                position = batch[-1].position
        return out

    def topic_records(self, topic: str) -> list[Any]:
        return read_everything(self.platform.bus, topic)

    def quiesce(self, timeout_s: float = 30.0) -> None:
        """Wait until every consumer group has caught up and every outbox is empty."""
        deadline = time.monotonic() + timeout_s
        stable = 0
        while True:
            lag = sum(r.lag for r in self.platform.bus.lag())
            pending = 0
            for name in SERVICE_DATABASES:
                db = self._read_only(name)
                if db is not None:
                    store = ServiceStore(db)
                    with db.read() as conn:
                        pending += store.outbox.pending(conn)
            stable = stable + 1 if lag == 0 and pending == 0 else 0
            if stable >= 5:  # quiet for several looks in a row, not just between two hops
                return
            assert time.monotonic() < deadline, (
                f"not quiet after {timeout_s}s: lag {lag}, outbox {pending}"
            )
            time.sleep(0.1)

    def close_files(self) -> None:
        for db in self._databases.values():
            db.dispose()
        self._databases.clear()
        if self._platform is not None:
            self._platform.close()
            self._platform = None


def _shop_environment(options: ShopOptions, settings: Settings) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EVENTMART_") and not k.startswith("OTEL_")
    }
    env.update(options.environment())
    env.update(
        {
            "EVENTMART_PORT_BASE": str(settings.port_base),
            "EVENTMART_WEB_PORT": str(settings.web_port),
            "EVENTMART_MOBILE_PORT": str(settings.mobile_port),
            "EVENTMART_REGISTRY_PORT": str(settings.registry_port),
            "COLUMNS": "200",  # rich wraps the banner at 80 columns otherwise
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def _settings_for(data_dir: Path, options: ShopOptions) -> Settings:
    base = free_port_block(len(SERVICE_INDEX) + 3)
    overrides: dict[str, Any] = {
        k[len("EVENTMART_") :].lower(): v
        for k, v in options.environment().items()
        if k.startswith("EVENTMART_")
    }
    overrides.update(
        data_dir=data_dir,
        port_base=base,
        web_port=base + len(SERVICE_INDEX) + 1,
        mobile_port=base + len(SERVICE_INDEX) + 2,
        registry_port=base + len(SERVICE_INDEX) + 3,
    )
    return Settings(**overrides)


def _stop(shop: RunningShop) -> list[str]:
    """SIGINT to the supervisor; the problems seen (empty when it stopped gracefully)."""
    problems: list[str] = []
    children = shop.children()
    proc = shop.process
    if proc.poll() is None:
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(STOP_TIMEOUT_S)
            took = time.monotonic() - started
            if code != 0:
                problems.append(f"eventmart up exited with code {code} after SIGINT")
            if took > STOP_TIMEOUT_S:  # pragma: no cover - wait() would have raised
                problems.append(f"eventmart up took {took:.1f}s to stop")
        except subprocess.TimeoutExpired:
            problems.append(f"eventmart up did not exit within {STOP_TIMEOUT_S:.0f}s of SIGINT")
            proc.kill()
            proc.wait(10)
    else:
        problems.append(f"eventmart up had already exited with code {proc.returncode}")
    # Its children run in their own sessions: nothing but the supervisor stops them.
    deadline = time.monotonic() + 5
    left = [c for c in children if process_alive(c.pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [c for c in left if process_alive(c.pid)]
    for c in left:
        problems.append(f"{c.service} (pid {c.pid}) still running after eventmart up exited")
        with contextlib.suppress(ProcessLookupError):
            os.kill(c.pid, signal.SIGKILL)
    shop.close_files()
    return problems


@contextlib.contextmanager
def launch(data_dir: Path, options: ShopOptions | None = None) -> Iterator[RunningShop]:
    """Run `eventmart up` in `data_dir` (which should not exist yet) until the block ends."""
    options = options or ShopOptions()
    settings = _settings_for(data_dir, options)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    output_path = data_dir.parent / f"{data_dir.name}-eventmart-up.out"
    argv = [sys.executable, "-m", "eventmart", "up", "--data-dir", str(data_dir)]
    for value in options.instances:
        argv += ["--instances", value]
    with output_path.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=_shop_environment(options, settings),
            cwd=data_dir.parent,
        )
    shop = RunningShop(options, data_dir, settings, process, output_path)
    try:
        _wait_until_up(shop)
    except BaseException:
        report = shop.diagnostics(40)
        problems = _stop(shop)
        raise AssertionError(
            f"eventmart up ({options.label()}) did not come up:\n{report}\n" + "\n".join(problems)
        ) from None
    try:
        yield shop
    finally:
        problems = _stop(shop)
        assert not problems, "\n".join(problems) + "\n" + shop.diagnostics()


def _wait_until_up(shop: RunningShop) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while UP_BANNER not in shop.output():
        code = shop.process.poll()
        if code is not None:
            raise AssertionError(f"eventmart up exited with code {code} before it was up")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {UP_BANNER!r} within {START_TIMEOUT_S:.0f}s")
        time.sleep(0.2)
    credentials = shop.data_dir / "admin-credentials"
    email, _, password = credentials.read_text().strip().partition(" ")
    assert email and password, f"unreadable {credentials}"
    shop.admin_email, shop.admin_password = email, password
