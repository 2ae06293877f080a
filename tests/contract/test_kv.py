"""Contract suite for the KeyValue port: every test runs against every backend.

The ``kv`` fixture is parametrised over ``memory`` and ``redis`` (a real local Redis
from ``scripts/services up``); each test gets its own key namespace so runs never
collide, and only that namespace is cleaned up afterwards. The last section checks
what only the memory backend promises (its memory bound, its injectable clock).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ludex.adapters.kv import create_key_value
from ludex.adapters.kv.memory import MemoryKeyValue
from ludex.errors import BackendUnavailable, ConfigError, KeyValueError, LockLost
from ludex.ports.kv import KeyValue, Lease
from tests.conftest import service_url

BACKENDS = ["memory", "redis"]


def _url(backend: str) -> str:
    return "memory://" if backend == "memory" else service_url("redis")


async def _drop_namespace(url: str, namespace: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{namespace}*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(params=BACKENDS)
async def kv_url(request: pytest.FixtureRequest) -> str:
    return _url(request.param)


@pytest.fixture
async def namespace(kv_url: str) -> AsyncIterator[str]:
    ns = f"ludex-test:{uuid.uuid4().hex}:"
    yield ns
    if kv_url.startswith("redis"):
        await _drop_namespace(kv_url, ns)


@pytest.fixture
async def kv(kv_url: str, namespace: str) -> AsyncIterator[KeyValue]:
    store = create_key_value(kv_url, namespace=namespace)
    await store.start()
    try:
        yield store
    finally:
        await store.close()


# --- plain values -------------------------------------------------------------------


async def test_get_set_delete(kv: KeyValue) -> None:
    assert await kv.get("k") is None
    await kv.set("k", b"\x00one\xff")
    assert await kv.get("k") == b"\x00one\xff"
    await kv.set("k", b"two")
    assert await kv.get("k") == b"two"
    await kv.set("empty", b"")
    assert await kv.get("empty") == b""
    assert await kv.delete("k") is True
    assert await kv.delete("k") is False
    assert await kv.get("k") is None
    assert await kv.get("empty") == b""


async def test_ttl_expiry(kv: KeyValue) -> None:
    await kv.set("short", b"v", ttl=0.2)
    await kv.set("long", b"v", ttl=30)
    assert await kv.get("short") == b"v"
    await asyncio.sleep(0.3)
    assert await kv.get("short") is None
    assert await kv.delete("short") is False
    assert await kv.get("long") == b"v"


async def test_set_without_ttl_makes_key_persistent(kv: KeyValue) -> None:
    await kv.set("k", b"v1", ttl=0.2)
    await kv.set("k", b"v2")
    await asyncio.sleep(0.3)
    assert await kv.get("k") == b"v2"


async def test_zero_ttl_is_expired_at_once(kv: KeyValue) -> None:
    await kv.set("k", b"old")
    await kv.set("k", b"new", ttl=0)
    assert await kv.get("k") is None


async def test_namespaces_do_not_see_each_other(kv_url: str, kv: KeyValue) -> None:
    other_ns = f"ludex-test:{uuid.uuid4().hex}:"
    other = create_key_value(kv_url, namespace=other_ns)
    await other.start()
    try:
        await kv.set("shared-name", b"mine")
        assert await other.get("shared-name") is None
        assert await other.acquire_lock("shared-lock", "b", 5) is not None
        assert await kv.acquire_lock("shared-lock", "a", 5) is not None
    finally:
        await other.close()
        if kv_url.startswith("redis"):
            await _drop_namespace(kv_url, other_ns)


BAD_CALLS: list[tuple[str, Callable[[KeyValue], Awaitable[object]]]] = [
    ("empty key get", lambda kv: kv.get("")),
    ("empty key set", lambda kv: kv.set("", b"v")),
    ("negative ttl", lambda kv: kv.set("k", b"v", ttl=-1)),
    ("nan ttl", lambda kv: kv.set("k", b"v", ttl=math.nan)),
    ("str value", lambda kv: kv.set("k", "text")),  # type: ignore[arg-type]
    ("cas negative ttl", lambda kv: kv.compare_and_set("k", None, b"v", ttl=-0.5)),
    ("remember empty key", lambda kv: kv.remember("", b"v")),
    ("zero lease", lambda kv: kv.acquire_lock("l", "o", 0)),
    ("negative lease", lambda kv: kv.acquire_lock("l", "o", -1)),
    ("empty owner", lambda kv: kv.acquire_lock("l", "", 1)),
    ("empty lock name", lambda kv: kv.acquire_lock("", "o", 1)),
    ("bad lease token", lambda kv: kv.release_lock(Lease("l", "o", 0, 0.0))),
    ("renew zero lease", lambda kv: kv.renew_lock(Lease("l", "o", 1, 0.0), 0)),
    ("zero capacity", lambda kv: kv.rate_limit("r", 0, 1.0)),
    ("zero refill", lambda kv: kv.rate_limit("r", 1, 0.0)),
    ("negative cost", lambda kv: kv.rate_limit("r", 1, 1.0, cost=-1)),
]


@pytest.mark.parametrize(("what", "call"), BAD_CALLS, ids=[b[0] for b in BAD_CALLS])
async def test_bad_arguments_are_refused(
    kv: KeyValue, what: str, call: Callable[[KeyValue], Awaitable[object]]
) -> None:
    with pytest.raises(KeyValueError):
        await call(kv)


# --- compare and set ----------------------------------------------------------------


async def test_compare_and_set_from_absent_present_and_mismatch(kv: KeyValue) -> None:
    assert await kv.compare_and_set("k", None, b"1") is True
    assert await kv.get("k") == b"1"
    assert await kv.compare_and_set("k", None, b"x") is False  # present, expected absent
    assert await kv.compare_and_set("k", b"0", b"x") is False  # mismatch
    assert await kv.get("k") == b"1"
    assert await kv.compare_and_set("k", b"1", b"2") is True
    assert await kv.get("k") == b"2"
    assert await kv.compare_and_set("missing", b"2", b"x") is False
    assert await kv.get("missing") is None


async def test_compare_and_set_with_ttl(kv: KeyValue) -> None:
    assert await kv.compare_and_set("k", None, b"1", ttl=0.2) is True
    await asyncio.sleep(0.3)
    assert await kv.get("k") is None
    assert await kv.compare_and_set("k", b"1", b"2") is False  # expired means absent
    assert await kv.compare_and_set("k", None, b"3") is True


async def test_concurrent_compare_and_set_increments_are_never_lost(kv: KeyValue) -> None:
    conflicts = 0

    async def increment() -> None:
        nonlocal conflicts
        while True:
            current = await kv.get("counter")
            await asyncio.sleep(0)  # let the other tasks interleave, as a network would
            new = str(int(current or b"0") + 1).encode()
            if await kv.compare_and_set("counter", current, new):
                return
            conflicts += 1

    await asyncio.gather(*(increment() for _ in range(50)))
    assert await kv.get("counter") == b"50"
    assert conflicts > 0  # the test really raced


# --- locks --------------------------------------------------------------------------


async def test_lock_is_exclusive_and_reentrant_for_its_owner(kv: KeyValue) -> None:
    before = time.time()
    a = await kv.acquire_lock("table:1", "a", 5)
    assert a is not None
    assert (a.name, a.owner) == ("table:1", "a")
    assert before + 4 <= a.expires_at <= time.time() + 5.5
    assert await kv.acquire_lock("table:1", "b", 5) is None
    again = await kv.acquire_lock("table:1", "a", 5)
    assert again is not None
    assert again.token == a.token
    assert await kv.release_lock(a) is True
    assert await kv.release_lock(a) is False
    b = await kv.acquire_lock("table:1", "b", 5)
    assert b is not None
    assert b.token > a.token


async def test_expired_lock_goes_to_next_owner_with_larger_token(kv: KeyValue) -> None:
    a = await kv.acquire_lock("table:2", "a", 0.2)
    assert a is not None
    await asyncio.sleep(0.3)
    b = await kv.acquire_lock("table:2", "b", 5)
    assert b is not None
    assert b.token > a.token
    with pytest.raises(LockLost):
        await kv.renew_lock(a, 5)
    assert await kv.release_lock(a) is False  # a stale lease never releases b
    assert await kv.acquire_lock("table:2", "c", 5) is None
    renewed = await kv.renew_lock(b, 5)
    assert renewed.token == b.token


async def test_stale_lease_of_same_owner_cannot_release_new_one(kv: KeyValue) -> None:
    old = await kv.acquire_lock("table:3", "a", 0.2)
    assert old is not None
    await asyncio.sleep(0.3)
    new = await kv.acquire_lock("table:3", "a", 5)
    assert new is not None
    assert new.token > old.token
    with pytest.raises(LockLost):
        await kv.renew_lock(old, 5)
    assert await kv.release_lock(old) is False
    assert await kv.acquire_lock("table:3", "b", 5) is None
    assert await kv.release_lock(new) is True


async def test_renew_keeps_the_lease_alive(kv: KeyValue) -> None:
    lease = await kv.acquire_lock("table:4", "a", 0.3)
    assert lease is not None
    await asyncio.sleep(0.15)
    renewed = await kv.renew_lock(lease, 0.5)
    assert renewed.token == lease.token
    assert renewed.expires_at > lease.expires_at
    await asyncio.sleep(0.25)  # past the first lease, inside the renewed one
    assert await kv.acquire_lock("table:4", "b", 5) is None
    assert await kv.release_lock(renewed) is True


async def test_renew_after_release_raises_lock_lost(kv: KeyValue) -> None:
    lease = await kv.acquire_lock("table:5", "a", 5)
    assert lease is not None
    assert await kv.release_lock(lease) is True
    with pytest.raises(LockLost):
        await kv.renew_lock(lease, 5)


async def test_fencing_tokens_strictly_increase(kv: KeyValue) -> None:
    tokens = []
    for i in range(6):
        lease = await kv.acquire_lock("table:6", f"owner-{i % 2}", 5)
        assert lease is not None
        tokens.append(lease.token)
        if i % 3 == 2:
            await kv.set("unrelated", b"x")
        assert await kv.release_lock(lease) is True
    assert all(later > earlier for earlier, later in itertools.pairwise(tokens))


async def test_concurrent_acquire_grants_exactly_one(kv: KeyValue) -> None:
    leases = await asyncio.gather(*(kv.acquire_lock("table:7", f"o{i}", 5) for i in range(20)))
    granted = [lease for lease in leases if lease is not None]
    assert len(granted) == 1


# --- rate limits --------------------------------------------------------------------


async def test_rate_limit_burst_then_refuse(kv: KeyValue) -> None:
    remaining = []
    for _ in range(5):
        decision = await kv.rate_limit("ip:1", capacity=5, refill_per_second=1.0)
        assert decision.allowed
        assert decision.retry_after == 0
        remaining.append(decision.remaining)
    assert remaining == pytest.approx([4, 3, 2, 1, 0], abs=0.05)
    refused = await kv.rate_limit("ip:1", capacity=5, refill_per_second=1.0)
    assert not refused.allowed
    assert 0.8 < refused.retry_after <= 1.0
    other = await kv.rate_limit("ip:2", capacity=5, refill_per_second=1.0)
    assert other.allowed  # buckets are per key


async def test_rate_limit_refills_after_retry_after(kv: KeyValue) -> None:
    for _ in range(3):
        assert (await kv.rate_limit("user:1", 3, 10.0)).allowed
    refused = await kv.rate_limit("user:1", 3, 10.0)
    assert not refused.allowed
    assert 0.05 < refused.retry_after <= 0.1
    await asyncio.sleep(refused.retry_after + 0.02)
    assert (await kv.rate_limit("user:1", 3, 10.0)).allowed
    assert not (await kv.rate_limit("user:1", 3, 10.0)).allowed


async def test_rate_limit_cost(kv: KeyValue) -> None:
    too_big = await kv.rate_limit("api:1", capacity=5, refill_per_second=1.0, cost=6)
    assert not too_big.allowed
    assert too_big.retry_after == math.inf  # waiting never helps
    big = await kv.rate_limit("api:1", capacity=5, refill_per_second=1.0, cost=4)
    assert big.allowed  # the refused call took nothing
    assert big.remaining == pytest.approx(1, abs=0.05)
    refused = await kv.rate_limit("api:1", capacity=5, refill_per_second=1.0, cost=3)
    assert not refused.allowed
    assert 1.8 < refused.retry_after <= 2.0


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    capacity=st.integers(min_value=1, max_value=5),
    rate=st.sampled_from([5.0, 20.0, 100.0]),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=0.01), st.integers(min_value=1, max_value=3)),
        min_size=1,
        max_size=12,
    ),
)
async def test_rate_limit_never_allows_more_than_capacity_plus_refill(
    kv: KeyValue, capacity: int, rate: float, steps: list[tuple[float, int]]
) -> None:
    key = f"prop:{uuid.uuid4().hex}"
    spent = 0
    started = time.monotonic()
    for pause, cost in steps:
        if pause:
            await asyncio.sleep(pause)
        decision = await kv.rate_limit(key, capacity, rate, cost=cost)
        if decision.allowed:
            spent += cost
        else:
            assert decision.retry_after > 0
        assert 0 <= decision.remaining <= capacity
    elapsed = time.monotonic() - started
    assert spent <= capacity + rate * elapsed + 1e-6


# --- remember (idempotency records) ---------------------------------------------------


async def test_remember_keeps_the_first_value(kv: KeyValue) -> None:
    first = await kv.remember("tx:1", b"answer-1")
    assert first.first is True
    assert first.value == b"answer-1"
    later = await kv.remember("tx:1", b"answer-2")
    assert later.first is False
    assert later.value == b"answer-1"
    assert await kv.get("tx:1") == b"answer-1"


async def test_remember_with_ttl_forgets(kv: KeyValue) -> None:
    assert (await kv.remember("nonce:1", b"a", ttl=0.2)).first
    assert not (await kv.remember("nonce:1", b"b", ttl=0.2)).first
    await asyncio.sleep(0.3)
    again = await kv.remember("nonce:1", b"c", ttl=0.2)
    assert again.first
    assert again.value == b"c"


async def test_concurrent_remember_has_exactly_one_winner(kv: KeyValue) -> None:
    results = await asyncio.gather(
        *(kv.remember("tx:2", f"answer-{i}".encode()) for i in range(25))
    )
    winners = [r for r in results if r.first]
    assert len(winners) == 1
    assert {r.value for r in results} == {winners[0].value}


# --- factory and failures (no server needed) ------------------------------------------


async def test_unreachable_redis_raises_backend_unavailable() -> None:
    kv = create_key_value("redis://:sekret@127.0.0.1:1/0")
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as info:
        await kv.ping()
    assert "sekret" not in str(info.value)
    with pytest.raises(BackendUnavailable):
        await kv.start()
    with pytest.raises(BackendUnavailable):
        await kv.compare_and_set("k", None, b"v")
    assert time.monotonic() - started < 5  # refused fast, not retried for long
    await kv.close()


def test_unknown_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="memory://"):
        create_key_value("memcached://127.0.0.1:11211")


def test_factory_picks_backend_by_scheme() -> None:
    assert isinstance(create_key_value("memory://"), MemoryKeyValue)
    assert type(create_key_value("redis://127.0.0.1:1/0")).__name__ == "RedisKeyValue"
    assert type(create_key_value("rediss://127.0.0.1:1/0")).__name__ == "RedisKeyValue"


# --- memory backend only -------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_memory_expired_entries_are_purged() -> None:
    clock = FakeClock()
    kv = MemoryKeyValue(clock=clock, sweep_every=100)
    for round_ in range(10):
        for i in range(500):
            await kv.set(f"k{round_}:{i}", b"v", ttl=1)
            await kv.rate_limit(f"r{round_}:{i}", 10, 100.0)
        clock.now += 5
        # 10,000 entries written in all, at most 1,000 of them alive at once.
        assert len(kv) <= 3000
    leftover = len(kv)
    assert leftover > 0  # the sweep is amortised, not eager
    assert kv.sweep() == leftover
    assert len(kv) == 0
    assert await kv.get("k9:1") is None


async def test_memory_fake_clock_drives_leases_and_buckets() -> None:
    clock = FakeClock()
    kv = MemoryKeyValue(clock=clock)
    a = await kv.acquire_lock("t", "a", 10)
    assert a is not None
    clock.now += 9.9
    assert await kv.acquire_lock("t", "b", 10) is None
    clock.now += 0.2
    b = await kv.acquire_lock("t", "b", 10)
    assert b is not None
    assert b.token == a.token + 1
    assert (await kv.rate_limit("r", 2, 0.5, cost=2)).allowed
    refused = await kv.rate_limit("r", 2, 0.5)
    assert refused.retry_after == pytest.approx(2.0)
    clock.now += 2.0
    assert (await kv.rate_limit("r", 2, 0.5)).allowed


@given(
    capacity=st.integers(min_value=1, max_value=10),
    rate=st.floats(min_value=0.1, max_value=50),
    steps=st.lists(
        st.tuples(st.floats(min_value=0, max_value=2), st.floats(min_value=0.1, max_value=12)),
        max_size=40,
    ),
)
async def test_memory_token_bucket_matches_its_budget(
    capacity: int, rate: float, steps: list[tuple[float, float]]
) -> None:
    clock = FakeClock()
    kv = MemoryKeyValue(clock=clock)
    spent = 0.0
    elapsed = 0.0
    for advance, cost in steps:
        clock.now += advance
        elapsed += advance
        decision = await kv.rate_limit("k", capacity, rate, cost=cost)
        if decision.allowed:
            spent += cost
        elif cost <= capacity:
            # Refused only when short, and waiting retry_after is exactly enough.
            assert decision.remaining < cost
            assert decision.retry_after == pytest.approx((cost - decision.remaining) / rate)
    assert spent <= capacity + rate * elapsed + 1e-6
