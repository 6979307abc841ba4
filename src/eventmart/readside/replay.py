"""Rebuilding a projection from the log (`eventmart replay <projection>`).

A rebuild moves the projection to its next generation, which empties its views in the
same step, then runs the new generation's consumer group until it has read the whole log.
A running read side notices the new generation within a second and moves its consumer to
the same group: the two share the partitions and converge on the same views, and the
read side carries on from there when the rebuild ends.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from eventmart.platform.errors import EventmartError
from eventmart.platform.infra import Platform
from eventmart.platform.messaging import MessageWriter
from eventmart.platform.store import ServiceStore
from eventmart.readside.projections import group_name
from eventmart.readside.views import (
    PROJECTIONS,
    VIEWS_DATABASE,
    UnknownProjectionError,
    open_view_store,
)
from eventmart.readside.worker import group_progress, projection_runner

Progress = Callable[[int, int], None]


class ReplayAbortedError(EventmartError):
    """Another rebuild of the same projection started; this one's group is retired."""


@dataclass(frozen=True, slots=True)
class ReplayResult:
    projection: str
    generation: int
    group: str
    messages: int  # records in the log when the rebuild caught up (all partitions)
    read: int  # of those, the records this rebuild's own consumer read
    seconds: float


def replay(platform: Platform, projection: str, progress: Progress | None = None) -> ReplayResult:
    """Rebuild `projection` from the start of the log; `progress(done, total)` is called
    whenever the group's committed position moves (messages, summed over partitions)."""
    if projection not in PROJECTIONS:
        raise UnknownProjectionError(projection)
    started = time.perf_counter()
    views = open_view_store(platform)
    views.create()
    # The consumer's inbox is the SQL `views` database, as in the read side's own process.
    store = ServiceStore(platform.database(VIEWS_DATABASE))
    store.create()
    retired = views.generation(projection)
    generation = views.start_generation(projection)
    with store.db.transaction() as conn:
        # The retired group's message ids will never be asked about again.
        store.inbox.forget(conn, group_name(projection, retired))
    runner = projection_runner(
        platform,
        views,
        projection,
        generation,
        store=store,
        writer=MessageWriter(platform.codec, "readside-replay"),
        member_id=f"readside-replay-{uuid.uuid4().hex[:6]}",
    )
    try:
        _ = runner.consumer  # a member from now on, so lag and partitions include us
        reported = None
        while True:
            state = group_progress(platform.bus, runner.group, runner.topics)
            if progress is not None and state != reported:
                progress(state.done, state.total)
                reported = state
            if state.lag == 0:
                break
            if views.generation(projection) != generation:
                raise ReplayAbortedError(
                    f"another rebuild moved {projection} past generation {generation}"
                )
            runner.step()
    finally:
        runner.close()
    return ReplayResult(
        projection=projection,
        generation=generation,
        group=runner.group,
        messages=state.total,
        read=runner.processed,
        seconds=time.perf_counter() - started,
    )
