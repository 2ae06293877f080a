"""Readiness: ask every backend whether it answers, concurrently and with a time limit."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ludex.ops.metrics import BACKEND_CHECK_SECONDS, BACKEND_UP

if TYPE_CHECKING:
    from ludex.composition import Container


@dataclass(frozen=True, slots=True)
class BackendHealth:
    port: str
    kind: str
    ready: bool
    latency_ms: float
    error: str | None = None


async def _check(port: str, kind: str, target: Any, timeout: float) -> BackendHealth:
    started = time.perf_counter()
    error: str | None = None
    try:
        await asyncio.wait_for(target.ping(), timeout)
    except TimeoutError:
        error = f"no answer within {timeout:.1f}s"
    except Exception as exc:  # any failure means not ready; the message says which
        error = f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - started
    BACKEND_UP.labels(port, kind).set(0 if error else 1)
    BACKEND_CHECK_SECONDS.labels(port, kind).set(elapsed)
    return BackendHealth(port, kind, error is None, round(elapsed * 1000, 2), error)


async def check_backends(container: Container, timeout: float = 2.0) -> list[BackendHealth]:
    kinds = container.settings.backends()
    return list(
        await asyncio.gather(
            *(
                _check(port, kinds[port], target, timeout)
                for port, target in container.ports().items()
            )
        )
    )


def report(results: list[BackendHealth]) -> dict[str, Any]:
    return {
        "ready": all(r.ready for r in results),
        "backends": {r.port: {k: v for k, v in asdict(r).items() if k != "port"} for r in results},
    }
