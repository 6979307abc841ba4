"""What the edge tests share: downstream services faked at the HTTP level (a service a
test does not fake is down: connection refused), a gateway wired to them, and helpers to
read pages."""

from __future__ import annotations

import asyncio
import inspect
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import uvicorn
from aiohttp import web
from fastapi.testclient import TestClient

from eventmart.edge.app import create_bff
from eventmart.platform.auth import Principal, issue_token
from eventmart.platform.http import Downstream
from eventmart.platform.infra import Platform
from eventmart.platform.settings import Settings

# A fake's answer; a coroutine's (an `async def` handler) is awaited by the fake server.
Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]

CUSTOMER = Principal(user_id="user-1", email="ada@example.com", role="customer")
ADMIN = Principal(user_id="admin-1", email="ops@example.com", role="admin")
P1 = "0a1b2c3d-0000-4000-8000-000000000001"
P2 = "0a1b2c3d-0000-4000-8000-000000000002"
P3 = "0a1b2c3d-0000-4000-8000-000000000003"
ORDER = "01970000-0000-7000-8000-0000000000aa"


def product(pid: str, name: str, available: int | None, **extra: Any) -> dict[str, Any]:
    return {
        "product_id": pid,
        "sku": f"SKU-{pid[-3:]}",
        "name": name,
        "description": f"{name}: a fine thing.",
        "category": "kitchen",
        "price_cents": 1299,
        "currency": "USD",
        "image": "",
        "available": available,
        **extra,
    }


CHECKOUT = {
    "shipping_address": {
        "name": "Ada",
        "line1": "1 Row",
        "city": "London",
        "postal_code": "N1",
        "country": "GB",
    },
    "card_token": "tok_visa",
}

CATALOG = [
    product(P1, "Cast-iron Skillet", 40),
    product(P2, "Ceramic Teapot", 3),
    product(P3, "Bamboo Cutting Board", 0),
]


def order_view(status: str = "STOCK_RESERVED", **extra: Any) -> dict[str, Any]:
    timeline = [
        {"type": "BasketCheckedOut", "status": "PENDING", "at": "2026-01-02T10:00:00+00:00"},
        {"type": "OrderPlaced", "status": "PENDING", "at": "2026-01-02T10:00:01+00:00"},
        {"type": "OrderStockReserved", "status": "STOCK_RESERVED", "at": 1767348002000},
    ]
    return {
        "id": ORDER,
        "customer_id": CUSTOMER.user_id,
        "status": status,
        "items": [
            {
                "product_id": P1,
                "sku": "KIT-001",
                "name": "Cast-iron Skillet",
                "quantity": 2,
                "unit_price_cents": 1299,
            }
        ],
        "total_cents": 2598,
        "currency": "USD",
        "cancellation_reason": None,
        "timeline": timeline,
        **extra,
    }


def json_response(status: int, body: Any) -> httpx.Response:
    return httpx.Response(
        status, content=orjson.dumps(body), headers={"content-type": "application/json"}
    )


class FakeServices:
    """Downstream services by name, each a real HTTP server on its own local port with a
    route table of (method, path regex) -> handler. A service with no routes refuses
    connections, like a process that is not running: its port is bound but not listening
    until the first route is added.

    The servers run on an event loop of their own (a thread), so a handler that waits
    (an `async def` sleeping) holds up neither the gateway nor the test."""

    def __init__(self) -> None:
        self.routes: dict[str, list[tuple[str, re.Pattern[str], Handler]]] = {}
        self.seen: list[tuple[str, httpx.Request]] = []
        self._sockets: dict[str, socket.socket] = {}
        self._runners: list[web.AppRunner] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def url(self, service: str) -> str:
        sock = self._sockets.get(service)
        if sock is None:
            sock = self._sockets[service] = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def on(self, service: str, method: str, path: str, handler: Handler | Any) -> None:
        respond: Handler = (
            handler if callable(handler) else (lambda _r, b=handler: json_response(200, b))
        )
        first = service not in self.routes
        self.routes.setdefault(service, []).insert(0, (method, re.compile(f"^{path}$"), respond))
        if first:
            self.url(service)
            asyncio.run_coroutine_threadsafe(self._serve(service), self._loop).result(10)

    async def _serve(self, service: str) -> None:
        async def handle(request: web.Request) -> web.StreamResponse:
            seen = httpx.Request(
                request.method,
                str(request.url),
                headers=list(request.headers.items()),
                content=await request.read(),
            )
            self.seen.append((service, seen))
            for method, pattern, respond in self.routes[service]:
                if method == seen.method and pattern.match(seen.url.path):
                    answer = respond(seen)
                    if inspect.isawaitable(answer):
                        answer = await answer
                    return _to_aiohttp(answer)
            return _to_aiohttp(json_response(404, {"detail": f"{seen.url.path} not found"}))

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, self._sockets[service]).start()
        self._runners.append(runner)

    def close(self) -> None:
        async def stop() -> None:
            for runner in self._runners:
                await runner.cleanup()

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        for sock in self._sockets.values():
            sock.close()

    def requests(self, service: str, path: str | None = None) -> list[httpx.Request]:
        return [r for s, r in self.seen if s == service and (path is None or r.url.path == path)]


def _to_aiohttp(answer: httpx.Response) -> web.Response:
    headers = [(k, v) for k, v in answer.headers.multi_items() if k.lower() != "content-length"]
    return web.Response(status=answer.status_code, body=answer.content, headers=headers)


@dataclass
class Shop:
    client: TestClient
    fakes: FakeServices
    settings: Settings
    platform: Platform

    def login_as(self, who: Principal) -> None:
        # As the login page's Set-Cookie would (host-only cookie of the shop's host).
        self.client.cookies.set(
            "eventmart_token", issue_token(self.settings, who), "shop.test", "/"
        )

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.client.get(url, follow_redirects=False, **kw)

    def headers_for(self, who: Principal) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(self.settings, who)}"}


def tagged(html: str, testid: str) -> list[str]:
    """The opening tags carrying this data-testid."""
    return re.findall(rf'<[^>]*data-testid="{re.escape(testid)}"[^>]*>', html)


def text_of(html: str, testid: str) -> list[str]:
    """The text inside elements with this data-testid (tags stripped, whitespace folded)."""
    out = []
    for m in re.finditer(
        rf'<(\w+)[^>]*data-testid="{re.escape(testid)}"[^>]*>(.*?)</\1>', html, re.S
    ):
        out.append(" ".join(re.sub(r"<[^>]+>", " ", m.group(2)).split()))
    return out


@contextmanager
def running_gateway(
    tmp_path: Path, kind: Literal["web", "mobile"] = "web", retries: int = 0, **settings_: Any
) -> Iterator[Shop]:
    """A gateway of this kind whose downstream services are all fakes (settings as given,
    else the defaults tests use)."""
    settings = Settings(
        data_dir=tmp_path / "data",
        environment="test",
        # A fake answers in milliseconds; 2 s leaves room for a loaded 2-core machine (at
        # 0.5 s a page test failed once in a full run). Tests of slowness set their own.
        **{"rate_limit": "100000/second", "downstream_timeout_s": 2.0, **settings_},
    )
    platform = Platform(settings)
    app = create_bff(kind, platform)
    gateway = app.state.gateway
    fakes = FakeServices()
    for name in list(gateway.downstream):
        # Each service faked at the HTTP level; a down fake fails at once (no retries).
        gateway.downstream[name] = Downstream(
            name, fakes.url(name), retries=retries, timeout_s=settings.downstream_timeout_s
        )
    fakes.on(
        "catalog",
        "GET",
        "/categories",
        [{"category": "kitchen", "products": 3}, {"category": "books", "products": 7}],
    )
    try:
        with TestClient(app, base_url="http://shop.test") as client:
            yield Shop(client, fakes, settings, platform)
    finally:
        fakes.close()
        platform.close()


@contextmanager
def serving(shop: Shop) -> Iterator[str]:
    """The gateway served by uvicorn on a free local port, for a real connection or a
    browser; its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(shop.client.app, lifespan="off", log_level="critical")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
