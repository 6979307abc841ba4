"""What a gateway refuses to protect the shop, through its HTTP API: requests past its
admission limits (503), a client over its rate limit (429), a checkout while ordering is
too far behind (503), a body over the size limit (413). Each refusal says why and when to
come back, and reaches no downstream service."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from eventmart.edge.gateway import Backlog
from eventmart.platform.bus import OutgoingRecord, PartitionLag, TopicPartition
from tests.edge.support import (
    CATALOG,
    CHECKOUT,
    CUSTOMER,
    P1,
    Shop,
    json_response,
    running_gateway,
)

ACCEPTED = {"order_id": "01970000-0000-7000-8000-0000000000aa"}


def _checkout(shop: Shop, key: str = "k-1") -> httpx.Response:
    headers = {**shop.headers_for(CUSTOMER), "Idempotency-Key": key}
    return shop.client.post("/api/basket/checkout", json=CHECKOUT, headers=headers)


def _wait_until(condition: Any, what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _product_answers_after(gw: Shop, seconds: float) -> None:
    """The catalog answers product P1 only `seconds` from now (without blocking the loop)."""
    release = time.monotonic() + seconds

    async def slow(_r: httpx.Request) -> httpx.Response:
        await asyncio.sleep(max(0.0, release - time.monotonic()))
        return json_response(200, CATALOG[0])

    gw.fakes.on("catalog", "GET", f"/products/{P1}", slow)


def test_requests_past_the_admission_limits_are_refused_with_retry_after(
    tmp_path: Path,
) -> None:
    with running_gateway(
        tmp_path,
        max_concurrent_requests=1,
        max_inflight_requests=2,
        max_queue_wait_s=0.3,
        downstream_timeout_s=5,
    ) as gw:
        _product_answers_after(gw, 1.5)
        admission = gw.client.app.state.gateway.admission  # type: ignore[attr-defined]
        get = lambda: gw.client.get(f"/api/products/{P1}")  # noqa: E731
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(get)  # holds the one slot until `release`
            _wait_until(lambda: admission.working == 1, "the first request to be working")
            second = pool.submit(get)  # waits for the slot...
            _wait_until(lambda: admission.waiting == 1, "the second request to wait")
            started = time.monotonic()
            third = get()  # ...and leaves no room for a third
            assert time.monotonic() - started < 0.25, "a request with no room is refused at once"
            assert third.status_code == 503, third.text
            assert third.headers["retry-after"] == "1"
            assert "busy" in third.json()["detail"]

            waited = second.result(timeout=10)  # gives up after max_queue_wait_s
            assert waited.status_code == 503, waited.text
            assert waited.headers["retry-after"] == "1"
            assert first.result(timeout=10).status_code == 200

        # The slot is free again, and only the admitted request reached the service.
        assert gw.client.get(f"/api/products/{P1}").status_code == 200
        assert len(gw.fakes.requests("catalog", f"/products/{P1}")) == 2
        shed = gw.client.get("/metrics").text
        assert 'eventmart_load_shed_total{reason="admission_full",service="bff-web"} 1.0' in shed
        assert 'eventmart_load_shed_total{reason="admission_timeout",service="bff-web"} 1.0' in shed


def test_health_is_answered_while_every_slot_is_taken(tmp_path: Path) -> None:
    with running_gateway(
        tmp_path, max_concurrent_requests=1, max_inflight_requests=1, downstream_timeout_s=5
    ) as gw:
        _product_answers_after(gw, 1.0)
        admission = gw.client.app.state.gateway.admission  # type: ignore[attr-defined]
        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(gw.client.get, f"/api/products/{P1}")
            _wait_until(lambda: admission.working == 1, "the slow request to be working")
            assert gw.client.get("/healthz").status_code == 200
            assert gw.client.get("/api/categories").status_code == 503
            assert busy.result(timeout=10).status_code == 200


def test_a_client_over_its_rate_limit_gets_429_with_retry_after(tmp_path: Path) -> None:
    with running_gateway(tmp_path, rate_limit="3/minute") as gw:
        answers = [gw.client.get("/api/categories") for _ in range(4)]
        assert [a.status_code for a in answers] == [200, 200, 200, 429]
        assert answers[-1].json()["detail"] == "rate limit of 3/minute exceeded"
        assert 1 <= int(answers[-1].headers["retry-after"]) <= 60
        assert len(gw.fakes.requests("catalog", "/categories")) == 3


def test_a_body_over_the_size_limit_is_a_413_before_anything_runs(shop: Shop) -> None:
    big = {**CHECKOUT, "card_token": "x" * (shop.settings.max_body_bytes + 1)}
    headers = {**shop.headers_for(CUSTOMER), "Idempotency-Key": "k-big"}
    r = shop.client.post("/api/basket/checkout", json=big, headers=headers)
    assert r.status_code == 413
    assert str(shop.settings.max_body_bytes) in r.json()["detail"]
    assert not shop.fakes.requests("basket")


def _ordering_behind(shop: Shop, waiting: int) -> None:
    """Make the ordering group `waiting` messages behind on the gateway's own bus."""
    bus = shop.platform.bus
    bus.ensure_topic("basket.events", 1)
    producer = bus.producer()
    producer.send([OutgoingRecord("basket.events", f"k{i}", b"x") for i in range(waiting + 5)])
    producer.close()
    consumer = bus.consumer("ordering", ["basket.events"])
    consumer.poll(1, 0.2)
    consumer.commit({TopicPartition("basket.events", 0): 5})
    consumer.close()


def test_checkout_is_refused_while_ordering_lags_past_the_threshold(tmp_path: Path) -> None:
    with running_gateway(tmp_path, shed_lag_threshold=20) as gw:
        gw.fakes.on("basket", "POST", "/basket/checkout", lambda _r: json_response(202, ACCEPTED))
        _ordering_behind(gw, 21)

        r = _checkout(gw)

        assert r.status_code == 503, r.text
        assert r.json()["detail"] == "checkout is busy (21 messages waiting); retry shortly"
        assert r.headers["retry-after"] == "2"
        assert not gw.fakes.requests("basket")


def test_checkout_is_refused_while_ordering_needs_too_long_to_catch_up(tmp_path: Path) -> None:
    with running_gateway(tmp_path, shed_backlog_s=0.5) as gw:
        gw.fakes.on("basket", "POST", "/basket/checkout", lambda _r: json_response(202, ACCEPTED))
        reads: list[list[PartitionLag]] = []
        now = [0.0]
        gw.client.app.state.gateway.ordering = Backlog(  # type: ignore[attr-defined]
            lambda: reads.pop(0), every_s=0.5, clock=lambda: now[0]
        )

        def ordering_at(committed: int, end: int) -> None:
            reads.append([PartitionLag("ordering", "basket.events", 0, committed, end)])

        ordering_at(1000, 1600)  # no rate known yet: let in
        assert _checkout(gw, "k-1").status_code == 202
        now[0] = 1.0
        ordering_at(1100, 1400)  # 100/s, 300 behind: 3 s to catch up
        refused = _checkout(gw, "k-2")
        assert refused.status_code == 503, refused.text
        assert refused.json()["detail"] == (
            "checkout is busy (the orders before yours need about 3.0 s); retry shortly"
        )
        assert refused.headers["retry-after"] == "3"
        now[0] = 2.0
        ordering_at(1390, 1430)  # caught up to 40 behind at ~200/s: let in
        assert _checkout(gw, "k-3").status_code == 202
        now[0] = 3.0
        ordering_at(1390, 1439)  # stalled, 49 behind: under the floor, still let in
        assert _checkout(gw, "k-4").status_code == 202
        now[0] = 4.0
        ordering_at(1390, 1500)  # still stalled, 110 behind: the rate halves, 48.75/s
        stalled = _checkout(gw, "k-5")
        assert stalled.status_code == 503
        assert "need about 2.3 s" in stalled.json()["detail"]
        assert stalled.headers["retry-after"] == "3"
        assert len(gw.fakes.requests("basket", "/basket/checkout")) == 3
