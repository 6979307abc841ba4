"""Prometheus metrics shared by every process (served at /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "eventmart_messages_total",
    "Messages seen by consumers, by group and outcome "
    "(handled, duplicate, skipped, retried, dead_lettered).",
    ["group", "outcome"],
)
BATCH_SECONDS = Histogram(
    "eventmart_consumer_batch_seconds",
    "Time to handle and commit one polled batch.",
    ["group"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CONSUMER_LAG = Gauge(
    "eventmart_consumer_lag",
    "End offset minus committed offset, per group and partition.",
    ["group", "topic", "partition"],
)
OUTBOX_PUBLISHED = Counter(
    "eventmart_outbox_published_total", "Messages the outbox relay published.", ["service"]
)
OUTBOX_PENDING = Gauge("eventmart_outbox_pending", "Messages waiting in the outbox.", ["service"])
HTTP_REQUESTS = Counter(
    "eventmart_http_requests_total",
    "HTTP requests by route and status.",
    ["service", "method", "route", "status"],
)
HTTP_SECONDS = Histogram(
    "eventmart_http_request_seconds",
    "HTTP request latency.",
    ["service", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
ADMISSION_WAIT = Histogram(
    "eventmart_edge_admission_wait_seconds",
    "How long requests that found every gateway slot taken waited for one.",
    ["service"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
SHED = Counter(
    "eventmart_load_shed_total",
    "Requests refused to protect the system (429/503).",
    ["service", "reason"],
)
