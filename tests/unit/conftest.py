from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventmart.platform.infra import Platform
from eventmart.platform.settings import Settings
from tests.unit.sample_messages import DoThing, ThingHappened, UndoThing

_exporter = InMemorySpanExporter()


@pytest.fixture(scope="session", autouse=True)
def _tracer_provider() -> None:
    """One in-memory tracer provider for the session (OpenTelemetry allows one per process)."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    trace.set_tracer_provider(provider)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    _exporter.clear()
    yield _exporter


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    p = Platform(settings)
    p.codec.add_types([ThingHappened, DoThing, UndoThing])
    yield p
    p.close()
