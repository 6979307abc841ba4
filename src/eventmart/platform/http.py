"""Calling another process's HTTP API: timeouts, retries for idempotent calls only, a
circuit breaker per downstream, and trace + correlation context carried along.

What counts against the breaker: connection errors, timeouts and 5xx answers. A 4xx is
the caller's problem, not the downstream's health, and passes straight through.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from circuitbreaker import CircuitBreaker, CircuitBreakerError
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from eventmart.platform import context
from eventmart.platform.errors import EventmartError

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class DownstreamUnavailableError(EventmartError):
    """The downstream did not answer usefully (down, slow, failing, or its breaker is open)."""

    def __init__(
        self, service: str, reason: str, retry_after_s: float = 1.0, detail: Any = None
    ) -> None:
        super().__init__(f"{service} is unavailable: {reason}")
        self.service = service
        self.reason = reason
        self.retry_after_s = retry_after_s
        # The downstream's own explanation, when it shed load itself (a 503 with a detail).
        self.detail = detail


def answer_detail(response: httpx.Response) -> Any:
    """A downstream's `detail` (a sentence or a list of invalid fields), else its text."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(data, dict) and isinstance(data.get("detail"), str | list):
        return data["detail"]
    return response.text[:500]


def retry_after(response: httpx.Response) -> str | None:
    """A downstream's Retry-After in seconds, if it gave one as a number."""
    value = response.headers.get("retry-after", "").strip()
    return value if value.isdigit() else None


class _ServerError(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


class Downstream:
    """One downstream service as seen from a gateway (async)."""

    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        timeout_s: float = 2.0,
        retries: int = 2,
        failure_threshold: int = 5,
        recovery_timeout_s: float = 5.0,
        tracer_provider: TracerProvider | None = None,
        max_connections: int = 100,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self.retries = retries
        self.client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(1.0, timeout_s)),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                # Below uvicorn's 5 s keep-alive: with both at 5 s, a pooled connection
                # could be reused just as the server closed it, and a request that may not
                # be retried (a POST without Idempotency-Key) failed with a reset.
                keepalive_expiry=2.0,
            ),
            transport=transport,
        )
        if tracer_provider is not None:
            HTTPXClientInstrumentor.instrument_client(self.client, tracer_provider=tracer_provider)
        self.breaker = CircuitBreaker(
            failure_threshold=failure_threshold,
            recovery_timeout=int(max(1, recovery_timeout_s)),
            expected_exception=(httpx.TransportError, _ServerError),
            name=f"{name}-breaker",
        )

    @property
    def state(self) -> str:
        return str(self.breaker.state)

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, Any]] | None = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> httpx.Response:
        """Send a request; 2xx-4xx come back as responses, anything else raises
        DownstreamUnavailableError. Retries happen only for idempotent requests: a method
        that is idempotent by definition, or a POST carrying an Idempotency-Key."""
        out_headers = dict(headers or {})
        corr = context.correlation_id()
        if corr:
            out_headers.setdefault("X-Correlation-ID", corr)
        if idempotent is None:
            idempotent = method in IDEMPOTENT_METHODS or "Idempotency-Key" in out_headers
        attempts = self.retries + 1 if idempotent else 1

        async def once() -> httpx.Response:
            response = await self.client.request(
                method, path, params=params, json=json, headers=out_headers
            )
            if response.status_code >= 500:
                raise _ServerError(response)
            return response

        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(attempts),
                wait=wait_exponential_jitter(multiplier=0.05, max=0.5),
                retry=retry_if_exception_type((httpx.TransportError, _ServerError)),
                reraise=True,
            ):
                with attempt:
                    result: httpx.Response = await self.breaker.call_async(once)
            return result
        except CircuitBreakerError as e:
            raise DownstreamUnavailableError(
                self.name,
                "circuit open after repeated failures",
                retry_after_s=max(1.0, float(self.breaker.open_remaining or 1)),
            ) from e
        except httpx.TimeoutException as e:
            raise DownstreamUnavailableError(self.name, "timed out") from e
        except httpx.TransportError as e:
            raise DownstreamUnavailableError(self.name, f"connection failed ({e})") from e
        except _ServerError as e:
            answer = e.response
            if answer.status_code == 503:
                # It sheds load itself (identity when password hashing is saturated, say):
                # its Retry-After and its explanation travel on.
                raise DownstreamUnavailableError(
                    self.name,
                    "answered 503",
                    retry_after_s=float(retry_after(answer) or 1),
                    detail=answer_detail(answer),
                ) from e
            raise DownstreamUnavailableError(self.name, f"answered {answer.status_code}") from e

    async def aclose(self) -> None:
        await self.client.aclose()
