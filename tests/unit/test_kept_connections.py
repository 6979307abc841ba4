"""A service loop's thread keeps its SQLite connections between transactions."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from eventmart.platform.db import Database, keep_connections


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'kept.db'}")
    with database.transaction() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER NOT NULL)"))
    return database


def _count(db: Database) -> int:
    with db.read() as conn:
        return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())


def test_a_keeping_thread_reuses_one_connection_per_role(db: Database) -> None:
    with keep_connections():
        with db.transaction() as first:
            first.execute(text("INSERT INTO t VALUES (1)"))
        with db.transaction() as second:
            second.execute(text("INSERT INTO t VALUES (2)"))
        with db.read() as reader:
            assert reader.execute(text("SELECT count(*) FROM t")).scalar_one() == 2
        with db.read() as reader_again:
            pass
        assert second is first
        assert reader_again is reader
        assert reader is not first  # reads keep their own (BEGIN, not BEGIN IMMEDIATE)
    # The block closed them; without it every transaction checks one out of the pool.
    assert first.closed and reader.closed
    with db.transaction() as a:
        pass
    with db.transaction() as b:
        pass
    assert a is not b


def test_a_transaction_inside_another_takes_a_pooled_connection(db: Database) -> None:
    with keep_connections(), db.transaction() as outer:
        outer.execute(text("INSERT INTO t VALUES (1)"))
        with db.read() as inner_read:
            # WAL: a second connection sees the last commit, not the open transaction.
            assert inner_read.execute(text("SELECT count(*) FROM t")).scalar_one() == 0
        with db.read() as kept_read:
            pass
        assert inner_read is kept_read  # the reader role was free: kept
        assert inner_read is not outer
    assert _count(db) == 1


def test_a_failed_transaction_rolls_back_and_the_kept_connection_goes_on(db: Database) -> None:
    with keep_connections():
        with pytest.raises(RuntimeError), db.transaction() as conn:
            conn.execute(text("INSERT INTO t VALUES (1)"))
            raise RuntimeError("handler failed")
        with db.transaction() as again:
            assert not again.closed
            again.execute(text("INSERT INTO t VALUES (2)"))
        assert again is conn
        assert _count(db) == 1
        with db.read() as reader:
            assert reader.execute(text("SELECT max(n) FROM t")).scalar_one() == 2


def test_threads_keep_their_own_connections(db: Database) -> None:
    seen: dict[str, object] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def loop(name: str) -> None:
        try:
            with keep_connections():
                for i in range(20):
                    with db.transaction() as conn:
                        conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": i})
                        seen.setdefault(name, conn)
                        assert seen[name] is conn
                    if i == 0:
                        barrier.wait(timeout=10)
        except BaseException as e:  # reported below, from the test's thread
            errors.append(e)

    threads = [threading.Thread(target=loop, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    assert seen["a"] is not seen["b"]
    assert _count(db) == 40
