"""Prometheus metrics shared across services.

Metrics are module-level objects in the modules that own them (``ludex_`` prefix);
this module holds the cross-cutting ones (HTTP, readiness) and renders the registry.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

HTTP_REQUESTS = Counter(
    "ludex_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
HTTP_LATENCY = Histogram(
    "ludex_http_request_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BACKEND_UP = Gauge(
    "ludex_backend_up", "1 if the backend answered its last health check", ["port", "kind"]
)
BACKEND_CHECK_SECONDS = Gauge(
    "ludex_backend_check_seconds", "Duration of the last health check", ["port", "kind"]
)


def render() -> tuple[bytes, str]:
    """The exposition text of the default registry and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
