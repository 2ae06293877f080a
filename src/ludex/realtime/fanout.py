"""Fan-out across gateway processes: Redis pub/sub feeding each process's hub.

Every append of :class:`~ludex.realtime.history.RedisHistory` PUBLISHes the stored
message, inside the script that gave it its sequence, on one pub/sub channel per
namespace (``<namespace>fanout``). :class:`RedisFanout` listens there and hands each
message to its :meth:`Hub.deliver <ludex.realtime.hub.Hub.deliver>`, so any number of
gateway processes serve the watchers of one table, each in the channel's sequence
order and once per message.

Why one shared pub/sub channel: one SUBSCRIBE per process, no subscription to add
or remove as watchers come and go (which would race with their catch-up), and every
process sees every ``player:`` message, so it can keep one for an offline player
who may reconnect to it. The price is that each process reads every channel's
traffic; shard the channel by a hash of the channel name if that ever matters.

The connection is a :class:`~ludex.adapters.kv.redis_pubsub.RedisSubscription`
(a client of its own, pings on silence, reconnects with backoff; the module explains
why). Pub/sub forgets what it sent while a subscriber was away: after every
subscription, the first one included, the hub catches every subscriber up from the
history (:meth:`Hub.resync <ludex.realtime.hub.Hub.resync>`), so a dropped Redis
connection costs latency, never a message or a duplicate.

:func:`create_hub` builds the hub from a URL: ``memory://`` (one process, the
in-memory history, no fan-out) or ``redis://`` (the Redis history and this fan-out).
This module never lets a ``redis`` exception escape (they become
``BackendUnavailable`` or ``BackendError``), never logs a password, and never
publishes: only the history's append does.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import structlog

from ludex.adapters.kv.redis_pubsub import RedisSubscription, Subscribed
from ludex.config import redact_url
from ludex.errors import BackendError, ConfigError
from ludex.realtime.history import History, MemoryHistory, RedisHistory, decode_fanout
from ludex.realtime.hub import Hub, SnapshotProvider

log = structlog.get_logger(__name__)


class RedisFanout(Subscribed):
    """Listens on the history's pub/sub channel and delivers to one local :class:`Hub`.

    ``start`` attaches the fan-out to the hub, subscribes and catches the hub's
    subscribers up, then listens in the background; it raises
    :class:`BackendUnavailable` if Redis cannot be reached then. Later drops are
    retried for ever and the hub is caught up again after each; ``backoff_initial``,
    ``backoff_max``, ``ping_interval``, ``connect_timeout`` and ``client_name`` (the
    connection's name in ``CLIENT LIST``) are those of
    :class:`~ludex.adapters.kv.redis_pubsub.RedisSubscription`.
    """

    def __init__(
        self,
        hub: Hub,
        url: str,
        channel: str,
        *,
        client_name: str | None = None,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        ping_interval: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        self.hub = hub
        self.channel = channel
        # Whatever was stored before the subscription was confirmed is in the history,
        # whatever after comes on the subscription (duplicates are skipped by sequence).
        self._subscription = RedisSubscription(
            url,
            [channel],
            self._deliver,
            on_subscribed=hub.resync,
            what="fan-out",
            name="realtime.fanout",
            client_name=client_name or f"ludex-fanout-{secrets.token_hex(4)}",
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            ping_interval=ping_interval,
            connect_timeout=connect_timeout,
        )
        self.malformed = 0
        """Payloads that could not be read (skipped; subscribers catch up from history)."""

    async def start(self) -> None:
        if self._subscription.listening:
            return
        self.hub.use_fanout(True)
        try:
            await self._subscription.start()
        except BaseException:
            self.hub.use_fanout(False)
            raise

    async def close(self) -> None:
        """Stop listening and close the connection; the hub then delivers locally only."""
        await self._subscription.close()
        self.hub.use_fanout(False)

    async def _deliver(self, channel: str, payload: bytes) -> None:
        try:
            message = decode_fanout(payload)
        except BackendError as exc:
            # The subscribers see a sequence jump on the next message and catch up.
            self.malformed += 1
            log.warning("realtime.fanout_malformed", error=str(exc))
            return
        await self.hub.deliver(message)


class RealtimeHub:
    """A hub with its history and (for Redis) its fan-out: ``start`` before serving,
    ``close`` after."""

    def __init__(self, hub: Hub, fanout: RedisFanout | None = None) -> None:
        self.hub = hub
        self.fanout = fanout

    async def start(self) -> None:
        if self.fanout is not None:
            await self.fanout.start()

    async def close(self) -> None:
        try:
            if self.fanout is not None:
                await self.fanout.close()
        finally:
            await self.hub.history.close()


def create_hub(
    url: str,
    *,
    namespace: str = "ludex:rt:",
    snapshot: SnapshotProvider | None = None,
    max_queue: int = 256,
    offline_ttl: float = 60.0,
    offline_max: int = 100,
    history_messages: int = 1000,
    history_age: float = 300.0,
    client_name: str | None = None,
) -> RealtimeHub:
    """The hub for a backend URL: ``memory://`` (this process only) or
    ``redis://HOST:PORT/DB`` / ``rediss://`` (history and fan-out shared by every
    process on that Redis under ``namespace``). Nothing connects before ``start``."""
    scheme = urlsplit(url).scheme.lower()

    def make(history: History) -> Hub:
        return Hub(
            history,
            snapshot=snapshot,
            max_queue=max_queue,
            offline_ttl=offline_ttl,
            offline_max=offline_max,
        )

    if scheme == "memory":
        return RealtimeHub(make(MemoryHistory(max_messages=history_messages, max_age=history_age)))
    if scheme in {"redis", "rediss"}:
        shared = RedisHistory(
            url, namespace=namespace, max_messages=history_messages, max_age=history_age
        )
        hub = make(shared)
        return RealtimeHub(
            hub, RedisFanout(hub, url, shared.fanout_channel, client_name=client_name)
        )
    raise ConfigError(
        f"realtime URL {redact_url(url)!r} is not accepted; use memory:// or redis://HOST:PORT/DB"
    )
