"""The one fixture of the process-level tests: `eventmart up` as a user runs it.

`eventmart` starts the real shop (every service, both gateways and the schema registry as
OS processes under the supervisor) in a fresh temporary data directory on free ports,
waits for "eventmart is up" (or fails with the tail of its output and logs), and stops it
with SIGINT at the end, asserting that it exits within 30 s and leaves no process behind.

It is session-scoped: tests that ask for the default shop share one. A test that needs
another shop asks for it by indirect parametrization, e.g.

    @pytest.mark.parametrize(
        "eventmart", [ShopOptions(instances=("ordering=2",))], indirect=True
    )

and gets its own (pytest runs the tests of one shop together).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.system.running import RunningShop, ShopOptions, launch

DEFAULT = ShopOptions()


@pytest.fixture(scope="session")
def eventmart(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningShop]:
    options: ShopOptions = getattr(request, "param", None) or DEFAULT
    with launch(tmp_path_factory.mktemp("eventmart") / "data", options) as shop:
        yield shop
