"""The whole shop in the test process: every service's runtime and HTTP server, and the web
gateway, each on its own free port, over one shared embedded log. Tests talk to it only
over HTTP, like a browser or a phone would."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx
import uvicorn
from fastapi import FastAPI

from eventmart.edge.app import create_bff
from eventmart.platform.auth import Principal, issue_token
from eventmart.platform.infra import Platform
from eventmart.platform.runtime import ServiceRuntime
from eventmart.platform.settings import Settings
from eventmart.services import SERVICE_INDEX, build_service
from eventmart.stack.base import free_port_block


def e2e_settings(base: Settings, **overrides: object) -> Settings:
    """Fast business timings so sagas, deadlines and shipping finish within a test."""
    ports = free_port_block(len(SERVICE_INDEX) + 3)
    values: dict[str, object] = {
        "port_base": ports,
        "web_port": ports + len(SERVICE_INDEX) + 1,
        "mobile_port": ports + len(SERVICE_INDEX) + 2,
        "payment_deadline_s": 2.0,
        "payment_slow_delay_s": 0.3,
        "shipping_dispatch_delay_s": 0.3,
        "shipping_delivery_delay_s": 0.3,
        "rate_limit": "100000/second",
        "poll_interval_s": 0.01,
    }
    values.update(overrides)
    if values.get("profile") == "distributed":
        # Shops share the session's engines: each gets its own topics, groups, databases.
        values.setdefault("namespace", f"e2e_{uuid.uuid4().hex[:10]}")
    return Settings.model_validate({**base.model_dump(), **values})


class _Server:
    def __init__(self, app: FastAPI, port: int) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()

    def signal_stop(self) -> None:
        self.server.should_exit = True

    def join(self) -> None:
        self.thread.join(10)


@dataclass
class Shop:
    settings: Settings
    platform: Platform = field(init=False)
    runtimes: dict[str, ServiceRuntime] = field(default_factory=dict)
    servers: list[_Server] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.platform = Platform(self.settings)

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}"

    def start(self) -> Shop:
        s = self.settings
        for name, index in SERVICE_INDEX.items():
            runtime = ServiceRuntime(build_service(name, self.platform), self.platform)
            app = runtime.build_app()
            runtime.start()
            self.runtimes[name] = runtime
            self.servers.append(_Server(app, s.port_base + index))
        self.servers.append(_Server(create_bff("web", self.platform), s.web_port))
        self.servers.append(_Server(create_bff("mobile", self.platform), s.mobile_port))
        urls = [f"{s.service_url(n)}/readyz" for n in SERVICE_INDEX]
        urls += [
            f"http://127.0.0.1:{s.web_port}/readyz",
            f"http://127.0.0.1:{s.mobile_port}/readyz",
        ]
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=1) as c:
            for url in urls:
                while True:
                    try:
                        if c.get(url).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    assert time.monotonic() < deadline, f"{url} not ready in 30 s"
                    time.sleep(0.05)
        # The demo catalog and stock are seeded at start: let every consumer catch up, so
        # the first test sees the shop as a shopper would after a moment.
        self.quiesce(timeout_s=120)
        return self

    def stop(self) -> None:
        for server in self.servers:  # all at once: each waits out its keep-alive clients
            server.signal_stop()
        for server in self.servers:
            server.join()
        for runtime in self.runtimes.values():
            runtime.stop()
        self.platform.close()

    def admin_headers(self) -> dict[str, str]:
        principal = Principal(user_id="admin-e2e", email="admin@e2e.local", role="admin")
        return {"Authorization": f"Bearer {issue_token(self.settings, principal)}"}

    def quiesce(self, timeout_s: float = 30.0) -> None:
        """Wait until every consumer group has caught up and every outbox is empty."""
        deadline = time.monotonic() + timeout_s
        stable = 0
        while True:
            lag = sum(r.lag for r in self.platform.bus.lag())
            pending = 0
            for runtime in self.runtimes.values():
                store = runtime.service.store
                if store is not None:
                    with store.db.read() as conn:
                        pending += store.outbox.pending(conn)
            stable = stable + 1 if lag == 0 and pending == 0 else 0
            if stable >= 5:  # quiet for several looks in a row, not just between two hops
                return
            assert time.monotonic() < deadline, (
                f"not quiet after {timeout_s}s: lag {lag}, outbox {pending}"
            )
            time.sleep(0.05)


@contextmanager
def running_shop(settings: Settings) -> Iterator[Shop]:
    shop = Shop(settings).start()
    try:
        yield shop
    finally:
        shop.stop()
