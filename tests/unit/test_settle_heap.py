"""`settle_heap`: what a serving process does to the garbage collector once started."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from eventmart.platform.runtime import settle_heap


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_the_young_threshold_raised() -> None:
    gc.unfreeze()
    kept_from_start_up = [object() for _ in range(10)]
    _, middle, old = gc.get_threshold()

    settle_heap(12_345)

    assert gc.get_freeze_count() >= len(kept_from_start_up)
    assert gc.get_threshold() == (12_345, middle, old), "only the young threshold moves"
    # Garbage made after start-up is still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1


@pytest.mark.usefixtures("restored_gc")
def test_a_zero_threshold_keeps_pythons_thresholds() -> None:
    before = gc.get_threshold()

    settle_heap(0)

    assert gc.get_threshold() == before
