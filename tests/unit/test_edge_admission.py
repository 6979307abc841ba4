"""The gateway's admission control and its reading of the checkout backlog, on their own."""

from __future__ import annotations

import asyncio
import math

import pytest

from eventmart.edge.gateway import Admission, Backlog
from eventmart.platform.bus import PartitionLag


async def _enter_later(admission: Admission) -> asyncio.Task[str | None]:
    task = asyncio.create_task(admission.enter())
    await asyncio.sleep(0)  # let it queue
    return task


def test_requests_past_the_limit_wait_their_turn_in_arrival_order() -> None:
    async def scenario() -> None:
        admission = Admission("test", limit=2, capacity=10, max_wait_s=5)
        assert await admission.enter() is None
        assert await admission.enter() is None
        second_wave = [await _enter_later(admission) for _ in range(3)]
        assert admission.waiting == 3 and not any(t.done() for t in second_wave)

        admission.leave()
        await asyncio.sleep(0.01)
        assert [t.done() for t in second_wave] == [True, False, False]  # the first to come
        admission.leave()
        await asyncio.sleep(0.01)
        assert [t.done() for t in second_wave] == [True, True, False]
        assert admission.working == 2 and admission.waiting == 1
        second_wave[2].cancel()

    asyncio.run(scenario())


def test_a_request_that_waits_too_long_or_finds_no_room_is_refused() -> None:
    async def scenario() -> None:
        admission = Admission("test", limit=1, capacity=3, max_wait_s=0.05)
        assert await admission.enter() is None
        waiting = [await _enter_later(admission) for _ in range(2)]
        assert await admission.enter() == "full"  # 1 working + 2 waiting: no room
        assert [await t for t in waiting] == ["timeout", "timeout"]
        assert (admission.working, admission.waiting) == (1, 0)

        # Timed-out waiters left no trace: one slot, and it frees as before.
        admission.leave()
        assert await admission.enter() is None
        late = await _enter_later(admission)
        assert not late.done()
        admission.leave()
        assert await late is None
        admission.leave()
        assert (admission.working, admission.waiting) == (0, 0)

    asyncio.run(scenario())


def test_capacity_is_never_below_the_limit() -> None:
    async def scenario() -> None:
        admission = Admission("test", limit=3, capacity=1, max_wait_s=0.05)
        assert [await admission.enter() for _ in range(4)] == [None, None, None, "full"]

    asyncio.run(scenario())


def _rows(committed: int, end: int) -> list[PartitionLag]:
    # Two partitions sharing the figures (an odd one gets the remainder).
    half = committed // 2
    return [
        PartitionLag("ordering", "basket.events", 0, half, end // 2),
        PartitionLag("ordering", "basket.events", 1, committed - half, end - end // 2),
    ]


def test_the_backlog_rate_comes_from_consecutive_reads() -> None:
    backlog = Backlog(lambda: [], every_s=0.5, stale_s=2.0)
    first = backlog.update(_rows(1000, 1300), now=10.0)
    assert (first.lag, first.rate, first.clear_s) == (300, None, None)  # nothing to compare

    second = backlog.update(_rows(1100, 1400), now=11.0)  # 100 consumed in 1 s
    assert second.rate == pytest.approx(100.0)
    assert second.clear_s == pytest.approx(3.0)

    third = backlog.update(_rows(1400, 1500), now=12.0)  # 300/s now: smoothed to 200/s
    assert third.rate == pytest.approx(200.0)
    assert third.clear_s == pytest.approx(0.5)


def test_a_stalled_group_with_a_backlog_never_clears_and_an_idle_one_is_clear() -> None:
    backlog = Backlog(lambda: [])
    backlog.update(_rows(500, 600), now=1.0)
    stalled = backlog.update(_rows(500, 700), now=2.0)
    assert stalled.rate == 0.0 and math.isinf(stalled.clear_s or 0.0)

    idle = Backlog(lambda: [])
    idle.update(_rows(500, 500), now=1.0)
    assert idle.update(_rows(500, 500), now=2.0).clear_s == 0.0


def test_reads_far_apart_or_a_reset_group_make_no_rate() -> None:
    backlog = Backlog(lambda: [], stale_s=2.0)
    backlog.update(_rows(100, 100), now=0.0)
    assert backlog.update(_rows(150, 400), now=60.0).rate is None  # a quiet minute
    assert backlog.update(_rows(250, 400), now=61.0).rate == pytest.approx(100.0)
    assert backlog.update(_rows(0, 400), now=62.0).rate is None  # offsets went back


def test_the_backlog_is_read_at_most_every_period() -> None:
    reads: list[int] = []
    now = [0.0]

    def read() -> list[PartitionLag]:
        reads.append(1)
        return _rows(10 * len(reads), 100)

    backlog = Backlog(read, every_s=0.5, clock=lambda: now[0])

    async def scenario() -> None:
        await backlog.sample()
        now[0] = 0.4
        await backlog.sample()
        assert len(reads) == 1
        now[0] = 0.6
        sample = await backlog.sample()
        assert len(reads) == 2
        assert sample.rate == pytest.approx(10 / 0.6)

    asyncio.run(scenario())


def test_a_failed_read_keeps_the_last_reading() -> None:
    answers: list[list[PartitionLag] | Exception] = [
        _rows(100, 400),
        TimeoutError("the bus did not answer"),
    ]
    now = [0.0]

    def read() -> list[PartitionLag]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    backlog = Backlog(read, every_s=0.5, clock=lambda: now[0])

    async def scenario() -> None:
        assert (await backlog.sample()).lag == 300
        now[0] = 1.0
        assert (await backlog.sample()).lag == 300  # the read failed: same reading
        assert answers == []

    asyncio.run(scenario())
