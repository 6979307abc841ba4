"""Typed settings for every eventmart process (environment variables `EVENTMART_*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventmart.platform.errors import ConfigurationError

DEV_SECRET = "dev-only-secret-change-me-0123456789abcdef"

Profile = Literal["embedded", "distributed"]


class Settings(BaseSettings):
    """Everything a process needs to know to wire its adapters; nothing connects here."""

    model_config = SettingsConfigDict(env_prefix="EVENTMART_", extra="ignore")

    profile: Profile = "embedded"
    data_dir: Path = Path(".eventmart")
    environment: Literal["development", "test", "production"] = "development"
    jwt_secret: SecretStr = SecretStr(DEV_SECRET)

    # The log
    partitions: int = Field(8, ge=1, le=256)
    consumer_batch_size: int = Field(500, ge=1)
    max_in_flight: int = Field(2000, ge=1)
    session_timeout_s: float = Field(6.0, gt=0)
    heartbeat_interval_s: float = Field(1.0, gt=0)
    poll_interval_s: float = Field(0.02, gt=0)
    retry_max_attempts: int = Field(5, ge=1)
    retry_backoff_initial_s: float = Field(0.05, ge=0)
    retry_backoff_max_s: float = Field(2.0, ge=0)

    # Processes and ports (services listen on port_base + their index, see services/)
    host: str = "127.0.0.1"
    web_port: int = 8000
    mobile_port: int = 8001
    registry_port: int = 8081
    port_base: int = 8100
    demo_data: bool = True

    # CPython's cyclic garbage collector in a serving process (see runtime.settle_heap):
    # allocations between young-generation collections; 0 keeps Python's default (700).
    gc_young_threshold: int = Field(50_000, ge=0)

    # Tracing: the share of new traces recorded (children follow their parent's choice)
    trace_sample_ratio: float = Field(1.0, ge=0.0, le=1.0)

    # The edge
    rate_limit: str = "50/second"  # per client (user, else IP); `limits` notation
    # Admission (see eventmart.edge.gateway): requests worked on at once, requests in the
    # gateway at all (working or waiting), and how long one may wait for its turn.
    max_concurrent_requests: int = Field(32, ge=1)
    max_inflight_requests: int = Field(256, ge=1)
    max_queue_wait_s: float = Field(0.5, gt=0)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    # Checkout refused while ordering lags more than this many messages, or while its
    # backlog would take longer than this many seconds to clear at its recent rate.
    shed_lag_threshold: int = Field(5000, ge=1)
    shed_backlog_s: float = Field(0.5, gt=0)
    downstream_timeout_s: float = Field(2.0, gt=0)

    # The shop's business timings
    payment_deadline_s: float = Field(10.0, gt=0)
    payment_slow_delay_s: float = Field(3.0, ge=0)
    reservation_ttl_s: float = Field(900.0, gt=0)
    shipping_dispatch_delay_s: float = Field(20.0, ge=0)
    shipping_delivery_delay_s: float = Field(40.0, ge=0)

    # Several shops on one set of engines: each prefixes its topics, consumer groups,
    # PostgreSQL databases and Cassandra keyspace with its namespace ("" = none).
    namespace: str = Field("", pattern=r"^([a-z][a-z0-9_]{0,30})?$")

    # Distributed profile addresses
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    postgres_url: str = "postgresql+psycopg://postgres@127.0.0.1:5433"
    cassandra_hosts: str = "127.0.0.1"
    cassandra_port: int = 9042
    schema_registry_url: str | None = None
    temporal_address: str = "127.0.0.1:7233"

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> Settings:
        if self.environment == "production" and self.jwt_secret.get_secret_value() == DEV_SECRET:
            raise ConfigurationError(
                "EVENTMART_JWT_SECRET still holds the development placeholder; "
                "set it to a long random value before running in production"
            )
        if len(self.jwt_secret.get_secret_value()) < 32:
            raise ConfigurationError("EVENTMART_JWT_SECRET must be at least 32 characters long")
        return self

    def path(self, *parts: str) -> Path:
        """A path inside the data directory, creating the directory on first use."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir.joinpath(*parts)

    def service_url(self, name: str) -> str:
        """The base URL of a service's internal HTTP API."""
        from eventmart.services import SERVICE_INDEX

        return f"http://{self.host}:{self.port_base + SERVICE_INDEX[name]}"

    def store_url(self, name: str) -> str:
        """The SQLAlchemy URL of one service's own database."""
        if self.profile == "embedded":
            return f"sqlite:///{self.path(f'{name}.db').resolve()}"
        return f"{self.postgres_url.rstrip('/')}/{self.namespace or 'eventmart'}_{name}"

    @property
    def cassandra_keyspace(self) -> str:
        return f"{self.namespace or 'eventmart'}_views"
