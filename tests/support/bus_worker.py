"""A consumer-group member in its own OS process, for the multi-process bus contract tests.

    python -m tests.support.bus_worker (--bus sqlite --path BUS.db | --bus kafka \
        --bootstrap HOST:PORT) --db SQLALCHEMY_URL --group G --topic T --worker w1 \
        [--max-records 200] [--delay-ms 0] [--hang-after-batches N | --sigstop-after-batches N]

It polls, handles each batch in one transaction of the shared service database (inbox claim
plus one `effects` row per new message, see `effects.py`), then commits the offsets. It
leaves the group and exits 0 on SIGTERM (or when the test that started it is gone).

Staged failures, so a test knows exactly what was in flight:
- `--hang-after-batches N`: after the N-th batch's effects commit, the main thread stops for
  good with that batch's offsets uncommitted; heartbeats go on until someone kills -9.
- `--sigstop-after-batches N`: after the N-th batch's effects commit the whole process
  stops itself (SIGSTOP: no polls, no heartbeats). When continued it commits that
  batch's (now stale) offsets, records the milestone `stale-commit`, stops itself again,
  and when continued once more goes on as a normal member.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from collections.abc import Sequence

from eventmart.platform.bus import TopicPartition
from eventmart.platform.db import Database
from tests.support.backends import add_bus_arguments, bus_from_args, quiesce
from tests.support.effects import EffectsStore
from tests.support.procs import freeze_self
from tests.support.records import next_offsets

STALE_COMMIT = "stale-commit"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bus_worker", description=__doc__)
    add_bus_arguments(parser)
    parser.add_argument("--db", required=True, help="the service database (SQLAlchemy URL)")
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--worker", required=True, help="this worker's name in the tables")
    parser.add_argument("--max-records", type=int, default=200)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="pause between batches")
    failure = parser.add_mutually_exclusive_group()
    failure.add_argument("--hang-after-batches", type=int, default=0)
    failure.add_argument("--sigstop-after-batches", type=int, default=0)
    return parser.parse_args(argv)


def freeze(args: argparse.Namespace) -> None:
    """Stop this whole process, heartbeats included, until someone sends SIGCONT."""
    quiesce(args)
    freeze_self()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    fx = EffectsStore(Database(args.db))
    fx.create()
    bus = bus_from_args(args)
    consumer = bus.consumer(args.group, [args.topic], member_id=args.worker)
    reported: set[TopicPartition] | None = None
    batches = 0
    parent = os.getppid()
    try:
        while not stop.is_set() and os.getppid() == parent:  # the test may have died
            records = consumer.poll(args.max_records, 0.1)
            mine = consumer.assignment()
            if mine != reported:
                fx.report_assignment(args.worker, mine)
                reported = mine
            if not records:
                continue
            batches += 1
            fx.handle(args.group, args.worker, records)
            if batches == args.hang_after_batches:
                threading.Event().wait()  # until kill -9; the heartbeat thread lives on
            staged_stop = batches == args.sigstop_after_batches
            if staged_stop:
                freeze(args)
            consumer.commit(next_offsets(records))
            if staged_stop:
                fx.milestone(args.worker, STALE_COMMIT)
                freeze(args)
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000)
    finally:
        consumer.close()
        bus.close()
        fx.db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
