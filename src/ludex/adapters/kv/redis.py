"""Redis KeyValue backend (``redis://HOST:PORT/DB``, ``rediss://`` for TLS).

Every operation that reads and then writes runs as one Lua script on the server
(registered once, sent by SHA), so it is atomic across every process that shares
the Redis. Token buckets use the server's ``TIME`` so all processes agree on the
clock. Keys live under a namespace prefix (default ``ludex:``); a lock's key and
its fencing counter share a hash tag so the pair stays in one cluster slot.

This module must never log or raise the URL's password (use ``redact_url``), never
let a ``redis`` exception escape (they become ``BackendUnavailable`` or
``BackendError``), and never expire or reset a fencing counter. It never retries a
command whose answer depends on whether an earlier attempt reached the server
(compare-and-set, remember, delete, release, rate limit): the caller decides.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ludex.adapters.kv._common import (
    check_key,
    check_lease,
    check_lock_args,
    check_positive,
    check_rate_args,
    check_ttl,
    check_value,
)
from ludex.config import redact_url
from ludex.errors import BackendError, BackendUnavailable, ConfigError, LockLost
from ludex.ports.kv import Lease, RateDecision, Remembered

T = TypeVar("T")

# ARGV ttl encoding shared by the scripts: "" = no expiry, "0" = expires at once,
# otherwise whole milliseconds >= 1.
_CAS = """
local cur = redis.call('GET', KEYS[1])
if ARGV[1] == '0' then
  if cur then return 0 end
elseif cur ~= ARGV[2] then
  return 0
end
if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
elseif ARGV[4] == '0' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
end
return 1
"""

_REMEMBER = """
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur} end
if ARGV[2] == '' then
  redis.call('SET', KEYS[1], ARGV[1])
elseif ARGV[2] ~= '0' then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return {1, ARGV[1]}
"""

# The lock value is "<token>|<owner>"; the token never contains "|".
_ACQUIRE = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep and string.sub(cur, sep + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return tonumber(string.sub(cur, 1, sep - 1))
  end
  return 0
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token .. '|' .. ARGV[1], 'PX', ARGV[2])
return token
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# Token bucket in a hash {tokens, ts}; ts is server time in seconds. Floats go back
# as strings because Redis truncates Lua numbers to integers in replies.
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then
  tokens = cap
else
  local elapsed = now - ts
  if elapsed < 0 then elapsed = 0 end
  tokens = math.min(cap, tokens + elapsed * rate)
end
if cost > cap then
  return {0, string.format('%.17g', tokens), 'inf'}
end
local allowed = 0
local retry = 0
if tokens + 1e-9 >= cost then
  tokens = math.max(0, tokens - cost)
  allowed = 1
else
  retry = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'ts', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - tokens) / rate * 1000) + 1000)
return {allowed, string.format('%.17g', tokens), string.format('%.17g', retry)}
"""


def _ttl_arg(ttl: float | None) -> str:
    if ttl is None:
        return ""
    if ttl == 0:
        return "0"
    return str(max(1, math.ceil(ttl * 1000)))


def _lease_ms(lease_seconds: float) -> int:
    return max(1, math.ceil(lease_seconds * 1000))


def _lock_value(token: int, owner: str) -> str:
    return f"{token}|{owner}"


@contextmanager
def redis_errors(what: str, op: str, url_name: str = "the URL") -> Iterator[None]:
    """Redis client errors as ludex errors: unreachable (connection refused or dropped, a
    timeout) as BackendUnavailable, anything else as BackendError; ``what`` names the
    server (no password) and ``op`` the operation."""
    try:
        yield
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise BackendUnavailable(
            f"{what} is unreachable ({op}): {exc}; "
            f"check that the server is running and {url_name} is right"
        ) from exc
    except RedisError as exc:
        raise BackendError(f"{what} failed during {op}: {exc}") from exc


class RedisKeyValue:
    """The :class:`~ludex.ports.kv.KeyValue` port on a Redis server.

    Nothing connects in the constructor; ``start`` checks the server answers.
    ``socket_timeout`` bounds each command, ``connect_timeout`` each connection.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "ludex:",
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
        max_connections: int = 64,
    ) -> None:
        check_positive(socket_timeout, "socket_timeout")
        check_positive(connect_timeout, "connect_timeout")
        check_positive(max_connections, "max_connections")
        self.namespace = namespace
        self._where = redact_url(url)
        # No automatic retries: a retried script could report a stale answer (a
        # compare-and-set that did write would say False). Safe operations retry
        # once themselves, in _call.
        try:
            self._client: aioredis.Redis = aioredis.Redis.from_url(
                url,
                decode_responses=False,
                socket_timeout=socket_timeout,
                socket_connect_timeout=connect_timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                max_connections=int(max_connections),
            )
        except ValueError as exc:
            raise ConfigError(
                f"cache URL {self._where!r} is malformed ({exc}); use redis://HOST:PORT/DB"
            ) from None
        self._cas = self._client.register_script(_CAS)
        self._remember = self._client.register_script(_REMEMBER)
        self._acquire = self._client.register_script(_ACQUIRE)
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._rate = self._client.register_script(_RATE)

    # lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self.ping()

    async def close(self) -> None:
        with self._errors("close"):
            await self._client.aclose()

    async def ping(self) -> None:
        await self._call("ping", lambda: self._client.ping(), retry=True)

    # plain values ----------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        raw = await self._call("get", lambda: self._client.get(self._kv(key)), retry=True)
        return None if raw is None else bytes(raw)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        check_key(key)
        check_value(value)
        check_ttl(ttl)
        name = self._kv(key)
        if ttl == 0:
            await self._call("set", lambda: self._client.delete(name), retry=True)
        elif ttl is None:
            await self._call("set", lambda: self._client.set(name, value), retry=True)
        else:
            ms = int(_ttl_arg(ttl))
            await self._call("set", lambda: self._client.set(name, value, px=ms), retry=True)

    async def delete(self, key: str) -> bool:
        check_key(key)
        removed = await self._call("delete", lambda: self._client.delete(self._kv(key)))
        return int(removed) > 0

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, ttl: float | None = None
    ) -> bool:
        check_key(key)
        if expected is not None:
            check_value(expected, "expected")
        check_value(new, "new")
        check_ttl(ttl)
        args = ["0" if expected is None else "1", expected or b"", new, _ttl_arg(ttl)]
        wrote = await self._call(
            "compare_and_set", lambda: self._cas(keys=[self._kv(key)], args=args)
        )
        return int(wrote) == 1

    async def remember(self, key: str, value: bytes, ttl: float | None = None) -> Remembered:
        check_key(key)
        check_value(value)
        check_ttl(ttl)
        reply = await self._call(
            "remember",
            lambda: self._remember(keys=[self._kv(key)], args=[value, _ttl_arg(ttl)]),
        )
        first, stored = reply
        return Remembered(first=int(first) == 1, value=bytes(stored))

    # locks -----------------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, lease_seconds: float) -> Lease | None:
        check_lock_args(name, owner, lease_seconds)
        started = time.time()
        token = await self._call(
            "acquire_lock",
            lambda: self._acquire(
                keys=[self._lock(name), self._fence(name)],
                args=[owner, _lease_ms(lease_seconds)],
            ),
            # Safe to repeat: a second attempt by the same owner gets the same token.
            retry=True,
        )
        if int(token) == 0:
            return None
        return Lease(name=name, owner=owner, token=int(token), expires_at=started + lease_seconds)

    async def renew_lock(self, lease: Lease, lease_seconds: float) -> Lease:
        check_lease(lease)
        check_positive(lease_seconds, "lease_seconds")
        started = time.time()
        renewed = await self._call(
            "renew_lock",
            lambda: self._renew(
                keys=[self._lock(lease.name)],
                args=[_lock_value(lease.token, lease.owner), _lease_ms(lease_seconds)],
            ),
            retry=True,
        )
        if int(renewed) != 1:
            raise LockLost(
                f"lock {lease.name!r} is no longer held by {lease.owner!r} with token "
                f"{lease.token}: it expired or another owner took it; stop writing and "
                "acquire it again"
            )
        return Lease(
            name=lease.name,
            owner=lease.owner,
            token=lease.token,
            expires_at=started + lease_seconds,
        )

    async def release_lock(self, lease: Lease) -> bool:
        check_lease(lease)
        released = await self._call(
            "release_lock",
            lambda: self._release(
                keys=[self._lock(lease.name)], args=[_lock_value(lease.token, lease.owner)]
            ),
        )
        return int(released) == 1

    # rate limits -----------------------------------------------------------------

    async def rate_limit(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1.0
    ) -> RateDecision:
        check_rate_args(key, capacity, refill_per_second, cost)
        reply = await self._call(
            "rate_limit",
            lambda: self._rate(
                keys=[self._bucket(key)],
                args=[capacity, repr(float(refill_per_second)), repr(float(cost))],
            ),
        )
        allowed, remaining, retry_after = reply
        return RateDecision(
            allowed=int(allowed) == 1,
            remaining=float(remaining),
            retry_after=float(retry_after),
        )

    # internals -------------------------------------------------------------------

    def _kv(self, key: str) -> str:
        return f"{self.namespace}kv:{key}"

    def _lock(self, name: str) -> str:
        return f"{self.namespace}lock:{{{name}}}"

    def _fence(self, name: str) -> str:
        return f"{self.namespace}fence:{{{name}}}"

    def _bucket(self, key: str) -> str:
        return f"{self.namespace}rate:{key}"

    async def _call(
        self, op: str, command: Callable[[], Awaitable[Any]], *, retry: bool = False
    ) -> Any:
        # One retry on a connection error covers a pooled connection the server
        # dropped (restart, idle timeout); only for operations safe to repeat.
        attempts = 2 if retry else 1
        for attempt in range(attempts):
            try:
                with self._errors(op):
                    return await command()
            except BackendUnavailable as exc:
                # A timeout may mean the command ran; only a refused or dropped
                # connection is worth one more try.
                dropped = isinstance(exc.__cause__, RedisConnectionError)
                if attempt + 1 == attempts or not dropped:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _errors(self, op: str) -> AbstractContextManager[None]:
        return redis_errors(f"redis at {self._where}", op, "the cache URL")
