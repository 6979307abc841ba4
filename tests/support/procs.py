"""Worker OS processes for the multi-process tests: start, stop, continue, kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def freeze_self() -> None:
    """Stop this whole process (SIGSTOP) before the calling thread runs another line.

    The signal goes to the calling thread: sent to the process, the kernel may hand it
    to another thread, and the caller runs on until that thread starts the group stop.
    """
    signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)


class WorkerProcess:
    """`python -m <module> <args>` run from the repository root, output to a log file."""

    def __init__(self, name: str, module: str, args: Sequence[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def assert_alive(self) -> None:
        code = self.popen.poll()
        if code is not None:
            raise AssertionError(f"{self.name} exited with {code}:\n{self.log_tail()}")

    def wait_stopped(self, timeout_s: float) -> None:
        """Wait until the process stops itself (SIGSTOP). Each stop is reported once."""
        deadline = time.monotonic() + timeout_s
        while True:
            pid, status = os.waitpid(self.pid, os.WUNTRACED | os.WNOHANG)
            if pid:
                if os.WIFSTOPPED(status):
                    return
                # It ended instead; keep its status for Popen (we just reaped it).
                self.popen.returncode = os.waitstatus_to_exitcode(status)
                self.assert_alive()
            if time.monotonic() >= deadline:
                raise AssertionError(f"{self.name} did not stop within {timeout_s}s")
            time.sleep(0.01)

    def cont(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def kill9(self) -> None:
        self.popen.kill()
        self.popen.wait(timeout=10)

    def finish(self, timeout_s: float = 20.0) -> int:
        """SIGTERM (graceful leave) and the exit code."""
        if self.popen.poll() is None:
            self.popen.terminate()
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill9()
            raise AssertionError(
                f"{self.name} ignored SIGTERM for {timeout_s}s:\n{self.log_tail()}"
            ) from None

    def wait_exit(self, timeout_s: float) -> int:
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} still running after {timeout_s}s:\n{self.log_tail()}"
            ) from None

    def cleanup(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()  # SIGKILL ends a stopped process too
            self.popen.wait(timeout=10)
