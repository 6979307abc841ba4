"""Writers of one SQLite file take turns at a gate instead of in SQLite's busy handler.

SQLite lets one writer in at a time; the others, on BEGIN IMMEDIATE, retry in its busy
handler, which sleeps between attempts (1, 2, 5, 10 ... up to 100 ms). Under load the
lock is often free while every waiter sleeps: transactions wait tens of milliseconds for
nothing. A gate queues them instead: a thread lock for the threads of one process, and,
for a file several processes write (the embedded log), an exclusive `flock` on a file
beside it, which wakes the next process the moment the holder lets go. SQLite's own
locking still guards the data; the gate only orders the writers.
"""

from __future__ import annotations

import fcntl
import os
import threading
from types import TracebackType


class WriteGate:
    """The gate of one SQLite file in this process (get it from `write_gate`)."""

    def __init__(self, path: str, across_processes: bool) -> None:
        self._lock = threading.Lock()
        self._path = path + ".gate"
        self._across = across_processes
        self._fd: int | None = None
        self._holder: int | None = None

    def __enter__(self) -> None:
        me = threading.get_ident()
        if self._holder == me:
            # A write transaction inside another on the same file would wait for itself.
            raise RuntimeError(f"nested write transaction on {self._path[:-5]}")
        self._lock.acquire()
        if self._across:
            try:
                if self._fd is None:
                    self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o644)
                fcntl.flock(self._fd, fcntl.LOCK_EX)  # blocks without holding the GIL
            except BaseException:
                self._lock.release()
                raise
        self._holder = me

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._holder = None
        try:
            if self._across and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._lock.release()


class _Gates:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by_file: dict[tuple[str, bool], WriteGate] = {}

    def forget(self) -> None:
        self.lock = threading.Lock()
        self.by_file = {}


_gates = _Gates()


def write_gate(path: str | os.PathLike[str], across_processes: bool = False) -> WriteGate:
    """The process' one gate for this file (the same object for every connection)."""
    key = (os.path.abspath(path), across_processes)
    with _gates.lock:
        gate = _gates.by_file.get(key)
        if gate is None:
            gate = _gates.by_file[key] = WriteGate(key[0], across_processes)
        return gate


# A forked child must not inherit a lock another thread held, nor share the parent's open
# file (its flock is the parent's): it starts with gates of its own.
os.register_at_fork(after_in_child=_gates.forget)
