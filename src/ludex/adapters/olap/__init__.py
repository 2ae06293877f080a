"""AnalyticsStore backends, chosen by URL: ``chdb://PATH`` (in-process) or ``clickhouse://…``.

Backends are imported lazily so a deployment on a ClickHouse server never loads
the chDB engine. This module must never open a connection: ``create_analytics``
only builds the object; the caller starts it (``await store.start()``) inside
its lifespan.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ludex.config import redact_url
from ludex.errors import ConfigError
from ludex.ports.olap import AnalyticsStore

__all__ = ["create_analytics"]


def create_analytics(url: str) -> AnalyticsStore:
    """Build the analytics store named by ``url``; a bad URL raises :class:`ConfigError`."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "chdb":
        from ludex.adapters.olap.chdb import ChdbStore

        return ChdbStore.from_url(url)
    if scheme in ("clickhouse", "clickhouses"):
        from ludex.adapters.olap.clickhouse import ClickHouseStore

        return ClickHouseStore.from_url(url)
    raise ConfigError(
        f"analytics URL {redact_url(url)!r} is not supported; use chdb://PATH, chdb://:memory: "
        "or clickhouse://USER:PASS@HOST:PORT/DB (clickhouses:// for TLS)"
    )
