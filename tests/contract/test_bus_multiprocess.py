"""The bus contract across OS processes: group members and outbox relays that really run,
stall, die and join.

Workers are `python -m tests.support.bus_worker` and `tests.support.relay_worker`; they
rebuild the test's bus from their command line (tests/support/backends.py), so every bus
backend runs these tests unchanged. The consumer workers share one service database in
which every message handled for the first time leaves one `effects` row (inbox claim and
effect in one transaction, then the offset commit): "nothing lost, nothing doubled" and
"in order per key" are queries on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from eventmart.platform.bus import Bus, OutgoingRecord
from eventmart.platform.db import Database
from eventmart.platform.store import ServiceStore
from tests.contract.conftest import BusFactory
from tests.support import eventually
from tests.support.backends import bus_cli_args
from tests.support.bus_worker import STALE_COMMIT
from tests.support.effects import EffectsStore
from tests.support.procs import WorkerProcess
from tests.support.records import (
    first_occurrences,
    id_of,
    ids_sent,
    keyed_stream,
    message_id,
    read_everything,
    seqs_by_key,
)

pytestmark = pytest.mark.multiprocess

PARTITIONS = 8
SESSION_S = 2.0
DEADLINE_S = 60.0  # for anything that takes "a while" on a loaded 2-core machine


@pytest.fixture
def mp_bus(make_bus: BusFactory) -> Bus:
    return make_bus(partitions=PARTITIONS, session_timeout_s=SESSION_S, heartbeat_interval_s=0.2)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[[str, str, Sequence[str]], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(name: str, module: str, args: Sequence[str]) -> WorkerProcess:
        worker = WorkerProcess(name, module, args, tmp_path)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.cleanup()


class Group:
    """One consumer group on one topic: its worker processes and their service database."""

    def __init__(
        self,
        bus: Bus,
        effects: EffectsStore,
        spawn: Callable[[str, str, Sequence[str]], WorkerProcess],
        unique: Callable[[str], str],
    ) -> None:
        self.bus = bus
        self.effects = effects
        self.spawn = spawn
        self.topic = unique("topic")
        self.name = unique("group")
        self.workers: dict[str, WorkerProcess] = {}
        bus.ensure_topic(self.topic, PARTITIONS)

    def start(self, name: str, *options: str) -> WorkerProcess:
        args = [
            *bus_cli_args(self.bus),
            "--db",
            self.effects.db.url,
            "--group",
            self.name,
            "--topic",
            self.topic,
            "--worker",
            name,
            *options,
        ]
        worker = self.spawn(name, "tests.support.bus_worker", args)
        self.workers[name] = worker
        return worker

    def produce(self, count: int, keys: int = 100, prefix: str = "key") -> list[OutgoingRecord]:
        records = keyed_stream(self.topic, [f"{prefix}-{i}" for i in range(keys)], count)
        producer = self.bus.producer()
        for i in range(0, len(records), 500):
            producer.send(records[i : i + 500])
        producer.close()
        return records

    def alive(self, *names: str) -> bool:
        for name in names:
            self.workers[name].assert_alive()
        return True

    def wait_assignment(
        self, expected: Callable[[dict[str, set[int]]], bool], what: str, *names: str
    ) -> dict[str, set[int]]:
        """Wait until the workers' reported assignments satisfy `expected`."""

        def check() -> dict[str, set[int]] | None:
            self.alive(*names)
            seen = self.effects.assignment_of()
            return seen if expected(seen) else None

        return eventually(
            check,
            timeout_s=DEADLINE_S,
            what=lambda: f"{what}; reported {self.effects.assignment_of()}",
            interval_s=0.05,
        )

    def wait_split(self, *names: str) -> dict[str, set[int]]:
        """Wait until `names` each report partitions, disjoint and together all of them."""

        def split(seen: dict[str, set[int]]) -> bool:
            sets = [seen.get(n, set()) for n in names]
            return (
                all(sets)
                and sum(len(s) for s in sets) == PARTITIONS
                and set().union(*sets) == set(range(PARTITIONS))
            )

        return self.wait_assignment(split, f"a split among {names}", *names)

    def wait_effects(self, count: int, *names: str) -> None:
        eventually(
            lambda: self.alive(*names) and self.effects.effect_count() >= count,
            timeout_s=DEADLINE_S,
            what=lambda: f"{self.effects.effect_count()} of {count} effects",
            interval_s=0.05,
        )

    def finish(self, *names: str) -> None:
        for name in names:
            worker = self.workers[name]
            assert worker.finish() == 0, f"{name} failed:\n{worker.log_tail()}"

    def assert_exactly_once_in_key_order(self, sent: Sequence[OutgoingRecord]) -> None:
        per_message = self.effects.effects_per_message()
        expected = ids_sent(sent)
        doubled = {m: n for m, n in per_message.items() if n > 1}
        assert not doubled, f"doubled effects: {list(doubled.items())[:10]}"
        lost = expected - set(per_message)
        assert not lost, f"{len(lost)} messages without an effect, e.g. {sorted(lost)[:10]}"
        assert set(per_message) == expected
        handled: dict[str, list[int]] = {}
        for _, _, _, key, seq in self.effects.effect_rows():  # in commit order
            handled.setdefault(key, []).append(seq)
        disordered = [k for k, seqs in handled.items() if seqs != list(range(len(seqs)))]
        assert not disordered, f"keys handled out of order: {disordered[:5]}"


@pytest.fixture
def group(
    mp_bus: Bus,
    database: Database,
    spawn: Callable[[str, str, Sequence[str]], WorkerProcess],
    unique: Callable[[str], str],
) -> Group:
    effects = EffectsStore(database)
    effects.create()
    return Group(mp_bus, effects, spawn, unique)


def committed_offsets(bus: Bus, group: Group) -> dict[int, int]:
    return {x.partition: x.committed for x in bus.lag(group.name) if x.topic == group.topic}


# -- consumer groups ------------------------------------------------------------------
def test_two_processes_in_one_group_split_the_partitions(group: Group) -> None:
    group.start("w1")
    group.start("w2")
    group.wait_split("w1", "w2")

    sent = group.produce(1000)
    group.wait_effects(len(sent), "w1", "w2")
    group.finish("w1", "w2")

    group.assert_exactly_once_in_key_order(sent)
    handled = group.effects.partitions_by_worker()
    assert set(handled) == {"w1", "w2"}, "both got work"
    assert not handled["w1"] & handled["w2"], "no partition handled by both"
    assert handled["w1"] | handled["w2"] == set(range(PARTITIONS))


def test_a_member_killed_mid_stream_is_replaced_and_no_effect_is_lost_or_doubled(
    group: Group,
) -> None:
    group.start("survivor", "--max-records", "40", "--delay-ms", "10")
    # The victim hangs after its third batch's effects committed and before that batch's
    # offsets did; it still heartbeats until the kill.
    victim = group.start("victim", "--max-records", "40", "--hang-after-batches", "3")
    split = group.wait_split("survivor", "victim")
    sent = group.produce(2000)
    eventually(
        lambda: group.alive("victim") and group.effects.batch_count("victim") >= 3,
        timeout_s=DEADLINE_S,
        what="the victim handled three batches",
    )

    victim.kill9()
    killed_at = time.monotonic()
    group.wait_assignment(
        lambda seen: seen.get("survivor") == set(range(PARTITIONS)),
        "the survivor owns every partition",
        "survivor",
    )
    takeover_s = time.monotonic() - killed_at
    group.wait_effects(len(sent), "survivor")
    group.finish("survivor")

    group.assert_exactly_once_in_key_order(sent)
    delivered, new = group.effects.deliveries()
    assert delivered > new, "the victim's uncommitted batch came again and the inbox dropped it"
    handled = group.effects.partitions_by_worker()
    assert split["victim"] <= handled["survivor"], "the survivor took the victim's partitions"
    assert takeover_s < SESSION_S + 30, f"the takeover took {takeover_s:.1f}s"


def test_a_stalled_member_loses_its_partitions_and_its_late_commit_moves_nothing(
    group: Group,
) -> None:
    group.start("steady")
    # The zombie stops (SIGSTOP: no polls, no heartbeats) after its second batch's effects
    # committed; continued, it commits that batch's offsets long after it lost them.
    zombie = group.start("zombie", "--max-records", "40", "--sigstop-after-batches", "2")
    split = group.wait_split("steady", "zombie")
    sent = group.produce(1200)
    zombie.wait_stopped(DEADLINE_S)

    group.wait_assignment(
        lambda seen: seen.get("steady") == set(range(PARTITIONS)),
        "steady owns every partition once the zombie's session expired",
        "steady",
    )
    group.wait_effects(len(sent), "steady")
    ends = group.bus.end_offsets(group.topic)
    eventually(
        lambda: committed_offsets(group.bus, group) == ends,
        timeout_s=DEADLINE_S,
        what=lambda: f"steady committed {committed_offsets(group.bus, group)} of {ends}",
    )

    zombie.cont()  # it commits its stale offsets, notes the milestone and stops again
    zombie.wait_stopped(DEADLINE_S)
    assert group.effects.reached("zombie", STALE_COMMIT)
    assert committed_offsets(group.bus, group) == ends, "the zombie's commit moved offsets"

    zombie.cont()  # back for good: it rejoins and gets partitions again
    group.wait_split("steady", "zombie")
    more = group.produce(400, keys=40, prefix="later")
    group.wait_effects(len(sent) + len(more), "steady", "zombie")
    group.finish("steady", "zombie")

    assert split["zombie"] <= group.effects.partitions_by_worker()["steady"]
    per_message = group.effects.effects_per_message()
    assert all(n == 1 for n in per_message.values()), "no doubled effect"
    assert set(per_message) == ids_sent(sent) | ids_sent(more), "none lost"


def test_a_third_process_joining_receives_partitions(group: Group) -> None:
    group.start("w1")
    group.start("w2")
    before = group.wait_split("w1", "w2")

    group.start("w3")
    after = group.wait_split("w1", "w2", "w3")
    sent = group.produce(800)
    group.wait_effects(len(sent), "w1", "w2", "w3")
    group.finish("w1", "w2", "w3")

    assert len(after["w1"]) < len(before["w1"]), "w1 gave partitions up"
    assert len(after["w2"]) < len(before["w2"]), "w2 gave partitions up"
    group.assert_exactly_once_in_key_order(sent)
    handled = group.effects.partitions_by_worker()
    assert handled["w3"] == after["w3"], "the newcomer handled its partitions"


def test_ten_thousand_messages_keep_per_key_order_across_two_processes(group: Group) -> None:
    group.start("w1", "--max-records", "500")
    group.start("w2", "--max-records", "500")
    group.wait_split("w1", "w2")

    sent = group.produce(10_000, keys=100)
    group.wait_effects(len(sent), "w1", "w2")
    group.finish("w1", "w2")

    group.assert_exactly_once_in_key_order(sent)
    assert set(group.effects.partitions_by_worker()) == {"w1", "w2"}


# -- outbox relay ---------------------------------------------------------------------
def test_a_relay_killed_mid_batch_loses_nothing(
    mp_bus: Bus,
    database: Database,
    spawn: Callable[[str, str, Sequence[str]], WorkerProcess],
    unique: Callable[[str], str],
) -> None:
    topic = unique("topic")
    mp_bus.ensure_topic(topic, PARTITIONS)
    store = ServiceStore(database)
    store.create()
    common = [*bus_cli_args(mp_bus), "--db", database.url, "--topic", topic, "--lease-s", "0.5"]
    total, keys, batch = 1000, 50, 20

    # Stops itself after its 10th batch is on the bus and before it leaves the outbox.
    first = spawn(
        "relay-1",
        "tests.support.relay_worker",
        [
            *common,
            *("--write", str(total), "--keys", str(keys), "--batch-size", str(batch)),
            *("--sigstop-after-sends", "10"),
        ],
    )
    first.wait_stopped(DEADLINE_S)
    with database.read() as conn:
        left = store.outbox.pending(conn)
    assert sum(mp_bus.end_offsets(topic).values()) == 10 * batch
    assert left == total - 9 * batch, "the tenth batch is published and still in the outbox"
    first.kill9()

    second = spawn("relay-2", "tests.support.relay_worker", [*common, "--batch-size", "50"])
    assert second.wait_exit(DEADLINE_S) == 0, second.log_tail()

    with database.read() as conn:
        assert store.outbox.pending(conn) == 0
    stored = read_everything(mp_bus, topic)
    assert len(stored) > total, "the batch in flight at the kill went out again"
    expected = {message_id(f"key-{k}", s) for k in range(keys) for s in range(total // keys)}
    assert {id_of(r) for r in stored} == expected, "every message is on the bus"
    for key, seqs in seqs_by_key(stored).items():
        assert first_occurrences(seqs) == list(range(total // keys)), f"{key} out of order"
