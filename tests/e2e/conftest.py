"""The end-to-end suite runs on both profiles: embedded, and distributed on the session's
real Kafka, PostgreSQL and Cassandra (each shop in a namespace of its own)."""

from __future__ import annotations

from typing import Any

import pytest

from eventmart import stack


@pytest.fixture(
    scope="module",
    params=["embedded", pytest.param("distributed", marks=pytest.mark.distributed)],
)
def profile(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Settings overrides that put a shop on the module's profile."""
    if request.param == "embedded":
        return {}
    env = stack.settings_environment(request.getfixturevalue("engines"))
    return {
        "profile": "distributed",
        "kafka_bootstrap_servers": env["EVENTMART_KAFKA_BOOTSTRAP_SERVERS"],
        "postgres_url": env["EVENTMART_POSTGRES_URL"],
        "cassandra_hosts": env["EVENTMART_CASSANDRA_HOSTS"],
        "cassandra_port": int(env["EVENTMART_CASSANDRA_PORT"]),
        "temporal_address": env["EVENTMART_TEMPORAL_ADDRESS"],
    }
