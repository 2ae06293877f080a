"""Argument checks and small helpers shared by every KeyValue backend.

Both backends must refuse the same bad arguments with the same error type
(:class:`~ludex.errors.KeyValueError`), so the checks live here once. Pure: this
module must never do I/O or hold state.
"""

from __future__ import annotations

import math

from ludex.errors import KeyValueError
from ludex.ports.kv import Lease


def check_key(key: str, what: str = "key") -> None:
    """Refuse an empty or non-string key."""
    if not isinstance(key, str) or not key:
        raise KeyValueError(f"{what} must be a non-empty string, got {key!r}")


def check_value(value: bytes, what: str = "value") -> None:
    """Refuse a value that is not ``bytes`` (encode text before storing it)."""
    if not isinstance(value, bytes):
        raise KeyValueError(f"{what} must be bytes, got {type(value).__name__}; encode it first")


def check_ttl(ttl: float | None) -> None:
    """``None`` (no expiry) or a finite number of seconds >= 0; 0 means already expired."""
    if ttl is None:
        return
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not math.isfinite(ttl):
        raise KeyValueError(f"ttl must be a finite number of seconds or None, got {ttl!r}")
    if ttl < 0:
        raise KeyValueError(f"ttl must be >= 0 seconds (or None for no expiry), got {ttl!r}")


def check_positive(value: float, what: str) -> None:
    """Refuse zero, negative, non-finite and non-numeric values."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise KeyValueError(f"{what} must be a finite number > 0, got {value!r}")


def check_cost(cost: float) -> None:
    """A rate-limit cost is a finite number >= 0 (0 only reads the bucket)."""
    if (
        isinstance(cost, bool)
        or not isinstance(cost, int | float)
        or not math.isfinite(cost)
        or cost < 0
    ):
        raise KeyValueError(f"cost must be a finite number >= 0, got {cost!r}")


def check_rate_args(key: str, capacity: int, refill_per_second: float, cost: float) -> None:
    """Every argument of ``rate_limit``."""
    check_key(key)
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity <= 0:
        raise KeyValueError(f"capacity must be an integer > 0, got {capacity!r}")
    check_positive(refill_per_second, "refill_per_second")
    check_cost(cost)


def check_lock_args(name: str, owner: str, lease_seconds: float) -> None:
    """Every argument of ``acquire_lock``."""
    check_key(name, "lock name")
    check_key(owner, "lock owner")
    check_positive(lease_seconds, "lease_seconds")


def check_lease(lease: Lease) -> None:
    """A lease handed back to ``renew_lock``/``release_lock`` must look like one we granted."""
    if not isinstance(lease, Lease):
        raise KeyValueError(f"expected a Lease from acquire_lock, got {type(lease).__name__}")
    check_key(lease.name, "lease name")
    check_key(lease.owner, "lease owner")
    if isinstance(lease.token, bool) or not isinstance(lease.token, int) or lease.token <= 0:
        raise KeyValueError(f"lease token must be an integer > 0, got {lease.token!r}")
