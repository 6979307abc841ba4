"""The test harness stops engines an ended session left running, and only those."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventmart.stack.base import process_alive
from tests.engines import FOLDER_PREFIX, OWNER_FILE, stop_orphans


def _session_folder(base: Path, name: str, owner: int) -> Path:
    folder = base / f"{FOLDER_PREFIX}{name}"
    (folder / "stack" / "kafka").mkdir(parents=True)
    (folder / OWNER_FILE).write_text(f"{owner}\n")
    return folder


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def fake_engines() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for child in started:
        child.kill()
        child.wait()


def _fake_kafka(folder: Path, started: list[subprocess.Popen[bytes]]) -> int:
    """A process that passes for the folder's Kafka: its pid file, and its command line
    naming the engine's folder (what the stack checks before it signals a pid)."""
    engine_dir = folder / "stack" / "kafka"
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", str(engine_dir)],
        start_new_session=True,
    )
    started.append(child)
    (engine_dir / "kafka.pid").write_text(f"{child.pid}\n")
    return child.pid


def test_only_a_dead_sessions_running_engines_are_stopped(
    tmp_path: Path, fake_engines: list[subprocess.Popen[bytes]]
) -> None:
    orphaned = _session_folder(tmp_path, "killed", _dead_pid())
    orphan = _fake_kafka(orphaned, fake_engines)
    other_session = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    fake_engines.append(other_session)
    live = _session_folder(tmp_path, "running", other_session.pid)
    kept = _fake_kafka(live, fake_engines)
    failed = _session_folder(tmp_path, "failed", _dead_pid())  # nothing runs: logs kept
    (failed / "stack" / "kafka" / "kafka.log").write_text("why it failed\n")

    assert stop_orphans(tmp_path) == [orphaned]

    fake_engines[0].wait(timeout=15)
    assert not process_alive(orphan)
    assert not orphaned.exists()
    assert process_alive(kept, marker=str(live))
    assert (failed / "stack" / "kafka" / "kafka.log").exists()
    assert stop_orphans(tmp_path) == []
