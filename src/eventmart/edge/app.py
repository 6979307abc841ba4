"""The two gateways (backends for frontends): web at :8000, mobile at :8001.

Two processes, not one gateway: a fault or a deploy of one client type's edge leaves the
other's clients served. Both share `Gateway` (policies, downstream clients) and the JSON
API; the web one also serves the storefront pages and the ops console.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import FastAPI

from eventmart.edge.api import Shape, api_router
from eventmart.edge.gateway import Gateway
from eventmart.edge.ops import ops_router
from eventmart.edge.shapes import MobileShape, WebShape
from eventmart.platform.infra import Platform
from eventmart.platform.runtime import NATIVE_TELEMETRY_OFF, install_service_defaults
from eventmart.platform.tracing import setup_tracing

Kind = Literal["web", "mobile"]


def create_bff(kind: Kind, platform: Platform) -> FastAPI:
    name = f"bff-{kind}"
    provider = setup_tracing(
        f"eventmart-{name}", platform.spans, platform.settings.trace_sample_ratio
    )
    gateway = Gateway(name, platform, provider)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.aclose()

    app = FastAPI(
        title=f"eventmart {kind} BFF",
        description="The shop's public API for "
        + (
            "browsers (and the storefront pages)." if kind == "web" else "phones: trimmed payloads."
        ),
        lifespan=lifespan,
        telemetry=NATIVE_TELEMETRY_OFF,
    )
    app.state.settings = platform.settings
    app.state.gateway = gateway
    shape: Shape = WebShape() if kind == "web" else MobileShape()
    app.include_router(api_router(gateway, shape))
    app.include_router(ops_router(gateway))
    if kind == "web":
        from eventmart.edge.storefront import storefront_router

        storefront_router(app, gateway)
    gateway.install(app)
    install_service_defaults(app, name, None, tracer_provider=provider)
    return app
