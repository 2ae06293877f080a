"""EventBus backends, chosen by URL: ``memory://`` (in-process) or ``kafka://HOST:PORT[,...]``.

Backends are imported lazily so the embedded default never loads a Kafka client.
This module must never open a connection: ``create_bus`` only builds the object;
the caller starts it (``await bus.start()``) inside its lifespan.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ludex.config import redact_url
from ludex.errors import ConfigError
from ludex.ports.bus import EventBus

__all__ = ["create_bus"]


def create_bus(url: str, *, partitions: int = 8, namespace: str = "") -> EventBus:
    """Build the bus named by ``url``; ``namespace`` prefixes every topic and group name."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from ludex.adapters.bus.memory import MemoryBus

        return MemoryBus(partitions, namespace=namespace)
    if scheme == "kafka":
        from ludex.adapters.bus.kafka import KafkaBus

        return KafkaBus(url, partitions=partitions, namespace=namespace)
    raise ConfigError(
        f"bus URL {redact_url(url)!r} is not supported; use memory:// or kafka://HOST:PORT[,HOST:PORT]"
    )
