"""KeyValue port: hot state, locks, rate limits and idempotency records.

Semantics every backend honours (checked by tests/contract/test_kv.py):

* ``get``/``set``/``delete`` with an optional TTL in seconds; an expired key is absent.
* ``compare_and_set(key, expected, new)`` is atomic: it writes only when the current
  value equals ``expected`` (``None`` meaning absent) and reports whether it wrote.
* ``acquire_lock`` grants a lease for ``lease_seconds`` with a fencing token that is
  strictly greater than every token granted before for that name, even after
  expiry or release; a holder renews with ``renew_lock`` and a lost lease raises
  :class:`~ludex.errors.LockLost`. Downstream writes carry the token and refuse
  stale ones.
* ``rate_limit`` is a token bucket: ``capacity`` tokens, refilled at ``refill_per_second``;
  a refused call reports when to retry.
* ``remember(key, value)`` stores the first value for a key and returns the stored
  value on every later call (idempotency records).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Lease:
    """A held lock: who holds it, its fencing token, and when it lapses (unix seconds)."""

    name: str
    owner: str
    token: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The answer of a token bucket."""

    allowed: bool
    remaining: float
    retry_after: float


@dataclass(frozen=True, slots=True)
class Remembered:
    """An idempotency record: ``first`` is True when this call stored ``value``."""

    first: bool
    value: bytes


class KeyValue(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise :class:`~ludex.errors.BackendUnavailable` if unreachable."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None: ...

    async def delete(self, key: str) -> bool:
        """True if the key existed."""
        ...

    async def compare_and_set(
        self, key: str, expected: bytes | None, new: bytes, ttl: float | None = None
    ) -> bool: ...

    async def acquire_lock(self, name: str, owner: str, lease_seconds: float) -> Lease | None:
        """A lease if the lock is free (or already held by ``owner``), else None."""
        ...

    async def renew_lock(self, lease: Lease, lease_seconds: float) -> Lease:
        """Extend a lease still held; raises LockLost otherwise. The token is unchanged."""
        ...

    async def release_lock(self, lease: Lease) -> bool:
        """Release if still held by this lease; True if it was."""
        ...

    async def rate_limit(
        self, key: str, capacity: int, refill_per_second: float, cost: float = 1.0
    ) -> RateDecision: ...

    async def remember(self, key: str, value: bytes, ttl: float | None = None) -> Remembered: ...
