"""`eventmart up` stops on Ctrl-C even when a script started it in the background.

A non-interactive shell starts a background job (`eventmart up &`) with SIGINT ignored,
and Python then installs no KeyboardInterrupt handler of its own: the supervisor has to
install one itself (`Supervisor.start` and `run_forever` do). `tests/system` starts every
shop with SIGINT as its shell left it, so the shop fixture's Ctrl-C covers `start` too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from eventmart.stack.base import process_alive

SUPERVISE = """
import sys
from pathlib import Path

from eventmart.stack.base import process_alive
from eventmart.platform.settings import Settings
from eventmart.supervisor import Managed, Supervisor

data = Path(sys.argv[1])
supervisor = Supervisor(Settings(data_dir=data, environment="test"))
child = Managed("sleeper", [sys.executable, "-c", "import time; time.sleep(120)"], 0,
                data / "sleeper.log")
supervisor.processes = [child]
child.start(supervisor.env)
print("child", child.proc.pid, flush=True)
supervisor.run_forever()
print("stopped", flush=True)
"""


def _ignore_sigint() -> None:
    # What a non-interactive shell does for a background job.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def test_sigint_stops_a_supervisor_started_with_sigint_ignored(tmp_path: Path) -> None:
    child_pid = 0
    proc = subprocess.Popen(
        [sys.executable, "-c", SUPERVISE, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_ignore_sigint,  # noqa: PLW1509 - the point of the test
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("child "), first
        child_pid = int(first.split()[1])
        time.sleep(1.0)  # in the watch loop

        proc.send_signal(signal.SIGINT)

        out, _ = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"SIGINT did not stop the supervisor; it wrote: {out!r}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    alive = process_alive(child_pid)
    if alive:  # a failed run must not leave the sleeper behind
        with contextlib.suppress(OSError):
            os.kill(child_pid, signal.SIGKILL)
    assert "stopping eventmart" in out and out.rstrip().endswith("stopped"), out
    assert not alive, f"the supervisor left its child {child_pid} running"
