"""A bus backend on a command line: the test describes its bus, a worker process rebuilds it.

`--bus sqlite --path FILE` or `--bus kafka --bootstrap HOST:PORT`, plus the default
partition count, session timeout and heartbeat interval, so the worker's group members
behave like the test's own. A new backend is one branch in each function.
"""

from __future__ import annotations

import argparse
import sqlite3

from eventmart.platform.bus import Bus

BACKENDS = ("sqlite", "kafka")


def bus_cli_args(bus: Bus) -> list[str]:
    """Arguments that make `bus_from_args` build a client of the same log, with the same
    group session timeout and heartbeat interval."""
    from eventmart.platform.bus.sqlite_log import SqliteLog

    if isinstance(bus, SqliteLog):
        return [
            "--bus",
            "sqlite",
            "--path",
            str(bus.path),
            "--partitions",
            str(bus.default_partitions),
            "--session-timeout-s",
            str(bus.session_timeout_ms / 1000),
            "--heartbeat-interval-s",
            str(bus.heartbeat_interval_s),
        ]
    from eventmart.platform.bus.kafka import KafkaBus

    if isinstance(bus, KafkaBus):
        return [
            "--bus",
            "kafka",
            "--bootstrap",
            bus.bootstrap_servers,
            "--partitions",
            str(bus.default_partitions),
            "--session-timeout-s",
            str(bus.session_timeout_s),
            "--heartbeat-interval-s",
            str(bus.heartbeat_interval_s),
        ]
    raise AssertionError(f"no command-line description for {type(bus).__name__}")


def add_bus_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("bus")
    group.add_argument("--bus", choices=BACKENDS, required=True)
    group.add_argument("--path", help="sqlite: the log file")
    group.add_argument("--bootstrap", help="kafka: bootstrap servers, HOST:PORT[,...]")
    group.add_argument("--partitions", type=int, default=8, help="default partition count")
    group.add_argument("--session-timeout-s", type=float, default=2.0)
    group.add_argument("--heartbeat-interval-s", type=float, default=0.2)


def bus_from_args(args: argparse.Namespace) -> Bus:
    if args.bus == "sqlite":
        from eventmart.platform.bus.sqlite_log import SqliteLog

        if not args.path:
            raise SystemExit("--bus sqlite needs --path")
        return SqliteLog(
            args.path,
            default_partitions=args.partitions,
            session_timeout_s=args.session_timeout_s,
            heartbeat_interval_s=args.heartbeat_interval_s,
            poll_interval_s=0.01,
        )
    if args.bus == "kafka":
        from eventmart.platform.bus.kafka import KafkaBus
        from eventmart.platform.settings import Settings

        if not args.bootstrap:
            raise SystemExit("--bus kafka needs --bootstrap")
        settings = Settings.model_validate(
            {
                "profile": "distributed",
                "environment": "test",
                "kafka_bootstrap_servers": args.bootstrap,
                "partitions": args.partitions,
                "session_timeout_s": args.session_timeout_s,
                "heartbeat_interval_s": args.heartbeat_interval_s,
            }
        )
        return KafkaBus(settings)
    raise SystemExit(f"unknown bus backend {args.bus}")


def quiesce(args: argparse.Namespace) -> None:
    """Wait until no client in this process is writing to the log, just before the process
    freezes itself (SIGSTOP) to play a stalled member.

    A SQLite log has one write lock: a process frozen inside a heartbeat transaction would
    hold it and stall every other member too, which is not the failure under test. Taking
    and dropping the lock waits out such a transaction. Brokers (Kafka) need nothing here.
    """
    if args.bus == "sqlite":
        conn = sqlite3.connect(args.path, timeout=60, isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
        finally:
            conn.close()
