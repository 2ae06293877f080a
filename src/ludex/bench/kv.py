"""KeyValue throughput: ludex's KeyValue port against the bare redis-py asyncio client.

For every backend (``memory://`` always, Redis when a URL is known) each operation
kind runs ``ops`` times, spread over ``concurrency`` tasks on one event loop (each
task awaits its operations one after another), ``repeat`` times; the best run is
reported. On Redis, ludex and the peer take turns kind by kind and run by run, so
other load on the machine falls on both:

* ``set`` / ``get``: ``keys`` distinct keys, 64-byte values (``get`` after ``set``,
  so every read hits);
* ``compare_and_set``: one key per task, each call swaps the value the task wrote
  last (every call succeeds);
* ``rate_limit``: one token bucket per task, large enough to allow every call;
* ``remember``: a new idempotency key per call (every call stores);
* ``lock``: ``acquire_lock`` + ``release_lock`` on one lock per task (one op = both).

On Redis the peer is redis-py's asyncio client with the same connection-pool size
and the same concurrency; what each peer op is sent as is listed in the JSON under
``peer_ops``. The ratio is ludex's overhead (argument checks, key namespacing,
error translation, result objects) over the bare client. Every run writes under a
fresh key prefix and deletes its keys afterwards.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ludex.adapters.kv import create_key_value
from ludex.bench._common import header, per_second, progress, redacted, resolve
from ludex.errors import BackendError
from ludex.ports.kv import KeyValue

VALUE = b"v" * 64
MAX_CONNECTIONS = 64
KINDS = ("set", "get", "compare_and_set", "rate_limit", "remember", "lock")

# One task's work: called with (run number, task index, operation indexes); returns
# successes. Keys that a run changes for good (CAS, remember) carry the run number.
Worker = Callable[[int, int, range], Awaitable[int]]


async def _timed(ops: int, concurrency: int, worker: Worker, run: int) -> tuple[int, float]:
    """Run ``ops`` operations over ``concurrency`` tasks; (successes, seconds)."""
    tasks = min(concurrency, ops)
    started = time.perf_counter()
    done = await asyncio.gather(*(worker(run, t, range(t, ops, tasks)) for t in range(tasks)))
    return sum(done), time.perf_counter() - started


async def _measure(
    label: str,
    ops: int,
    concurrency: int,
    repeat: int,
    sides: dict[str, dict[str, Worker]],
) -> dict[str, dict[str, Any]]:
    """Every kind on every side, side by side per kind; the best of ``repeat`` runs.

    Running the sides alternately means other load on the machine falls on both.
    """
    figures: dict[str, dict[str, Any]] = {side: {} for side in sides}
    for kind in KINDS:
        best = dict.fromkeys(sides, float("inf"))
        for round_ in range(1, repeat + 1):
            for side, workers in sides.items():
                progress(
                    f"kv/{label}: {side} {kind} x{ops}, {concurrency} concurrent tasks "
                    f"(round {round_}/{repeat})"
                )
                succeeded, seconds = await _timed(ops, concurrency, workers[kind], round_)
                if succeeded != ops:
                    raise BackendError(
                        f"bench: {label} {side} {kind}: {succeeded} of {ops} operations succeeded"
                    )
                best[side] = min(best[side], seconds)
        for side in sides:
            figures[side][kind] = {"ops": ops, "ops_per_s": per_second(ops, best[side])}
    return figures


def _ours(kv: KeyValue, keys: int) -> dict[str, Worker]:
    async def set_(run: int, t: int, indexes: range) -> int:
        for i in indexes:
            await kv.set(f"k{i % keys}", VALUE)
        return len(indexes)

    async def get(run: int, t: int, indexes: range) -> int:
        hits = 0
        for i in indexes:
            hits += await kv.get(f"k{i % keys}") is not None
        return hits

    async def cas(run: int, t: int, indexes: range) -> int:
        current: bytes | None = None
        wrote = 0
        for i in indexes:
            new = b"%d" % i
            if await kv.compare_and_set(f"cas{run}:{t}", current, new):
                wrote += 1
                current = new
        return wrote

    async def rate(run: int, t: int, indexes: range) -> int:
        allowed = 0
        for _ in indexes:
            allowed += (await kv.rate_limit(f"rl{t}", 1_000_000_000, 1000.0)).allowed
        return allowed

    async def remember(run: int, t: int, indexes: range) -> int:
        stored = 0
        for i in indexes:
            stored += (await kv.remember(f"rm{run}:{i}", VALUE)).first
        return stored

    async def lock(run: int, t: int, indexes: range) -> int:
        held = 0
        for _ in indexes:
            lease = await kv.acquire_lock(f"lock{t}", f"owner{t}", 30.0)
            if lease is not None and await kv.release_lock(lease):
                held += 1
        return held

    return {
        "set": set_,
        "get": get,
        "compare_and_set": cas,
        "rate_limit": rate,
        "remember": remember,
        "lock": lock,
    }


PEER_OPS = {
    "set": "SET key value",
    "get": "GET key",
    "compare_and_set": "the same Lua script as ludex, by EVALSHA (redis-py register_script)",
    "rate_limit": "the same token-bucket Lua script as ludex, by EVALSHA",
    "remember": "SET key value NX GET (one native command: store if absent, return the old)",
    "lock": (
        "redis-py's own Lock: acquire(blocking=False) (SET NX PX) + release "
        "(Lua compare-and-delete); no fencing token"
    ),
}


def _peer(client: Any, prefix: str, keys: int) -> dict[str, Worker]:
    from ludex.adapters.kv.redis import _CAS, _RATE

    cas_script = client.register_script(_CAS)
    rate_script = client.register_script(_RATE)

    async def set_(run: int, t: int, indexes: range) -> int:
        for i in indexes:
            await client.set(f"{prefix}k{i % keys}", VALUE)
        return len(indexes)

    async def get(run: int, t: int, indexes: range) -> int:
        hits = 0
        for i in indexes:
            hits += await client.get(f"{prefix}k{i % keys}") is not None
        return hits

    async def cas(run: int, t: int, indexes: range) -> int:
        current: bytes | None = None
        wrote = 0
        for i in indexes:
            new = b"%d" % i
            args = ["0" if current is None else "1", current or b"", new, ""]
            if int(await cas_script(keys=[f"{prefix}cas{run}:{t}"], args=args)) == 1:
                wrote += 1
                current = new
        return wrote

    async def rate(run: int, t: int, indexes: range) -> int:
        allowed = 0
        for _ in indexes:
            reply = await rate_script(
                keys=[f"{prefix}rl{t}"], args=[1_000_000_000, "1000.0", "1.0"]
            )
            allowed += int(reply[0]) == 1
        return allowed

    async def remember(run: int, t: int, indexes: range) -> int:
        stored = 0
        for i in indexes:
            stored += await client.set(f"{prefix}rm{run}:{i}", VALUE, nx=True, get=True) is None
        return stored

    async def lock(run: int, t: int, indexes: range) -> int:
        held = 0
        for _ in indexes:
            lock = client.lock(f"{prefix}lock{t}", timeout=30.0)
            if await lock.acquire(blocking=False):
                await lock.release()
                held += 1
        return held

    return {
        "set": set_,
        "get": get,
        "compare_and_set": cas,
        "rate_limit": rate,
        "remember": remember,
        "lock": lock,
    }


async def _cleanup(client: Any, prefix: str) -> None:
    try:
        batch: list[Any] = []
        async for name in client.scan_iter(match=f"{prefix}*", count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                await client.unlink(*batch)
                batch = []
        if batch:
            await client.unlink(*batch)
    except Exception as exc:  # cleanup must not hide the figures
        progress(f"kv/redis: could not delete the bench keys ({type(exc).__name__}: {exc})")


async def run(
    ops: int = 10_000,
    *,
    concurrency: int = 50,
    repeat: int = 2,
    keys: int = 1_000,
    redis: str | None = None,
) -> dict[str, Any]:
    """Run the KeyValue benchmark; ``redis`` None means the local service, "" skips Redis."""
    backends: dict[str, Any] = {}

    memory = create_key_value("memory://", namespace="bench:")
    await memory.start()
    try:
        backends["memory"] = {
            "url": "memory://",
            "ludex": (
                await _measure("memory", ops, concurrency, repeat, {"ludex": _ours(memory, keys)})
            )["ludex"],
            "peer": None,
            "note": "in-process dicts; no client to compare with, it shows ludex's own cost",
        }
    finally:
        await memory.close()

    url, reason = resolve("redis", redis)
    if url is None:
        backends["redis"] = {"skipped": reason}
    else:
        import redis.asyncio as aioredis

        run_prefix = f"ludex-bench:{uuid.uuid4().hex[:10]}:"
        entry: dict[str, Any] = {"url": redacted(url), "key_prefix": run_prefix}
        client = aioredis.Redis.from_url(url, max_connections=MAX_CONNECTIONS)
        try:
            ours = create_key_value(url, namespace=run_prefix + "ours:")
            await ours.start()
            try:
                sides = {
                    "ludex": _ours(ours, keys),
                    "peer_redis_py": _peer(client, run_prefix + "peer:", keys),
                }
                entry.update(await _measure("redis", ops, concurrency, repeat, sides))
            finally:
                await ours.close()
            entry["peer_ops"] = PEER_OPS
            entry["ludex_vs_peer"] = {
                kind: round(
                    entry["ludex"][kind]["ops_per_s"] / entry["peer_redis_py"][kind]["ops_per_s"],
                    2,
                )
                for kind in KINDS
            }
        except Exception as exc:  # ludex or redis errors: report them in the JSON
            entry["failed"] = f"{type(exc).__name__}: {exc}"
        finally:
            await _cleanup(client, run_prefix)
            await client.aclose()
        backends["redis"] = entry

    return header(
        "kv",
        input={
            "ops_per_kind": ops,
            "repeat": repeat,
            "concurrency": concurrency,
            "distinct_keys": keys,
            "value_bytes": len(VALUE),
            "redis_pool_connections": MAX_CONNECTIONS,
        },
        backends=backends,
        note=(
            "ludex: the KeyValue port (create_key_value), every call checked, namespaced "
            "and translated; on Redis every read-then-write op is one Lua script by "
            "EVALSHA. peer_redis_py: redis.asyncio with the same pool size and "
            "concurrency, ops as listed in peer_ops. lock = acquire + release (2 round "
            "trips on Redis). ludex_vs_peer is ours / peer (1.0 = no overhead)."
        ),
    )
