"""A service process that fills its outbox and relays it, for the multi-process relay test.

    python -m tests.support.relay_worker (--bus sqlite --path BUS.db | --bus kafka \
        --bootstrap HOST:PORT) --db SQLALCHEMY_URL --topic T [--write N --keys K] \
        [--batch-size 20] [--lease-s 1] [--sigstop-after-sends S]

With `--write N` it first commits N outbox messages (keys dealt round-robin over K keys,
each key numbered 0, 1, 2, ...; `Outbox.add` in transactions of 25). Then it runs an
`OutboxRelay` until the outbox is empty and exits 0.

`--sigstop-after-sends S` stops the process (SIGSTOP) right after the relay's S-th send
returned, that is after a batch is on the bus and before the relay deletes it from the
outbox: the test kills it there with SIGKILL.
"""

from __future__ import annotations

import argparse
import threading
from collections.abc import Sequence

from eventmart.platform.bus import OutgoingRecord, Producer
from eventmart.platform.db import Database
from eventmart.platform.store import ServiceStore
from eventmart.platform.store.outbox import OutboxRelay
from tests.support import eventually
from tests.support.backends import add_bus_arguments, bus_from_args
from tests.support.procs import freeze_self
from tests.support.records import keyed_stream

WRITE_CHUNK = 25


class StoppingProducer(Producer):
    """Delegates; stops the whole process after the `stop_after`-th send."""

    def __init__(self, inner: Producer, stop_after: int) -> None:
        self.inner = inner
        self.stop_after = stop_after
        self.sends = 0

    def send(self, records: Sequence[OutgoingRecord]) -> None:
        self.inner.send(records)
        self.sends += 1
        if self.sends == self.stop_after:
            freeze_self()

    def close(self) -> None:
        self.inner.close()


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="relay_worker", description=__doc__)
    add_bus_arguments(parser)
    parser.add_argument("--db", required=True, help="the service database (SQLAlchemy URL)")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--write", type=int, default=0, help="messages to add first")
    parser.add_argument("--keys", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--lease-s", type=float, default=1.0)
    parser.add_argument("--sigstop-after-sends", type=int, default=0)
    parser.add_argument("--timeout-s", type=float, default=60.0)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    db = Database(args.db)
    store = ServiceStore(db)
    store.create()
    keys = [f"key-{i}" for i in range(args.keys)]
    records = keyed_stream(args.topic, keys, args.write)
    for i in range(0, len(records), WRITE_CHUNK):
        with db.transaction() as conn:
            store.outbox.add(conn, records[i : i + WRITE_CHUNK])
    bus = bus_from_args(args)
    producer = StoppingProducer(bus.producer(), args.sigstop_after_sends)
    relay = OutboxRelay(
        db, store.outbox, producer, batch_size=args.batch_size, lease_s=args.lease_s
    )
    stop = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stop,), name="relay")
    thread.start()

    def drained() -> bool:
        with db.read() as conn:
            return store.outbox.pending(conn) == 0

    try:
        eventually(drained, timeout_s=args.timeout_s, what="the outbox drained", interval_s=0.05)
    finally:
        stop.set()
        thread.join()
        producer.close()
        bus.close()
        db.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
