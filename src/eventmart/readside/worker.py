"""Running a projection's consumer: in the read side's process, where it follows the
projection's generation, and in a rebuild (`replay.py`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from eventmart.platform.bus import Bus
from eventmart.platform.consumer import ConsumerRunner, RetryPolicy
from eventmart.platform.infra import Platform
from eventmart.platform.messaging import MessageWriter, retry_topic
from eventmart.platform.store import ServiceStore
from eventmart.readside.projections import group_name, projection_handlers
from eventmart.readside.views import ViewStore

log = logging.getLogger(__name__)

# After a failed tick (the views database is away, say), wait this long before the next.
FAILURE_PAUSE_S = 1.0


@dataclass(frozen=True, slots=True)
class GroupProgress:
    """How far a consumer group has read its topics: messages committed / in the log."""

    done: int
    total: int

    @property
    def lag(self) -> int:
        return self.total - self.done


def group_progress(bus: Bus, group: str, topics: Sequence[str]) -> GroupProgress:
    """Counted from end offsets, so a partition the group never committed counts as unread
    (a new group's lag is the whole log, not nothing)."""
    ends: dict[tuple[str, int], int] = {}
    for topic in topics:
        for partition, end in bus.end_offsets(topic).items():
            ends[(topic, partition)] = end
    committed = {(r.topic, r.partition): r.committed for r in bus.lag(group)}
    done = sum(min(committed.get(tp, 0), end) for tp, end in ends.items())
    return GroupProgress(done=done, total=sum(ends.values()))


def projection_topics(views: ViewStore, projection: str, generation: int) -> list[str]:
    """Every topic the generation's group reads, its retry topic included."""
    topics = projection_handlers(views, projection, generation).topics()
    return sorted({*topics, retry_topic(group_name(projection, generation))})


def projection_runner(
    platform: Platform,
    views: ViewStore,
    projection: str,
    generation: int,
    *,
    store: ServiceStore,
    writer: MessageWriter,
    member_id: str | None = None,
) -> ConsumerRunner:
    """A consumer of one generation of a projection; its inbox rows go to `store`, which
    for the SQL views is the views' own database (effects and inbox commit together)."""
    s = platform.settings
    return ConsumerRunner(
        bus=platform.bus,
        group=group_name(projection, generation),
        handlers=projection_handlers(views, projection, generation),
        store=store,
        writer=writer,
        batch_size=s.consumer_batch_size,
        max_in_flight=s.max_in_flight,
        retry=RetryPolicy(s.retry_max_attempts, s.retry_backoff_initial_s, s.retry_backoff_max_s),
        member_id=member_id,
    )


class ProjectionWorker:
    """Keeps one projection's consumer in the group of the projection's current generation.

    `refresh()` (a loop, every second) reads the stored generation. `run(stop)` (a
    service worker thread) ticks until the runtime stops: each tick first moves the
    consumer to the new generation's group if a rebuild changed it, then runs one consumer
    step. Switching and stepping happen on that thread only, so the consumer is never used
    by two threads at once; when the runtime stops, the worker leaves the group at once.
    """

    def __init__(
        self,
        projection: str,
        views: ViewStore,
        make_runner: Callable[[str, int], ConsumerRunner],
    ) -> None:
        self.projection = projection
        self.views = views
        self._make_runner = make_runner
        self._wanted: int | None = None
        self._runner: ConsumerRunner | None = None
        self._generation: int | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()

    @property
    def group(self) -> str | None:
        """The group this worker consumes in now (None before its first tick)."""
        runner = self._runner
        return runner.group if runner is not None else None

    def refresh(self) -> None:
        self._wanted = self.views.generation(self.projection)

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set, then close (a `Service.workers` entry)."""
        self._closed.clear()
        try:
            while not stop.is_set():
                self.tick()
        finally:
            self.close()

    def tick(self) -> None:
        try:
            with self._lock:
                wanted = self._wanted
                if wanted is None:
                    wanted = self._wanted = self.views.generation(self.projection)
                runner = self._runner
                if runner is None or wanted != self._generation:
                    runner = self._switch(wanted)
                runner.step()
        except Exception:
            log.exception(
                "projection %s failed a step; trying again in %.1fs",
                self.projection,
                FAILURE_PAUSE_S,
            )
            self._closed.wait(FAILURE_PAUSE_S)

    def _switch(self, generation: int) -> ConsumerRunner:
        if self._runner is not None:
            self._runner.close()
            log.info(
                "projection %s moves from generation %s to %d",
                self.projection,
                self._generation,
                generation,
            )
        self._runner = None
        runner = self._make_runner(self.projection, generation)
        _ = runner.consumer  # join the group now, so the rebuild shares its partitions
        self._runner, self._generation = runner, generation
        return runner

    def close(self) -> None:
        """Leave the group (the next tick, if any, joins again)."""
        self._closed.set()
        with self._lock:
            if self._runner is not None:
                self._runner.close()
            self._runner = None
            self._generation = None
