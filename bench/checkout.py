"""End to end: checkouts per second and the time from checkout accepted (202) to CONFIRMED,
on the embedded profile, with the real shop running as `eventmart up` does.

Set-up (not timed): `python -m eventmart up --data-dir <tmp>` on free ports, with fast
shipping, the per-client rate limit lifted and everything else at its defaults; the admin
account it creates receives plenty of stock of 20 demo products; `shoppers` customers
register through the web BFF.

Load: an open loop at a fixed offered rate (checkouts per second), for each rate in turn.
Each arrival takes an idle shopper and does what a customer does through the web BFF:
`PUT /api/basket/items/{product}` then `POST /api/basket/checkout` (Idempotency-Key,
`tok_visa`), recording when the 202 arrived. An arrival that finds no idle shopper is
counted as "client saturated" (the 202 path is slower than shoppers / rate). After a
warm-up, a fixed window is measured; then arrivals stop and the orders are given time to
finish.

Measured, per offered rate, over the window:
- accepted/s: checkouts answered 202 whose 202 arrived in the window;
- confirmed/s: `OrderConfirmed` events whose time falls in the window (any order): the
  rate the saga sustains; if it stays below accepted/s, a backlog grows;
- latency of each order accepted in the window: the `at` of its `OrderConfirmed` entry in
  the read side's timeline (when ordering emitted it) minus the time the client got the
  202. Read from the read side's views database (read-only) after the drain, so polling
  does not load the shop. An order not confirmed by the end of the drain counts with the
  drain deadline as its latency (a lower bound), and is reported;
- CPU: the load generator's own CPU use, and each shop process' CPU over the window.

The issue's floor: >= 200 checkouts/s sustained with p99 <= 1 s on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson

from bench.common import (
    BenchResult,
    Context,
    Figure,
    Floor,
    Measure,
    children_of,
    fmt,
    percentile,
    process_cpu_seconds,
)
from eventmart.platform.http import Answer, read_answer
from eventmart.platform.settings import Settings
from eventmart.stack.base import free_port_block, log_tail

NAME = "checkout"
TITLE = "checkout end to end"
FLOOR_RATE = 200.0
FLOOR_P99_S = 1.0
PRODUCTS = 20
STOCK = 100_000
ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical Row",
    "city": "London",
    "postal_code": "N1 7AA",
    "country": "GB",
}
SERVICES = 9  # port_base + 1 .. port_base + 9


@dataclass(frozen=True)
class Plan:
    # Phases: the floor's rate offered (open loop); then `concurrency` shoppers checking
    # out back to back (closed loop: the capacity without overload); then these fractions
    # of that capacity offered (open loop: latency below saturation).
    concurrency: int
    fractions: tuple[float, ...]
    warmup_s: float
    window_s: float
    drain_s: float
    shoppers: int
    idle_s: float  # the shop's own CPU use with no traffic is measured this long


def plan(quick: bool) -> Plan:
    if quick:
        return Plan(
            concurrency=8,
            fractions=(0.5,),
            warmup_s=3,
            window_s=15,
            drain_s=30,
            shoppers=64,
            idle_s=5,
        )
    return Plan(
        concurrency=8,
        fractions=(0.5,),
        warmup_s=5,
        window_s=30,
        drain_s=60,
        shoppers=160,
        idle_s=10,
    )


# CPU a checkout may cost, all shop processes together, for FLOOR_RATE on 2 cores.
CPU_BUDGET_MS = 2 * 1000 / FLOOR_RATE


# -- the shop as a subprocess ---------------------------------------------------------------


@dataclass
class Shop:
    data_dir: Path
    port_base: int
    profile: str = "embedded"
    extra_env: dict[str, str] = field(default_factory=dict)  # the stack's addresses
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log_path = self.data_dir / "up.log"

    @property
    def web_port(self) -> int:
        return self.port_base + SERVICES + 1

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVENTMART_")}
        env.update(self.extra_env)
        env.update(
            {
                "EVENTMART_PROFILE": self.profile,
                "EVENTMART_PORT_BASE": str(self.port_base),
                "EVENTMART_WEB_PORT": str(self.web_port),
                "EVENTMART_MOBILE_PORT": str(self.port_base + SERVICES + 2),
                "EVENTMART_REGISTRY_PORT": str(self.port_base + SERVICES + 3),
                "EVENTMART_RATE_LIMIT": "1000000/second",
                "EVENTMART_SHIPPING_DISPATCH_DELAY_S": "0.5",
                "EVENTMART_SHIPPING_DELIVERY_DELAY_S": "0.5",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start(self, timeout_s: float = 240.0) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "eventmart", "up"),
                *("--data-dir", str(self.data_dir), "--profile", self.profile),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env(),
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"eventmart up exited with {self.proc.returncode}:\n{self.tail()}"
                    )
                if "eventmart is up" in self.log_path.read_text(errors="replace"):
                    try:
                        if client.get(f"{self.web_url}/readyz").status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"the shop was not up after {timeout_s:.0f}s:\n{self.tail()}"
                    )
                time.sleep(0.5)

    def tail(self, lines: int = 30) -> str:
        return log_tail(self.log_path, lines=lines) or "(no log)"

    def processes(self) -> dict[int, str]:
        """pid -> short name (`ordering`, `web`, ...) of the supervised processes."""
        if self.proc is None:
            return {}
        out: dict[int, str] = {}
        for pid, cmd in children_of(self.proc.pid).items():
            parts = cmd.split()
            name = parts[-1] if parts else str(pid)
            if "serve-registry" in parts:
                name = "registry"
            out[pid] = name
        return out

    def settings(self) -> Settings:
        """The shop's settings, as its processes read them from their environment."""
        values: dict[str, Any] = {
            k.removeprefix("EVENTMART_").lower(): v
            for k, v in self.env().items()
            if k.startswith("EVENTMART_")
        }
        values["data_dir"] = self.data_dir
        return Settings(**values)

    def admin_credentials(self) -> tuple[str, str]:
        email, _, password = (
            (self.data_dir / "admin-credentials").read_text().strip().partition(" ")
        )
        return email, password

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


# -- shoppers -------------------------------------------------------------------------------


@dataclass
class Shopper:
    email: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Order:
    order_id: str
    accepted_ms: float  # wall clock (ms) when the 202 arrived
    http_s: float  # PUT + POST round trips, seconds
    sent_ms: float  # wall clock (ms) when the checkout POST was sent


@dataclass
class Phase:
    label: str
    rate: float = 0.0  # open loop: offered checkouts/s
    concurrency: int = 0  # closed loop: shoppers checking out back to back
    window_start_ms: float = 0.0
    window_end_ms: float = 0.0
    orders: list[Order] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    saturated: int = 0
    offered: int = 0
    client_cpu_s: float = 0.0
    server_cpu_s: dict[str, float] = field(default_factory=dict)
    # Per process, the shop's CPU seconds per second with no traffic.
    idle_cpu_per_s: dict[str, float] = field(default_factory=dict)
    # filled after the drain
    confirmed_in_window: int = 0
    latencies_s: list[float] = field(default_factory=list)  # 202 -> CONFIRMED
    from_sent_s: list[float] = field(default_factory=list)  # POST sent -> CONFIRMED
    unconfirmed: int = 0
    cancelled: int = 0

    def in_window(self) -> list[Order]:
        return [
            o for o in self.orders if self.window_start_ms <= o.accepted_ms < self.window_end_ms
        ]

    @property
    def window_s(self) -> float:
        return (self.window_end_ms - self.window_start_ms) / 1000

    @property
    def accepted_per_s(self) -> float:
        return len(self.in_window()) / self.window_s

    @property
    def confirmed_per_s(self) -> float:
        return self.confirmed_in_window / self.window_s

    def cpu_ms_per_checkout(self) -> dict[str, float]:
        """Per process, CPU ms (less what it burns idle) per accepted checkout."""
        accepted = len(self.in_window())
        if not accepted:
            return {}
        return {
            name: 1000 * (used - self.idle_cpu_per_s.get(name, 0.0) * self.window_s) / accepted
            for name, used in self.server_cpu_s.items()
        }


class Client:
    """The shoppers' HTTP client, on aiohttp: the load generator shares the machine's two
    cores with the shop, and httpx spent about five times aiohttp's CPU per request (the
    generator alone used 61% of a core offering 200 checkouts/s)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        return await read_answer(self.session, method, path, **kwargs)

    async def get(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("GET", path, **kwargs)

    async def post(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("POST", path, **kwargs)

    async def put(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("PUT", path, **kwargs)

    async def delete(self, path: str, **kwargs: Any) -> Answer:
        return await self.request("DELETE", path, **kwargs)


HTTP_ERRORS = (aiohttp.ClientError, TimeoutError)


async def _check(response: Answer, expected: int, what: str) -> dict[str, Any]:
    if response.status_code != expected:
        raise RuntimeError(f"{what}: {response.status_code} {response.text[:300]}")
    data: dict[str, Any] = response.json()
    return data


async def _retrying(client: Client, path: str, body: dict[str, Any], ok: tuple[int, ...]) -> Answer:
    """POST until the answer is one of `ok`; a busy shop (503: argon2 hashing on a loaded
    machine can outlast the gateway's downstream timeout) is asked again."""
    for _ in range(20):
        r = await client.post(path, json=body)
        if r.status_code in ok:
            return r
        if r.status_code not in (429, 502, 503, 504):
            break
        await asyncio.sleep(1.0)
    raise RuntimeError(f"POST {path}: {r.status_code} {r.text[:300]}")


def _register(shop: Shop, n: int) -> list[Shopper]:
    """Customer accounts made as `eventmart users create` makes them (in identity's own
    database, UserRegistered through its outbox), with tokens signed by the shop's secret as
    identity signs them. Going through the API instead costs two argon2 computations (~0.1 s
    of CPU each) per shopper, which on a loaded 2-core machine outlast the gateway's
    downstream timeout: set-up, not what this benchmark is about."""
    from eventmart.platform.auth import Principal, issue_token
    from eventmart.platform.infra import Platform
    from eventmart.services.identity.service import create_user_offline

    settings = shop.settings()
    platform = Platform(settings)
    shoppers = []
    try:
        for i in range(n):
            email = f"bench-{i}-{uuid.uuid4().hex[:8]}@example.com"
            user = create_user_offline(platform, email, "correct horse battery", "Ada")
            token = issue_token(settings, Principal(user.user_id, email, user.role))
            shoppers.append(Shopper(email, {"Authorization": f"Bearer {token}"}))
    finally:
        platform.close()
    return shoppers


async def _stock_up(client: Client, shop: Shop) -> list[str]:
    email, password = shop.admin_credentials()
    token = await _retrying(
        client, "/api/auth/token", {"email": email, "password": password}, (200,)
    )
    admin = {"Authorization": f"Bearer {token.json()['access_token']}"}
    # The listing comes from the read side's views, which fill from catalog.events after
    # the start (on Kafka and Cassandra that can take a while): wait for it.
    deadline = time.monotonic() + 180
    while True:
        r = await client.get("/api/products", params={"page_size": 100})
        page = await _check(r, 200, "list")
        ids = [p["product_id"] for p in page["items"]][:PRODUCTS]
        if len(ids) >= PRODUCTS:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(ids)} products listed after 180 s")
        await asyncio.sleep(1.0)
    for pid in ids:
        await _check(
            await client.post(
                f"/api/admin/inventory/{pid}/receive", json={"quantity": STOCK}, headers=admin
            ),
            200,
            "receive stock",
        )
    return ids


async def _wait_prices(client: Client, shopper: Shopper, products: list[str]) -> None:
    """The basket learns prices from catalog events: wait until it knows our products."""
    deadline = time.monotonic() + 120
    for pid in products:
        while True:
            r = await client.put(
                f"/api/basket/items/{pid}", json={"quantity": 1}, headers=shopper.headers
            )
            if r.status_code == 200:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"basket never priced {pid}: {r.status_code} {r.text[:200]}")
            await asyncio.sleep(0.5)
        await client.delete(f"/api/basket/items/{pid}", headers=shopper.headers)


async def _cycle(client: Client, shopper: Shopper, product: str, phase: Phase) -> None:
    started = time.perf_counter()
    try:
        r = await client.put(
            f"/api/basket/items/{product}", json={"quantity": 1}, headers=shopper.headers
        )
        if r.status_code != 200:
            _count(phase, f"PUT {r.status_code}")
            await _back_off(r)
            return
        sent_ms = time.time() * 1000
        r = await client.post(
            "/api/basket/checkout",
            json={"shipping_address": ADDRESS, "card_token": "tok_visa"},
            headers={**shopper.headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        accepted_ms = time.time() * 1000
        if r.status_code != 202:
            _count(phase, f"checkout {r.status_code}")
            await _back_off(r)
            return
        phase.orders.append(
            Order(r.json()["order_id"], accepted_ms, time.perf_counter() - started, sent_ms)
        )
    except HTTP_ERRORS as e:
        _count(phase, type(e).__name__)


def _count(phase: Phase, what: str) -> None:
    phase.errors[what] = phase.errors.get(what, 0) + 1


async def _back_off(r: Answer) -> None:
    """The shop said busy (429/503): the shopper honours Retry-After, at most 2 s."""
    retry = r.headers.get("Retry-After")
    if r.status_code in (429, 503) and retry and retry.isdigit():
        await asyncio.sleep(min(2.0, float(retry)))


async def _load(
    client: Client,
    *,
    shop: Shop,
    shoppers: list[Shopper],
    products: list[str],
    phase: Phase,
    p: Plan,
    profile_dir: Path | None = None,
) -> Phase:
    """Run a phase for warm-up + window and measure the window: an open loop offering
    `phase.rate` checkouts/s, or (`phase.concurrency`) that many shoppers checking out
    back to back."""
    idle: asyncio.Queue[Shopper] = asyncio.Queue()
    for s in shoppers:
        idle.put_nowait(s)
    rng = random.Random(len(phase.label))
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    end = t0 + p.warmup_s + p.window_s
    phase.window_start_ms = time.time() * 1000 + p.warmup_s * 1000
    phase.window_end_ms = phase.window_start_ms + p.window_s * 1000
    procs = shop.processes()

    async def measure() -> list[subprocess.Popen[bytes]]:
        await asyncio.sleep(p.warmup_s)
        client0 = time.process_time()
        before = {pid: process_cpu_seconds(pid) for pid in procs}
        spies = []
        if profile_dir is not None:
            spies = _py_spy(procs, profile_dir / phase.label.replace("/", "-"), p.window_s)
        await asyncio.sleep(p.window_s)
        phase.client_cpu_s = time.process_time() - client0
        for pid, name in procs.items():
            a, b = before.get(pid), process_cpu_seconds(pid)
            if a is not None and b is not None:
                phase.server_cpu_s[name] = phase.server_cpu_s.get(name, 0.0) + b - a
        return spies

    measuring = asyncio.create_task(measure())
    tasks: set[asyncio.Task[None]] = set()
    if phase.concurrency:

        async def shopper_loop(shopper: Shopper) -> None:
            while loop.time() < end:
                phase.offered += 1
                await _cycle(client, shopper, rng.choice(products), phase)

        tasks = {asyncio.create_task(shopper_loop(s)) for s in shoppers[: phase.concurrency]}
    else:

        async def run(shopper: Shopper) -> None:
            try:
                await _cycle(client, shopper, rng.choice(products), phase)
            finally:
                idle.put_nowait(shopper)

        for i in range(int(phase.rate * (p.warmup_s + p.window_s))):
            delay = t0 + i / phase.rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            phase.offered += 1
            try:
                shopper = idle.get_nowait()
            except asyncio.QueueEmpty:
                phase.saturated += 1
                continue
            task = asyncio.create_task(run(shopper))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    spies = await measuring
    if tasks:
        await asyncio.wait(tasks, timeout=60)
    for spy in spies:
        await asyncio.to_thread(spy.wait, 60)
    return phase


PY_SPY = Path(__file__).resolve().parent.parent / ".tools" / "bin" / "py-spy"


def py_spy() -> str | None:
    """The py-spy executable: on PATH, or in .tools/bin (`.tools/bin/pip install py-spy`)."""
    return shutil.which("py-spy") or (str(PY_SPY) if PY_SPY.exists() else None)


def _py_spy(procs: dict[int, str], folder: Path, seconds: float) -> list[subprocess.Popen[bytes]]:
    """Sample every shop process for `seconds` with py-spy, one file per process in
    `folder` (collapsed stacks). `--gil` keeps only the thread holding the GIL: where the
    process spends Python CPU, not where its other threads wait."""
    exe = py_spy()
    if exe is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            [
                *(exe, "record", "-p", str(pid), "-d", str(max(1, int(seconds)))),
                *("-r", "25", "--gil", "-f", "raw", "-o", str(folder / f"{name}.txt")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, name in procs.items()
    ]


# -- results from the read side -------------------------------------------------------------


def _drain(shop: Shop, phase: Phase, deadline_s: float) -> None:
    """Wait until every order of the phase is confirmed or cancelled in the read side's
    views (or the deadline); then fill the phase's latencies. The views are read through
    the read store's own adapter (views.db, or Cassandra on the distributed profile),
    not through the shop's HTTP API, so the waiting does not load the shop's processes."""
    from eventmart.platform.infra import Platform
    from eventmart.readside.views import open_view_store

    wanted = {o.order_id for o in phase.orders}
    ends = ("OrderConfirmed", "OrderCancelled")
    seen: dict[str, dict[str, int]] = {}
    finished: set[str] = set()
    platform = Platform(shop.settings())
    try:
        views = open_view_store(platform)
        deadline = time.monotonic() + deadline_s
        while True:
            for order_id in wanted - finished:
                view = views.order(order_id)
                if view is None:
                    continue
                marks = {e.type: e.at_ms for e in view.timeline}
                seen[order_id] = marks
                if any(kind in marks for kind in ends):
                    finished.add(order_id)
            if wanted <= finished or time.monotonic() > deadline:
                break
            time.sleep(1.0)
    finally:
        platform.close()
    drained_ms = time.time() * 1000
    phase.confirmed_in_window = sum(
        1
        for marks in seen.values()
        if phase.window_start_ms <= marks.get("OrderConfirmed", -1) < phase.window_end_ms
    )
    for o in phase.in_window():
        marks = seen.get(o.order_id, {})
        if "OrderConfirmed" in marks:
            at = marks["OrderConfirmed"]
        elif "OrderCancelled" in marks:
            phase.cancelled += 1
            continue
        else:
            phase.unconfirmed += 1
            at = int(drained_ms)
        phase.latencies_s.append((at - o.accepted_ms) / 1000)
        phase.from_sent_s.append((at - o.sent_ms) / 1000)


# -- the benchmark ----------------------------------------------------------------------------


async def _idle_cpu(shop: Shop, seconds: float) -> dict[str, float]:
    """Per process, the shop's CPU seconds per second while nothing happens (polling
    loops, timers, heartbeats)."""
    procs = shop.processes()
    before = {pid: process_cpu_seconds(pid) for pid in procs}
    await asyncio.sleep(seconds)
    used: dict[str, float] = {}
    for pid, name in procs.items():
        a, b = before[pid], process_cpu_seconds(pid)
        if a is not None and b is not None:
            used[name] = used.get(name, 0.0) + (b - a) / seconds
    return used


def _quiesce(shop: Shop, timeout_s: float) -> int:
    """Wait until the shop has consumed everything (three looks in a row, summed over
    every consumer group); the backlog left when the time is up. One bus for all looks:
    the shop is meant to settle, not to answer a new client every second."""
    from eventmart.platform.infra import Platform

    platform = Platform(shop.settings())
    try:
        deadline = time.monotonic() + timeout_s
        quiet = 0
        while True:
            left = sum(r.lag for r in platform.bus.lag())
            quiet = quiet + 1 if left == 0 else 0
            if quiet >= 3 or time.monotonic() > deadline:
                return left
            time.sleep(1.0)
    finally:
        platform.close()


@dataclass
class _Session:
    """What every phase of one run shares."""

    ctx: Context
    client: Client
    shop: Shop
    shoppers: list[Shopper]
    products: list[str]
    plan: Plan


async def _phase(run: _Session, phase: Phase) -> Phase:
    p = run.plan
    run.ctx.step(f"{phase.label}: quiesce, idle CPU")
    await asyncio.to_thread(_quiesce, run.shop, p.drain_s)
    phase.idle_cpu_per_s = await _idle_cpu(run.shop, p.idle_s)
    run.ctx.step(f"{phase.label}: load")
    await _load(
        run.client,
        shop=run.shop,
        shoppers=run.shoppers,
        products=run.products,
        phase=phase,
        p=p,
        profile_dir=run.ctx.profile_dir,
    )
    run.ctx.step(f"{phase.label}: drain")
    await asyncio.to_thread(_drain, run.shop, phase, p.drain_s)
    run.ctx.log(_describe(phase))
    return phase


async def _drive(ctx: Context, shop: Shop, p: Plan) -> list[Phase]:
    async with aiohttp.ClientSession(
        base_url=shop.web_url,
        timeout=aiohttp.ClientTimeout(total=30.0),
        connector=aiohttp.TCPConnector(limit=p.shoppers + 8),
        json_serialize=lambda obj: orjson.dumps(obj).decode(),
    ) as session:
        client = Client(session)
        ctx.step("receiving stock")
        products = await _stock_up(client, shop)
        ctx.step(f"registering {p.shoppers} shoppers")
        shoppers = await asyncio.to_thread(_register, shop, p.shoppers)
        await _wait_prices(client, shoppers[0], products)
        run = _Session(ctx, client, shop, shoppers, products, p)
        floor = await _phase(run, Phase(f"{fmt(FLOOR_RATE)}/s offered", rate=FLOOR_RATE))
        phases = [floor]
        if floor.confirmed_per_s >= FLOOR_RATE:
            return phases  # the floor holds: nothing below it to explore
        closed = await _phase(
            run, Phase(f"{p.concurrency} shoppers back to back", concurrency=p.concurrency)
        )
        phases.append(closed)
        capacity = min(closed.accepted_per_s, closed.confirmed_per_s)
        for f in p.fractions:
            rate = max(0.5, round(f * capacity, 1))
            phases.append(await _phase(run, Phase(f"{fmt(rate)}/s offered", rate=rate)))
        return phases


def _describe(ph: Phase) -> str:
    lat, sent = ph.latencies_s, ph.from_sent_s
    errors = ", ".join(f"{k} x{v}" for k, v in sorted(ph.errors.items())) or "none"
    return (
        f"{ph.label}: accepted {fmt(ph.accepted_per_s)}/s, confirmed "
        f"{fmt(ph.confirmed_per_s)}/s, POST->CONFIRMED p50 {fmt(percentile(sent, 50))} s "
        f"p99 {fmt(percentile(sent, 99))} s (from the 202: p50 {fmt(percentile(lat, 50))} s, "
        f"p99 {fmt(percentile(lat, 99))} s), unconfirmed {ph.unconfirmed}, cancelled "
        f"{ph.cancelled}, arrivals with no idle shopper {ph.saturated}, errors: {errors}"
    )


def run(ctx: Context) -> BenchResult:
    """The embedded profile."""
    return _run(ctx, lambda: Shop(ctx.dir("checkout-shop"), free_port_block(SERVICES + 4)))


def run_distributed(ctx: Context, addresses: dict[str, str]) -> BenchResult:
    """The distributed profile, on the stack `python -m bench --distributed` started."""
    from eventmart.stack import settings_environment

    def make() -> Shop:
        return Shop(
            ctx.dir("checkout-shop-distributed"),
            free_port_block(SERVICES + 4),
            profile="distributed",
            # Its own PostgreSQL databases, Kafka topics and Cassandra keyspace: a run
            # never meets an earlier run's accounts or orders on shared engines.
            extra_env={
                **settings_environment(addresses),
                "EVENTMART_NAMESPACE": f"bench_{uuid.uuid4().hex[:8]}",
            },
        )

    return _run(ctx, make, BenchResult("checkout_distributed", "checkout e2e (distributed)"))


def _start(ctx: Context, make: Callable[[], Shop], attempts: int = 3) -> Shop:
    """A started shop. The ports are picked free, but on a shared machine another process
    may take one before the shop binds it: then start again on other ports."""
    for attempt in range(1, attempts + 1):
        shop = make()
        ctx.step(f"starting the shop (eventmart up --profile {shop.profile})")
        try:
            shop.start()
            return shop
        except RuntimeError as e:
            shop.stop()
            if "Address already in use" not in str(e) or attempt == attempts:
                raise
            ctx.log(f"a port was taken meanwhile; starting again ({attempt}/{attempts})")
    raise AssertionError("unreachable")


def _run(ctx: Context, make: Callable[[], Shop], result: BenchResult | None = None) -> BenchResult:
    result = result or BenchResult(NAME, TITLE)
    p = plan(ctx.quick)
    ctx.steps(3 + 3 * (2 + len(p.fractions)))
    shop = _start(ctx, make)
    try:
        phases = asyncio.run(_drive(ctx, shop, p))
    finally:
        shop.stop()
    for ph in phases:
        label = f"@ {ph.label}"
        at_floor = ph.rate == FLOOR_RATE
        result.figures.append(
            Figure(
                result.name,
                f"confirmed {label}",
                "orders/s",
                Measure("eventmart", [ph.confirmed_per_s]),
                [
                    *([Measure("offered", [ph.rate])] if ph.rate else []),
                    Measure("accepted (202)", [ph.accepted_per_s]),
                ],
                floor=Floor("min", FLOOR_RATE) if at_floor else None,
            )
        )
        for q in (50, 99):
            # The floor is judged on the latency from the POST: under overload the 202
            # comes back after the order is already confirmed, and 202 -> CONFIRMED goes
            # negative, which would "meet" any latency floor.
            result.figures.append(
                Figure(
                    result.name,
                    f"POST -> CONFIRMED p{q} {label}",
                    "s",
                    Measure("eventmart", [percentile(ph.from_sent_s, q)]),
                    [Measure("from the 202", [percentile(ph.latencies_s, q)], compare=False)],
                    floor=Floor("max", FLOOR_P99_S) if at_floor and q == 99 else None,
                    higher_is_better=False,
                )
            )
        per_process = ph.cpu_ms_per_checkout()
        result.figures.append(
            Figure(
                result.name,
                f"shop CPU per checkout {label}",
                "ms",
                Measure("eventmart", [sum(per_process.values()) if per_process else math.nan]),
                [Measure(f"budget for {fmt(FLOOR_RATE)}/s on 2 cores", [CPU_BUDGET_MS])],
                higher_is_better=False,
            )
        )
        http = [o.http_s for o in ph.in_window()]
        busiest = sorted(per_process.items(), key=lambda kv: -kv[1])
        cpu = ", ".join(f"{name} {ms:.0f}" for name, ms in busiest if ms >= 0.5)
        idle = sum(ph.idle_cpu_per_s.values())
        result.notes.append(
            f"{_describe(ph)}; PUT+checkout round trip p50 "
            f"{fmt(percentile(http, 50))} s, p99 {fmt(percentile(http, 99))} s; load generator "
            f"CPU {100 * ph.client_cpu_s / ph.window_s:.0f}% of a core; shop CPU "
            f"{100 * sum(ph.server_cpu_s.values()) / ph.window_s:.0f}% of a core "
            f"({100 * idle:.0f}% of it when idle); CPU ms per checkout by process: {cpu}."
        )
    fractions = ", ".join(f"{f:g}" for f in p.fractions)
    result.notes.insert(
        0,
        f"{p.shoppers} registered shoppers, {PRODUCTS} products with {STOCK:,} in stock; "
        f"phases: {fmt(FLOOR_RATE)} checkouts/s offered (open loop), then {p.concurrency} "
        f"shoppers checking out back to back (closed loop: capacity without overload), then "
        f"{fractions} x that capacity offered; each phase after the shop has quiesced and its "
        f"idle CPU was measured ({p.idle_s:g} s), warm-up {p.warmup_s:g} s, window "
        f"{p.window_s:g} s, drain up to {p.drain_s:g} s; one run per phase (the spread comes "
        "from repeating the bench).",
    )
    return result
