"""The write gate that orders SQLite writers (eventmart.platform.sqlite_gate)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from eventmart.platform.db import Database, sqlite_file
from eventmart.platform.sqlite_gate import write_gate

HOLD = """
import sys, time
from eventmart.platform.sqlite_gate import write_gate
with write_gate(sys.argv[1], across_processes=True):
    print("holding", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_one_gate_per_file_and_kind(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    assert write_gate(path) is write_gate(str(path))
    assert write_gate(path) is not write_gate(tmp_path / "y.db")
    assert write_gate(path) is not write_gate(path, across_processes=True)


def test_threads_take_turns_and_a_failing_writer_lets_the_next_in(tmp_path: Path) -> None:
    gate = write_gate(tmp_path / "x.db")
    inside: list[int] = []
    overlaps: list[int] = []

    def write(i: int) -> None:
        with gate:
            inside.append(i)
            if len(inside) > 1:
                overlaps.append(i)
            time.sleep(0.005)
            inside.remove(i)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []

    with pytest.raises(ValueError), gate:
        raise ValueError("a handler failed")
    with gate:  # released after the failure
        pass


def test_a_nested_write_on_the_same_file_fails_instead_of_waiting_for_itself(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite:///{tmp_path / 'svc.db'}")
    with db.transaction(), pytest.raises(RuntimeError, match="nested write transaction"):  # noqa: SIM117
        with db.transaction():
            pass
    with db.transaction() as conn:  # the outer one ended normally
        conn.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    db.dispose()


def test_another_process_holding_the_gate_keeps_this_one_out(tmp_path: Path) -> None:
    path = tmp_path / "bus.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), "0.6"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with write_gate(path, across_processes=True):
            waited = time.monotonic() - started
        assert waited > 0.3, f"entered after {waited:.3f}s while another process held the gate"
    finally:
        holder.wait(timeout=10)
    assert holder.returncode == 0


@pytest.mark.parametrize(
    ("url", "file"),
    [
        ("sqlite:////data/bus.db", "/data/bus.db"),
        ("sqlite:///rel/x.db", "rel/x.db"),
        ("sqlite:///file:/data/x.db?mode=ro&uri=true", "/data/x.db"),
        ("sqlite://", None),
        ("sqlite:///:memory:", None),
        ("postgresql+psycopg://u@h:5432/ordering", None),
    ],
)
def test_the_file_a_url_names_and_which_get_a_gate(url: str, file: str | None) -> None:
    assert sqlite_file(url) == file
