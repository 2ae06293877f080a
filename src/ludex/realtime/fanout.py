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

Pub/sub forgets what it sent while a subscriber was away: after a reconnect (with
backoff) the hub catches every subscriber up from the history
(:meth:`Hub.resync <ludex.realtime.hub.Hub.resync>`), so a dropped Redis connection
costs latency, never a message or a duplicate.

:func:`create_hub` builds the hub from a URL: ``memory://`` (one process, the
in-memory history, no fan-out) or ``redis://`` (the Redis history and this fan-out).
This module never lets a ``redis`` exception escape (they become
``BackendUnavailable`` or ``BackendError``), never logs a password, and never
publishes: only the history's append does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ludex.adapters.kv.redis import redis_errors
from ludex.config import redact_url
from ludex.errors import BackendError, BackendUnavailable, ConfigError
from ludex.realtime.history import History, MemoryHistory, RedisHistory, decode_fanout
from ludex.realtime.hub import Hub, SnapshotProvider

log = structlog.get_logger(__name__)


class RedisFanout:
    """Listens on the history's pub/sub channel and delivers to one local :class:`Hub`.

    ``start`` attaches the fan-out to the hub, subscribes and catches the hub's
    subscribers up, then listens in a background task; it raises
    :class:`BackendUnavailable` if Redis cannot be reached then. Later drops are
    retried for ever, waiting ``backoff_initial`` doubling up to ``backoff_max``
    seconds (with jitter). A connection silent for ``ping_interval`` seconds is
    pinged; one that stays silent for two intervals is treated as dropped.
    ``client_name`` names the Redis connection (``CLIENT LIST``).
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
        if not 0 < backoff_initial <= backoff_max:
            raise ConfigError(
                f"fan-out backoff must be 0 < initial ({backoff_initial}) <= max ({backoff_max})"
            )
        if not ping_interval > 0 or not connect_timeout > 0:
            raise ConfigError("fan-out ping_interval and connect_timeout must be > 0 seconds")
        self.hub = hub
        self.channel = channel
        self.client_name = client_name or f"ludex-fanout-{secrets.token_hex(4)}"
        self._url = url
        self._where = redact_url(url)
        self._backoff = (backoff_initial, backoff_max)
        self._ping_interval = ping_interval
        self._connect_timeout = connect_timeout
        self._client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.reconnects = 0
        """How many times the subscription was lost and made again."""
        self.malformed = 0
        """Payloads that could not be read (skipped; subscribers catch up from history)."""

    async def start(self) -> None:
        if self._task is not None:
            return
        self.hub.use_fanout(True)
        try:
            await self._connect()
        except BaseException:
            await self._drop()
            self.hub.use_fanout(False)
            raise
        self._task = asyncio.create_task(self._run(), name="realtime-fanout")

    async def close(self) -> None:
        """Stop listening and close the connection; the hub then delivers locally only."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()
        self.hub.use_fanout(False)

    async def _connect(self) -> None:
        """Subscribe, wait for the confirmation, then catch the hub's subscribers up:
        whatever was stored before the confirmation is in the history, whatever after
        comes on the subscription (duplicates are skipped by sequence)."""
        try:
            client = aioredis.Redis.from_url(
                self._url,
                decode_responses=False,
                socket_connect_timeout=self._connect_timeout,
                # Drops must reach us (to catch up from the history), not be mended
                # silently by the client's own reconnect.
                retry=Retry(NoBackoff(), 0, supported_errors=()),
                retry_on_timeout=False,
                client_name=self.client_name,
            )
        except ValueError as exc:
            raise ConfigError(
                f"fan-out URL {self._where!r} is malformed ({exc}); use redis://HOST:PORT/DB"
            ) from None
        self._client = client
        self._pubsub = pubsub = client.pubsub()
        with self._errors("subscribe"):
            await asyncio.wait_for(pubsub.subscribe(self.channel), self._connect_timeout)
            reply = await pubsub.get_message(timeout=self._connect_timeout)
        if reply is None or _kind(reply) != "subscribe":
            raise BackendUnavailable(
                f"redis fan-out at {self._where} did not confirm the subscription to "
                f"{self.channel!r} within {self._connect_timeout} s; check the server"
            )
        self.connected = True
        log.info("realtime.fanout_subscribed", channel=self.channel, client=self.client_name)
        await self.hub.resync()

    async def _drop(self) -> None:
        self.connected = False
        pubsub, self._pubsub = self._pubsub, None
        client, self._client = self._client, None
        with contextlib.suppress(RedisError, OSError):
            if pubsub is not None:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            if client is not None:
                await client.aclose()

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                if self._pubsub is None:
                    await self._connect()
                    self.reconnects += 1
                failures = 0
                await self._listen()
            except Exception as exc:  # a drop, or a bug: either way listen again
                await self._drop()
                delay = min(self._backoff[1], self._backoff[0] * 2 ** min(failures, 30))
                delay *= random.uniform(0.5, 1.0)  # jitter: processes do not retry in step
                failures += 1
                log.warning(
                    "realtime.fanout_dropped",
                    server=self._where,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=round(delay, 3),
                )
                await asyncio.sleep(delay)

    async def _listen(self) -> None:
        pubsub = self._pubsub
        assert pubsub is not None
        quiet = 0
        while True:
            with self._errors("listen"):
                reply = await pubsub.get_message(timeout=self._ping_interval)
            if reply is None:
                quiet += 1
                if quiet > 2:
                    raise BackendUnavailable(
                        f"redis fan-out at {self._where} did not answer a ping in "
                        f"{2 * self._ping_interval} s"
                    )
                with self._errors("ping"):
                    await pubsub.ping()
                continue
            quiet = 0
            if _kind(reply) == "message":
                await self._deliver(reply["data"])

    async def _deliver(self, payload: bytes) -> None:
        try:
            message = decode_fanout(payload)
        except BackendError as exc:
            # The subscribers see a sequence jump on the next message and catch up.
            self.malformed += 1
            log.warning("realtime.fanout_malformed", error=str(exc))
            return
        await self.hub.deliver(message)

    def _errors(self, op: str) -> contextlib.AbstractContextManager[None]:
        return redis_errors(f"redis fan-out at {self._where}", op)


def _kind(reply: dict[str, Any]) -> str:
    kind = reply.get("type")
    return kind.decode() if isinstance(kind, bytes) else str(kind)


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
