"""A Redis pub/sub subscription kept up for ever: the connection under the fan-out and
the relay.

:class:`RedisSubscription` opens a client of its own (``redis://HOST:PORT/DB`` or
``rediss://``), SUBSCRIBEs to fixed channels, waits for every confirmation, and then
listens in a background task, handing each message to its owner's callback. The
owner may PUBLISH on the same client (:attr:`RedisSubscription.client`); the
subscription holds a connection of its own from that client's pool.

Why the client's own retry is off: pub/sub forgets what it sent while a subscriber
was away, so a drop must reach the listener loop, which closes everything, waits
(``backoff_initial`` doubling up to ``backoff_max`` seconds, times a random 0.5..1 so
processes do not retry in step) and subscribes again, then calls the owner's
``on_subscribed``: only the owner knows how to make up for what it missed (the
fan-out catches its hub up from the history; the relay's requesters time out). A
connection silent for ``ping_interval`` seconds is pinged; one still silent after two
intervals counts as dropped, because a half-open TCP connection raises nothing.

Never: a ``redis`` exception escapes (they become ``BackendUnavailable`` or
``BackendError``, named after the owner's ``what``); a password is logged; an error in
the listener stops it (it reconnects and goes on).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ludex.adapters.kv.redis import redis_errors
from ludex.config import redact_url
from ludex.errors import BackendUnavailable, ConfigError

log = structlog.get_logger(__name__)

OnMessage = Callable[[str, bytes], Awaitable[None]]
"""Called with the channel and the payload of each message, one at a time, in order."""


class RedisSubscription:
    """One dedicated connection subscribed to ``channels``; see the module docstring.

    ``what`` names the owner in errors (``redis <what> at HOST``); ``name`` (say
    ``realtime.fanout``) names the listener task and prefixes the log events
    (``<name>_subscribed``, ``<name>_dropped``).
    ``on_subscribed`` runs after every subscription, the first one included; if it
    fails, ``start`` fails (or, later, the subscription is dropped and made again).
    ``client_name`` names the connection in ``CLIENT LIST``.
    """

    def __init__(
        self,
        url: str,
        channels: Sequence[str],
        on_message: OnMessage,
        *,
        what: str,
        name: str,
        client_name: str,
        on_subscribed: Callable[[], Awaitable[None]] | None = None,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        ping_interval: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        if not 0 < backoff_initial <= backoff_max:
            raise ConfigError(
                f"{what} backoff must be 0 < initial ({backoff_initial}) <= max ({backoff_max})"
            )
        if not ping_interval > 0 or not connect_timeout > 0:
            raise ConfigError(f"{what} ping_interval and connect_timeout must be > 0 seconds")
        if not channels:
            raise ConfigError(f"{what} subscribes to no channel")
        self.channels = tuple(channels)
        self.client_name = client_name
        self.what = what
        self.connect_timeout = connect_timeout
        self._url = url
        self._where = redact_url(url)
        self._on_message = on_message
        self._on_subscribed = on_subscribed
        self.name = name
        self._backoff = (backoff_initial, backoff_max)
        self._ping_interval = ping_interval
        self._client: aioredis.Redis | None = None
        self._pubsub: PubSub | None = None
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        """Subscribed right now (false from a drop until the next subscription)."""
        self.reconnects = 0
        """How many times the subscription was lost and made again."""

    @property
    def client(self) -> aioredis.Redis | None:
        """The client to PUBLISH on while connected (``None`` while the subscription is
        down); its commands raise ``redis`` errors, so wrap them in :meth:`errors`."""
        return self._client

    @property
    def listening(self) -> bool:
        """Started and not stopped."""
        return self._task is not None

    async def start(self) -> None:
        """Subscribe (``BackendUnavailable`` if Redis cannot be reached now), then
        listen in a background task. A second call does nothing."""
        if self._task is not None:
            return
        try:
            await self._connect()
        except BaseException:
            await self._disconnect()
            raise
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stop listening but keep the client open (for PUBLISHes still under way)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        """Stop listening and close the connection. Twice is fine."""
        await self.stop()
        await self._disconnect()

    def errors(self, op: str) -> contextlib.AbstractContextManager[None]:
        """``redis`` errors during ``op`` as ``BackendUnavailable`` / ``BackendError``."""
        return redis_errors(f"redis {self.what} at {self._where}", op)

    async def _connect(self) -> None:
        try:
            client = aioredis.Redis.from_url(
                self._url,
                decode_responses=False,
                socket_connect_timeout=self.connect_timeout,
                retry=Retry(NoBackoff(), 0, supported_errors=()),  # see the module docstring
                retry_on_timeout=False,
                client_name=self.client_name,
            )
        except ValueError as exc:
            raise ConfigError(
                f"{self.what} URL {self._where!r} is malformed ({exc}); use redis://HOST:PORT/DB"
            ) from None
        self._client = client
        self._pubsub = pubsub = client.pubsub()
        with self.errors("subscribe"):
            await asyncio.wait_for(pubsub.subscribe(*self.channels), self.connect_timeout)
            for _ in self.channels:
                reply = await pubsub.get_message(timeout=self.connect_timeout)
                if reply is None or _kind(reply) != "subscribe":
                    raise BackendUnavailable(
                        f"redis {self.what} at {self._where} did not confirm its subscription "
                        f"to {', '.join(self.channels)} within {self.connect_timeout} s; "
                        "check the server"
                    )
        self.connected = True
        log.info(f"{self.name}_subscribed", channels=list(self.channels), client=self.client_name)
        if self._on_subscribed is not None:
            await self._on_subscribed()

    async def _disconnect(self) -> None:
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
                await self._disconnect()
                delay = min(self._backoff[1], self._backoff[0] * 2 ** min(failures, 30))
                delay *= random.uniform(0.5, 1.0)  # jitter: processes do not retry in step
                failures += 1
                log.warning(
                    f"{self.name}_dropped",
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
            with self.errors("listen"):
                reply = await pubsub.get_message(timeout=self._ping_interval)
            if reply is None:
                quiet += 1
                if quiet > 2:
                    raise BackendUnavailable(
                        f"redis {self.what} at {self._where} did not answer a ping in "
                        f"{2 * self._ping_interval} s"
                    )
                with self.errors("ping"):
                    await pubsub.ping()
                continue
            quiet = 0
            if _kind(reply) != "message":
                continue
            channel, data = reply.get("channel"), reply.get("data")
            if not isinstance(channel, bytes) or not isinstance(data, bytes):
                # Cannot happen with decode_responses=False; skipped rather than
                # handed on untyped.
                log.warning(f"{self.name}_unreadable", channel=repr(channel)[:200])
                continue
            await self._on_message(channel.decode(errors="replace"), data)


class Subscribed:
    """The state of a :class:`RedisSubscription`, read-only, for a class that keeps
    one in ``_subscription`` and shows these on its own public face."""

    _subscription: RedisSubscription

    @property
    def client_name(self) -> str:
        return self._subscription.client_name

    @property
    def connected(self) -> bool:
        """Subscribed right now."""
        return self._subscription.connected

    @property
    def reconnects(self) -> int:
        """How many times the subscription was lost and made again."""
        return self._subscription.reconnects


def _kind(reply: dict[str, Any]) -> str:
    kind = reply.get("type")
    return kind.decode() if isinstance(kind, bytes) else str(kind)
