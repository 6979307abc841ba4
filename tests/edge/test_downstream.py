"""The gateways' HTTP client (`platform/http.Downstream`) against a real local server:
trace context on the wire, redirects passed back, timeouts and refusals as
DownstreamUnavailableError."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from eventmart.platform.http import Downstream, DownstreamUnavailableError
from tests.edge.support import FakeServices, json_response


@pytest.fixture
def fakes() -> Iterator[FakeServices]:
    services = FakeServices()
    yield services
    services.close()


def test_a_request_carries_the_trace_in_a_client_span(fakes: FakeServices) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    fakes.on("catalog", "GET", "/categories", [{"category": "books", "products": 1}])
    catalog = Downstream("catalog", fakes.url("catalog"), tracer_provider=provider)

    async def call() -> None:
        with provider.get_tracer("test").start_as_current_span("GET /api/categories"):
            answer = await catalog.request("GET", "/categories")
            assert answer.json() == [{"category": "books", "products": 1}]
        await catalog.aclose()

    asyncio.run(call())

    client = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT)
    server_side = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.INTERNAL)
    assert client.parent is not None
    assert client.parent.span_id == server_side.context.span_id
    assert client.attributes is not None
    assert client.attributes["http.response.status_code"] == 200
    sent = fakes.requests("catalog", "/categories")[0].headers["traceparent"]
    _version, trace_id, parent_id, _flags = sent.split("-")
    assert int(trace_id, 16) == server_side.context.trace_id
    assert int(parent_id, 16) == client.context.span_id  # the callee's parent: our span


def test_a_redirect_comes_back_and_is_not_followed(fakes: FakeServices) -> None:
    fakes.on("catalog", "GET", "/moved", lambda _r: httpx.Response(302, headers={"location": "/x"}))
    fakes.on("catalog", "GET", "/x", lambda _r: json_response(200, {"followed": True}))
    catalog = Downstream("catalog", fakes.url("catalog"))

    async def call() -> int:
        answer = await catalog.request("GET", "/moved")
        await catalog.aclose()
        return answer.status_code

    assert asyncio.run(call()) == 302
    assert not fakes.requests("catalog", "/x")


def test_a_slow_or_absent_service_is_unavailable_with_the_reason(fakes: FakeServices) -> None:
    async def slow(_r: httpx.Request) -> httpx.Response:
        await asyncio.sleep(1.0)
        return json_response(200, {})

    fakes.on("catalog", "GET", "/slow", slow)
    catalog = Downstream("catalog", fakes.url("catalog"), timeout_s=0.2, retries=0)
    basket = Downstream("basket", fakes.url("basket"), retries=1)  # never started

    async def call(d: Downstream, path: str) -> str:
        try:
            await d.request("GET", path)
        except DownstreamUnavailableError as e:
            return e.reason
        finally:
            await d.aclose()
        raise AssertionError(f"{path} answered")

    assert asyncio.run(call(catalog, "/slow")) == "timed out"
    assert asyncio.run(call(basket, "/basket")).startswith("connection failed")
