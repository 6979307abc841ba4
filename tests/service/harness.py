"""Run one real service in-process for its tests: its runtime (consumers, relay, timers),
its API through a TestClient, and the bus to publish to it and read what it emits."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from fastapi.testclient import TestClient

from eventmart.platform.auth import Principal, issue_token
from eventmart.platform.bus import partition_for
from eventmart.platform.infra import Platform
from eventmart.platform.messages import Envelope, Message, new_id
from eventmart.platform.messaging import MessageWriter
from eventmart.platform.runtime import ServiceRuntime
from eventmart.platform.settings import Settings
from eventmart.services import build_service

M = TypeVar("M", bound=Message)


class ServiceHarness:
    def __init__(self, name: str, settings: Settings) -> None:
        self.name = name
        self.settings = settings
        self.platform = Platform(settings)
        self.service = build_service(name, self.platform)
        self.runtime = ServiceRuntime(self.service, self.platform)
        self.writer = MessageWriter(self.platform.codec, "test-driver")
        self._producer = self.platform.bus.producer()
        self.client: TestClient

    def start(self) -> ServiceHarness:
        app = self.runtime.build_app()
        self.runtime.start()
        self.client = TestClient(app)
        return self

    def stop(self) -> None:
        self.runtime.stop()
        self._producer.close()
        self.platform.close()

    # -- driving ----------------------------------------------------------------------
    def publish(self, *messages: Message) -> None:
        """Put messages on the bus as another service would (through its relay)."""
        self._producer.send([self.writer.record(m) for m in messages])

    def token(
        self, role: str = "customer", user_id: str | None = None, email: str = "shopper@example.com"
    ) -> dict[str, str]:
        """Authorization headers for a caller with this role."""
        principal = Principal(user_id=user_id or new_id(), email=email, role=role)
        return {"Authorization": f"Bearer {issue_token(self.settings, principal)}"}

    # -- observing --------------------------------------------------------------------
    def emitted(self, message_type: type[M], key: str | None = None) -> list[tuple[Envelope, M]]:
        """Every message of this type on its topic (optionally for one key), in log order."""
        bus = self.platform.bus
        topic = message_type.topic
        bus.ensure_topic(topic)
        partitions = bus.topics()[topic]
        wanted = [partition_for(key, partitions)] if key is not None else range(partitions)
        out: list[tuple[Envelope, M]] = []
        for p in wanted:
            offset = 0
            while True:
                batch = bus.read(topic, p, offset, 1000)
                for r in batch:
                    env = Envelope.from_record(r)
                    if env.type == message_type.type_name() and (key is None or r.key == key):
                        msg = self.platform.codec.decode(env.type, r.value)
                        out.append((env, msg))  # type: ignore[arg-type]
                if len(batch) < 1000:
                    break
                offset = batch[-1].offset + 1
        return out

    def wait_for(
        self,
        message_type: type[M],
        key: str | None = None,
        count: int = 1,
        where: Callable[[M], bool] = lambda _m: True,
        timeout_s: float = 10.0,
    ) -> list[M]:
        """Wait until at least `count` matching messages were emitted; return them all."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [m for _, m in self.emitted(message_type, key) if where(m)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} emitted {len(found)} {message_type.__name__} "
                    f"(key={key}), expected {count} within {timeout_s}s"
                )
            time.sleep(0.02)

    def eventually(self, check: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        """Retry `check` (an assertion or a truthy result) until it passes."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                result = check()
                if result is None or result:
                    return result
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
            if time.monotonic() > deadline:
                raise AssertionError(f"condition still false after {timeout_s}s: {check}")
            time.sleep(0.02)


@contextmanager
def running(name: str, settings: Settings) -> Iterator[ServiceHarness]:
    harness = ServiceHarness(name, settings).start()
    try:
        yield harness
    finally:
        harness.stop()
