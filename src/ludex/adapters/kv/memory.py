"""In-process KeyValue backend (``memory://``), the embedded default.

State lives in plain dicts owned by one event loop. Each operation runs without an
``await`` between reading and writing, so every operation is atomic with respect to
other tasks on that loop. TTLs, leases and token buckets use a monotonic clock
(injectable for tests); expired entries are dropped lazily when touched and by an
amortised sweep, so memory stays bounded by the live keys.

It must never be shared between threads or processes (it is not thread-safe and
two instances never see each other's keys), and it must never block the loop.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ludex.adapters.kv._common import (
    check_key,
    check_lease,
    check_lock_args,
    check_positive,
    check_rate_args,
    check_ttl,
    check_value,
)
from ludex.errors import LockLost
from ludex.ports.kv import Lease, RateDecision, Remembered

Clock = Callable[[], float]

# Tolerance for float round-off when a caller waits exactly ``retry_after``.
_EPSILON = 1e-9


@dataclass(slots=True)
class _Value:
    data: bytes
    deadline: float | None


@dataclass(slots=True)
class _Held:
    owner: str
    token: int
    deadline: float


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float
    full_at: float  # when the bucket is full again, i.e. equivalent to absent


class MemoryKeyValue:
    """The :class:`~ludex.ports.kv.KeyValue` port in one process's memory.

    ``clock`` returns monotonic seconds (``time.monotonic`` by default); tests pass a
    fake one to step time. ``wall_clock`` is only used to express ``Lease.expires_at``
    in unix seconds. ``namespace`` is accepted for symmetry with the Redis backend;
    instances never share state, so it has no other effect.
    """

    def __init__(
        self,
        *,
        namespace: str = "ludex:",
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        sweep_every: int = 1024,
    ) -> None:
        check_positive(sweep_every, "sweep_every")
        self.namespace = namespace
        self._clock = clock
        self._wall_clock = wall_clock
        self._sweep_every = int(sweep_every)
        self._values: dict[str, _Value] = {}
        self._locks: dict[str, _Held] = {}
        # Last fencing token per lock name. Never expired or reset: tokens must keep
        # increasing across expiry and release. One int per lock name ever used.
        self._fences: dict[str, int] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._writes = 0
        self._size_after_sweep = 0

    # lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    # plain values ----------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        check_key(key)
        entry = self._live_value(key, self._clock())
        return None if entry is None else entry.data

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        check_key(key)
        check_value(value)
        check_ttl(ttl)
        self._store(key, value, ttl, self._clock())

    async def delete(self, key: str) -> bool:
        check_key(key)
        existed = self._live_value(key, self._clock()) is not None
        self._values.pop(key, None)
        return existed

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, ttl: float | None = None
    ) -> bool:
        check_key(key)
        if expected is not None:
            check_value(expected, "expected")
        check_value(new, "new")
        check_ttl(ttl)
        now = self._clock()
        entry = self._live_value(key, now)
        current = None if entry is None else entry.data
        if current != expected:
            return False
        self._store(key, new, ttl, now)
        return True

    async def remember(self, key: str, value: bytes, ttl: float | None = None) -> Remembered:
        check_key(key)
        check_value(value)
        check_ttl(ttl)
        now = self._clock()
        entry = self._live_value(key, now)
        if entry is not None:
            return Remembered(first=False, value=entry.data)
        self._store(key, value, ttl, now)
        return Remembered(first=True, value=value)

    # locks -----------------------------------------------------------------------

    async def acquire_lock(self, name: str, owner: str, lease_seconds: float) -> Lease | None:
        check_lock_args(name, owner, lease_seconds)
        now = self._clock()
        held = self._live_lock(name, now)
        if held is not None and held.owner != owner:
            return None
        if held is None:
            token = self._fences.get(name, 0) + 1
            self._fences[name] = token
            held = _Held(owner=owner, token=token, deadline=now + lease_seconds)
            self._locks[name] = held
            self._wrote()
        else:
            held.deadline = now + lease_seconds
        return self._lease(name, held, lease_seconds)

    async def renew_lock(self, lease: Lease, lease_seconds: float) -> Lease:
        check_lease(lease)
        check_positive(lease_seconds, "lease_seconds")
        now = self._clock()
        held = self._live_lock(lease.name, now)
        if held is None or held.owner != lease.owner or held.token != lease.token:
            raise LockLost(
                f"lock {lease.name!r} is no longer held by {lease.owner!r} with token "
                f"{lease.token}: it expired or another owner took it; stop writing and "
                "acquire it again"
            )
        held.deadline = now + lease_seconds
        return self._lease(lease.name, held, lease_seconds)

    async def release_lock(self, lease: Lease) -> bool:
        check_lease(lease)
        held = self._live_lock(lease.name, self._clock())
        if held is None or held.owner != lease.owner or held.token != lease.token:
            return False
        del self._locks[lease.name]
        return True

    # rate limits -----------------------------------------------------------------

    async def rate_limit(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1.0
    ) -> RateDecision:
        check_rate_args(key, capacity, refill_per_second, cost)
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            tokens = float(capacity)
        else:
            elapsed = max(0.0, now - bucket.stamp)
            tokens = min(float(capacity), bucket.tokens + elapsed * refill_per_second)
        if cost > capacity:
            # Can never succeed: say so instead of inviting a retry loop.
            return RateDecision(allowed=False, remaining=tokens, retry_after=math.inf)
        if tokens + _EPSILON >= cost:
            tokens = max(0.0, tokens - cost)
            allowed, retry_after = True, 0.0
        else:
            allowed, retry_after = False, (cost - tokens) / refill_per_second
        full_at = now + (capacity - tokens) / refill_per_second
        self._buckets[key] = _Bucket(tokens=tokens, stamp=now, full_at=full_at)
        self._wrote()
        return RateDecision(allowed=allowed, remaining=tokens, retry_after=retry_after)

    # internals -------------------------------------------------------------------

    def _lease(self, name: str, held: _Held, lease_seconds: float) -> Lease:
        return Lease(
            name=name,
            owner=held.owner,
            token=held.token,
            expires_at=self._wall_clock() + lease_seconds,
        )

    def _live_value(self, key: str, now: float) -> _Value | None:
        entry = self._values.get(key)
        if entry is not None and entry.deadline is not None and now >= entry.deadline:
            del self._values[key]
            return None
        return entry

    def _live_lock(self, name: str, now: float) -> _Held | None:
        held = self._locks.get(name)
        if held is not None and now >= held.deadline:
            del self._locks[name]
            return None
        return held

    def _store(self, key: str, value: bytes, ttl: float | None, now: float) -> None:
        if ttl == 0:
            # Expires at once: the write happens and is immediately gone.
            self._values.pop(key, None)
            return
        deadline = None if ttl is None else now + ttl
        self._values[key] = _Value(data=value, deadline=deadline)
        self._wrote()

    def _wrote(self) -> None:
        # Sweep once the writes since the last sweep reach the size the last sweep
        # left behind: the O(n) sweep is amortised over at least n writes, and the
        # entries held never exceed twice the live ones at the last sweep (or
        # ``sweep_every``) plus the writes since.
        self._writes += 1
        if self._writes >= max(self._sweep_every, self._size_after_sweep):
            self.sweep()

    def sweep(self) -> int:
        """Drop every expired value, lock and full bucket now; return how many."""
        now = self._clock()
        self._writes = 0
        dead_values = [
            k for k, v in self._values.items() if v.deadline is not None and now >= v.deadline
        ]
        for k in dead_values:
            del self._values[k]
        dead_locks = [k for k, h in self._locks.items() if now >= h.deadline]
        for k in dead_locks:
            del self._locks[k]
        dead_buckets = [k for k, b in self._buckets.items() if now >= b.full_at]
        for k in dead_buckets:
            del self._buckets[k]
        self._size_after_sweep = len(self)
        return len(dead_values) + len(dead_locks) + len(dead_buckets)

    def __len__(self) -> int:
        """Entries held in memory, expired or not (for tests of the memory bound)."""
        return len(self._values) + len(self._locks) + len(self._buckets)
