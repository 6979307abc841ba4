"""`eventmart stack`: the four engines start as plain processes, really serve, and stop.

The distributed tests run a private stack in a temporary data dir with every port shifted by
PORT_OFFSET, so they neither need nor disturb a developer's `eventmart stack up` on the
default ports. An engine that cannot start fails the run with its log's last lines: these
tests never skip, since a silently missing engine would hide every distributed test.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eventmart import stack
from eventmart.stack.cli import stack_app

# Kafka on 29092, PostgreSQL on 25433, Cassandra on 29042, Temporal on 27233: below the
# kernel's ephemeral range (32768+), so no client socket can be sitting on them.
PORT_OFFSET = 20000


def _port_open(address: str) -> bool:
    host, port = address.rsplit("@", 1)[-1].split("/", 1)[0].rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    # Not pytest's tmp_path: as root, PostgreSQL runs as user `postgres`, which cannot enter
    # /tmp/pytest-of-root (mode 0700).
    folder = Path(tempfile.mkdtemp(prefix="eventmart-stack-test-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def addresses(data_dir: Path) -> Iterator[dict[str, str]]:
    began = time.monotonic()
    failure: stack.StackError | None = None
    try:
        result = stack.up(data_dir=data_dir, port_offset=PORT_OFFSET)
    except stack.StackError as error:
        failure = error
    if failure is not None:
        stack.down(data_dir=data_dir)
        pytest.fail(f"eventmart stack up failed:\n{failure}", pytrace=False)
    print(f"stack up took {time.monotonic() - began:.1f} s: {result}")
    try:
        yield result
    finally:
        stack.down(data_dir=data_dir)


# --- the engines really work -----------------------------------------------------------------


@pytest.mark.distributed
def test_up_returns_every_engine_address(addresses: dict[str, str]) -> None:
    assert addresses == {
        "kafka": "127.0.0.1:29092",
        "postgres": "postgresql://postgres@127.0.0.1:25433/postgres",
        "cassandra": "127.0.0.1:29042",
        "temporal": "127.0.0.1:27233",
    }


@pytest.mark.distributed
def test_kafka_produces_and_consumes(addresses: dict[str, str]) -> None:
    from confluent_kafka import Consumer, Producer

    topic = f"stack-test-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": addresses["kafka"]})
    delivered: list[str] = []

    def on_delivery(error: object, message: object) -> None:
        delivered.append("ok" if error is None else f"error: {error}")

    producer.produce(topic, key=b"order-1", value=b"hello", on_delivery=on_delivery)
    assert producer.flush(30) == 0, "the message was not delivered within 30 s"
    assert delivered == ["ok"]

    consumer = Consumer(
        {
            "bootstrap.servers": addresses["kafka"],
            "group.id": f"{topic}-group",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 30
        message = None
        while message is None and time.monotonic() < deadline:
            polled = consumer.poll(1.0)
            if polled is not None and polled.error() is None:
                message = polled
        assert message is not None, "nothing consumed within 30 s"
        assert (message.key(), message.value()) == (b"order-1", b"hello")
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        assert len(partitions) == 8  # num.partitions for auto-created topics
    finally:
        consumer.close()


@pytest.mark.distributed
def test_postgres_answers(addresses: dict[str, str]) -> None:
    import psycopg

    with psycopg.connect(addresses["postgres"], connect_timeout=10) as connection:
        assert connection.execute("SELECT 1").fetchone() == (1,)
        row = connection.execute("SHOW max_connections").fetchone()
        assert row is not None
        assert int(row[0]) >= 200


@pytest.mark.distributed
def test_cassandra_stores_and_reads(addresses: dict[str, str]) -> None:
    from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
    from cassandra.policies import RoundRobinPolicy

    host, port = addresses["cassandra"].rsplit(":", 1)
    profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=30)
    cluster = Cluster([host], port=int(port), execution_profiles={EXEC_PROFILE_DEFAULT: profile})
    keyspace = f"stack_test_{uuid.uuid4().hex[:8]}"
    try:
        session = cluster.connect()
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        )
        session.execute(f"CREATE TABLE {keyspace}.products (id text PRIMARY KEY, name text)")
        session.execute(
            f"INSERT INTO {keyspace}.products (id, name) VALUES (%s, %s)", ("p-1", "Teapot")
        )
        row = session.execute(f"SELECT name FROM {keyspace}.products WHERE id = %s", ("p-1",)).one()
        assert row is not None
        assert row.name == "Teapot"
        session.execute(f"DROP KEYSPACE {keyspace}")
    finally:
        cluster.shutdown()


@pytest.mark.distributed
def test_temporal_accepts_clients(addresses: dict[str, str]) -> None:
    from temporalio.client import Client

    async def check() -> bool:
        client = await Client.connect(addresses["temporal"], namespace="default")
        return await client.service_client.check_health()

    assert asyncio.run(check())


# --- up is idempotent, status reports, down stops ------------------------------------------


@pytest.mark.distributed
def test_up_again_leaves_running_engines_alone(addresses: dict[str, str], data_dir: Path) -> None:
    before = {row.name: row.pid for row in stack.status(data_dir=data_dir)}
    began = time.monotonic()
    again = stack.up(data_dir=data_dir, port_offset=PORT_OFFSET)
    assert time.monotonic() - began < 15
    assert again == addresses
    after = {row.name: row.pid for row in stack.status(data_dir=data_dir)}
    assert after == before


@pytest.mark.distributed
def test_status_reports_running_engines(addresses: dict[str, str], data_dir: Path) -> None:
    rows = stack.status(data_dir=data_dir)
    assert [row.name for row in rows] == ["kafka", "postgres", "cassandra", "temporal"]
    for row in rows:
        assert row.state == "running", row
        assert row.pid is not None
        assert row.address == addresses[row.name]
        assert row.memory_bytes is not None
        assert row.memory_bytes < 2 * 2**30, f"{row.name} uses {row.memory_bytes} bytes"
        print(f"{row.name}: {row.memory_bytes / 2**20:.0f} MiB PSS, started in {row.startup_s} s")
    total = sum(row.memory_bytes or 0 for row in rows)
    assert total < 3 * 2**30, f"the stack uses {total / 2**20:.0f} MiB"

    result = CliRunner().invoke(stack_app, ["status", "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    assert result.output.count("running") == 4


@pytest.mark.distributed
def test_down_stops_everything(addresses: dict[str, str], data_dir: Path) -> None:
    pids = [row.pid for row in stack.status(data_dir=data_dir) if row.pid is not None]
    stopped = stack.down(data_dir=data_dir)
    assert stopped == ["kafka", "postgres", "cassandra", "temporal"]
    assert all(row.state == "stopped" for row in stack.status(data_dir=data_dir))
    for name, address in addresses.items():
        assert not _port_open(address), f"{name} still listens on {address}"
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _proc_state(pid), pid
    assert stack.down(data_dir=data_dir) == []  # nothing left to stop


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


# --- errors say what to do (no engine needed) ------------------------------------------------


def test_unknown_engine_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(stack.StackError, match=r"unknown engine.*choose from kafka"):
        stack.up(["kafak"], data_dir=tmp_path)


def test_busy_port_is_reported_before_launch(tmp_path: Path) -> None:
    offset = 21000
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 7233 + offset))
        squatter.listen()
        with pytest.raises(stack.StackError, match=rf"port {7233 + offset} .*already in use"):
            stack.up(["temporal"], data_dir=tmp_path, port_offset=offset)
    assert not (tmp_path / "stack" / "temporal" / "temporal.pid").exists()


def test_missing_jars_point_to_make_stack_deps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENTMART_INFRA_DIR", str(tmp_path / "no-infra"))
    with pytest.raises(stack.StackError, match="make stack-deps"):
        stack.up(["kafka"], data_dir=tmp_path, port_offset=22000)


def test_status_of_a_fresh_data_dir_shows_everything_stopped(tmp_path: Path) -> None:
    result = CliRunner().invoke(stack_app, ["status", "--data-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.output.count("stopped") == 4


def test_settings_environment_points_settings_at_the_stack() -> None:
    env = stack.settings_environment(
        {
            "kafka": "127.0.0.1:29092",
            "postgres": "postgresql://postgres@127.0.0.1:25433/postgres",
            "cassandra": "127.0.0.1:29042",
            "temporal": "127.0.0.1:27233",
        }
    )
    assert env == {
        "EVENTMART_PROFILE": "distributed",
        "EVENTMART_KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29092",
        "EVENTMART_POSTGRES_URL": "postgresql+psycopg://postgres@127.0.0.1:25433",
        "EVENTMART_CASSANDRA_HOSTS": "127.0.0.1",
        "EVENTMART_CASSANDRA_PORT": "29042",
        "EVENTMART_TEMPORAL_ADDRESS": "127.0.0.1:27233",
    }
