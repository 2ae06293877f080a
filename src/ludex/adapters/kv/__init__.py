"""KeyValue backends, chosen by URL: ``memory://`` (embedded) or ``redis://``/``rediss://``.

This module only picks and builds a backend; it must never import a backend's
driver before that backend is asked for, and never open a connection (callers
``await kv.start()`` inside their lifespan).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ludex.config import redact_url
from ludex.errors import ConfigError
from ludex.ports.kv import KeyValue

__all__ = ["create_key_value"]


def create_key_value(url: str, *, namespace: str = "ludex:") -> KeyValue:
    """The KeyValue backend for ``url``; keys live under ``namespace`` where shared."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from ludex.adapters.kv.memory import MemoryKeyValue

        return MemoryKeyValue(namespace=namespace)
    if scheme in {"redis", "rediss"}:
        if not urlsplit(url).hostname:
            raise ConfigError(
                f"cache URL {redact_url(url)!r} has no host; use redis://HOST:PORT/DB"
            )
        from ludex.adapters.kv.redis import RedisKeyValue

        return RedisKeyValue(url, namespace=namespace)
    raise ConfigError(
        f"cache URL {redact_url(url)!r} has an unknown scheme {scheme!r}; "
        "use memory:// or redis://HOST:PORT/DB (rediss:// for TLS)"
    )
