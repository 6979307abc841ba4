"""What the edge tests share: downstream services faked at the HTTP level (a service a
test does not fake is down: connection refused), a gateway wired to them, and helpers to
read pages."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import orjson
import uvicorn
from fastapi.testclient import TestClient

from eventmart.edge.app import create_bff
from eventmart.platform.auth import Principal, issue_token
from eventmart.platform.http import Downstream
from eventmart.platform.infra import Platform
from eventmart.platform.settings import Settings

# A fake's answer; a coroutine's (an `async def` handler) is awaited by the transport.
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


@dataclass
class FakeServices:
    """Downstream services by name: a route table of (method, path regex) -> handler.
    A service with no routes refuses connections, like a process that is not running."""

    routes: dict[str, list[tuple[str, re.Pattern[str], Handler]]] = field(default_factory=dict)
    seen: list[tuple[str, httpx.Request]] = field(default_factory=list)

    def on(self, service: str, method: str, path: str, handler: Handler | Any) -> None:
        respond: Handler = (
            handler if callable(handler) else (lambda _r, b=handler: json_response(200, b))
        )
        self.routes.setdefault(service, []).insert(0, (method, re.compile(f"^{path}$"), respond))

    def transport(self, service: str) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response | Awaitable[httpx.Response]:
            self.seen.append((service, request))
            routes = self.routes.get(service)
            if not routes:
                raise httpx.ConnectError(f"{service} is not running", request=request)
            for method, pattern, respond in routes:
                if method == request.method and pattern.match(request.url.path):
                    return respond(request)
            return json_response(404, {"detail": f"{request.url.path} not found"})

        return httpx.MockTransport(handle)

    def requests(self, service: str, path: str | None = None) -> list[httpx.Request]:
        return [r for s, r in self.seen if s == service and (path is None or r.url.path == path)]


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
        **{"rate_limit": "100000/second", "downstream_timeout_s": 0.5, **settings_},
    )
    platform = Platform(settings)
    app = create_bff(kind, platform)
    gateway = app.state.gateway
    fakes = FakeServices()
    for name, downstream in list(gateway.downstream.items()):
        # Each service faked at the HTTP level; a down fake fails at once (no retries).
        gateway.downstream[name] = Downstream(
            name,
            str(downstream.client.base_url),
            retries=retries,
            timeout_s=0.5,
            transport=fakes.transport(name),
        )
    fakes.on(
        "catalog",
        "GET",
        "/categories",
        [{"category": "kitchen", "products": 3}, {"category": "books", "products": 7}],
    )
    with TestClient(app, base_url="http://shop.test") as client:
        yield Shop(client, fakes, settings, platform)
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
