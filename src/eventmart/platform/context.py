"""Who caused what: the correlation id and the message being handled, per task/thread.

The HTTP middleware and the consumer runtime set these; the message writer reads them, so
every message a handler emits carries its cause's correlation id and, as causation id,
the id of the message (or request) that caused it — without the service code doing a thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_correlation_id: ContextVar[str | None] = ContextVar("eventmart_correlation_id", default=None)
_causation_id: ContextVar[str | None] = ContextVar("eventmart_causation_id", default=None)


def correlation_id() -> str | None:
    return _correlation_id.get()


def causation_id() -> str | None:
    return _causation_id.get()


@contextmanager
def caused_by(correlation: str | None, causation: str | None) -> Iterator[None]:
    """Within the block, new messages belong to `correlation` and were caused by `causation`."""
    t1 = _correlation_id.set(correlation)
    t2 = _causation_id.set(causation)
    try:
        yield
    finally:
        _causation_id.reset(t2)
        _correlation_id.reset(t1)
