"""Helpers for the schema registry contract tests: backends, a threaded server, schemas.

Each backend is a picklable `RegistryTarget`, so a test can open the same registry in
other OS processes. A backend is one entry in `BACKENDS` (PostgreSQL's runs on the
session's engines and is marked `distributed`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from eventmart.platform.db import Database
from eventmart.platform.schemas.http import HttpSchemaRegistry
from eventmart.platform.schemas.registry import SchemaRegistry
from eventmart.platform.schemas.rest import create_app
from eventmart.platform.schemas.sql import SqlSchemaRegistry
from tests.engines import postgres_registry


@dataclass(frozen=True)
class RegistryTarget:
    """Where a registry lives: a SQLAlchemy URL (`sql`) or a REST base URL (`http`)."""

    kind: str
    url: str

    def open(self) -> SchemaRegistry:
        if self.kind == "sql":
            return SqlSchemaRegistry(Database(self.url))
        if self.kind == "http":
            return HttpSchemaRegistry(self.url)
        raise ValueError(self.kind)

    def close(self, registry: SchemaRegistry) -> None:
        if isinstance(registry, HttpSchemaRegistry):
            registry.close()


@contextmanager
def serve_in_thread(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free 127.0.0.1 port in a daemon thread; yield its URL."""
    # Port 0: the kernel picks a free port at bind time, so parallel tests never collide.
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the registry server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'registry.db'}"


@contextmanager
def _sql_sqlite(tmp_path: Path) -> Iterator[RegistryTarget]:
    yield RegistryTarget("sql", sqlite_url(tmp_path))


@contextmanager
def _http(tmp_path: Path) -> Iterator[RegistryTarget]:
    backing = SqlSchemaRegistry(Database(sqlite_url(tmp_path)))
    with serve_in_thread(create_app(backing)) as url:
        yield RegistryTarget("http", url)


BACKENDS: dict[str, Callable[[Path], AbstractContextManager[RegistryTarget]]] = {
    "sql-sqlite": _sql_sqlite,
    "http": _http,
    "sql-postgres": postgres_registry,
}


# --- schemas ------------------------------------------------------------------------------


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def record(*fields: dict[str, Any], name: str = "Order", namespace: str = "test") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": namespace, "fields": fields})


# --- a worker for the multi-process test (module level, so spawned processes import it) --


def register_many(
    target: RegistryTarget, schemas: list[str], barrier: Any, out: Any, worker: int
) -> None:
    """Register each schema under two subjects; report the ids as [race.i, race.copy.i, ...].

    The two workers take the subjects in opposite orders, so they collide both on one
    subject (same version) and across subjects (same new schema text, one global id).
    """
    registry = target.open()
    try:
        barrier.wait(timeout=60)
        ids = []
        for i, text in enumerate(schemas):
            subjects = [f"race.{i}", f"race.copy.{i}"]
            order = subjects if worker % 2 == 0 else subjects[::-1]
            got = {subject: registry.register(subject, text) for subject in order}
            ids += [got[s] for s in subjects]
        out.put((worker, ids))
    except BaseException as e:
        out.put((worker, repr(e)))
        raise
    finally:
        target.close(registry)
