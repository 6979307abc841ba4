"""readside: composition root.

The projections do not run as the runtime's `Subscription`s, whose group is fixed when
the process starts: each runs in a `ProjectionWorker` ticked by a loop, so it can move
to a new generation's group when a rebuild starts (see `worker.py`).
"""

from __future__ import annotations

import uuid

from eventmart.platform import metrics
from eventmart.platform.consumer import ConsumerRunner
from eventmart.platform.errors import EventmartError
from eventmart.platform.infra import Platform
from eventmart.platform.runtime import Loop, Service, service_app
from eventmart.platform.store import ServiceStore
from eventmart.readside.api import router
from eventmart.readside.views import PROJECTIONS, VIEWS_DATABASE, open_view_store
from eventmart.readside.worker import ProjectionWorker, projection_runner

NAME = "readside"
# How often a running read side looks for a rebuild's new generation.
GENERATION_CHECK_S = 1.0
# Between consumer steps; a step itself waits for records, so this only spaces batches.


def build(platform: Platform) -> Service:
    # The inbox is the SQL `views` database: with SQL views, effects and inbox rows commit
    # together; with Cassandra views the effects are idempotent compare-and-set writes
    # (docs/readside.md).
    store = ServiceStore(platform.database(VIEWS_DATABASE))
    views = open_view_store(platform)
    app = service_app(NAME, platform.settings)
    service = Service(name=NAME, store=store, app=app)
    member_id = f"{NAME}-{uuid.uuid4().hex[:6]}"

    def make_runner(projection: str, generation: int) -> ConsumerRunner:
        if service.writer is None:
            raise EventmartError("the read side's runtime has not started")
        return projection_runner(
            platform,
            views,
            projection,
            generation,
            store=store,
            writer=service.writer,
            member_id=member_id,
        )

    workers = [ProjectionWorker(p, views, make_runner) for p in PROJECTIONS]

    reported: dict[str, set[tuple[str, str, str]]] = {}  # projection -> lag gauge labels

    def check_generations() -> None:
        for worker in workers:
            worker.refresh()
            # The runtime reports lag for its Subscriptions only; these groups are ours.
            labels: set[tuple[str, str, str]] = set()
            if worker.group is not None:
                for lag in platform.bus.lag(worker.group):
                    label = (lag.group, lag.topic, str(lag.partition))
                    metrics.CONSUMER_LAG.labels(*label).set(lag.lag)
                    labels.add(label)
            for retired in reported.get(worker.projection, set()) - labels:
                metrics.CONSUMER_LAG.remove(*retired)  # a retired generation's group
            reported[worker.projection] = labels

    service.on_start.append(views.create)
    service.loops.append(Loop("generations", check_generations, GENERATION_CHECK_S))
    service.workers.extend(w.run for w in workers)
    app.include_router(router(views, platform.bus))
    return service
