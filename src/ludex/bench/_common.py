"""Pieces the backend benchmarks share: service URLs, sample events, rates, progress.

Backend URLs default to the real local services that ``scripts/services up``
records in ``.services/env`` (the ``LUDEX_TEST_*_URL`` variables; the environment
wins over the file). A backend without a URL is reported as skipped, with the
reason, never left out silently.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from ludex.events import BetPlaced, Envelope, new_event

SERVICE_VARS: Final = {
    "postgres": "LUDEX_TEST_POSTGRES_URL",
    "mysql": "LUDEX_TEST_MYSQL_URL",
    "redis": "LUDEX_TEST_REDIS_URL",
    "kafka": "LUDEX_TEST_KAFKA_URL",
    "anvil": "LUDEX_TEST_ANVIL_URL",
}


def _env_files() -> list[Path]:
    """``.services/env`` in the working directory, then in the source checkout."""
    here = Path.cwd() / ".services" / "env"
    checkout = Path(__file__).resolve().parents[3] / ".services" / "env"
    return [here] if here == checkout else [here, checkout]


def _read_env_file(path: Path) -> dict[str, str]:
    try:
        text = path.read_text()
    except OSError:
        return {}
    values = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and name and not name.startswith("#"):
            values[name] = value.strip()
    return values


def service_url(name: str) -> str | None:
    """The URL of a local service (environment first, then ``.services/env``), or None."""
    var = SERVICE_VARS[name]
    if os.environ.get(var):
        return os.environ[var]
    for path in _env_files():
        value = _read_env_file(path).get(var)
        if value:
            return value
    return None


def resolve(name: str, given: str | None) -> tuple[str | None, str | None]:
    """``(url, None)`` for a backend to run, or ``(None, reason)`` for one to skip.

    ``given`` is the command-line value: None means "use the local service", an
    empty string means "skip this backend".
    """
    if given == "":
        return None, f"{name} disabled on the command line"
    if given:
        return given, None
    url = service_url(name)
    if url:
        return url, None
    var = SERVICE_VARS[name]
    return None, (
        f"no {name} URL: start the services with `scripts/services up`, set {var}, "
        f"or pass --{name} URL"
    )


def progress(message: str) -> None:
    """One line on stderr, so stdout stays pure JSON."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


def sample_events(count: int, keys: int, *, producer: str = "bench") -> list[Envelope]:
    """``count`` valid ``wallet.bet_placed`` envelopes over ``keys`` distinct keys."""
    base = datetime.now(UTC)
    return [
        new_event(
            BetPlaced(
                player_id=f"player-{i % keys}",
                provider="studio-a",
                game_id="slots-7",
                round_id=f"round-{i}",
                transaction_id=f"tx-{i}",
                amount=100 + i,
                currency="CHIPS",
                balance_after=1_000_000 - i,
            ),
            key=f"player-{i % keys}",
            producer=producer,
            occurred_at=base,
        )
        for i in range(count)
    ]


def per_second(count: int, seconds: float) -> float:
    """A rate rounded for reading: whole numbers above 100/s, one decimal below."""
    rate = count / seconds if seconds > 0 else float("inf")
    return round(rate) if rate >= 100 else round(rate, 1)


def latency_ms(samples: list[float]) -> dict[str, float]:
    """p50 / p99 / max of samples given in seconds, in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, max(0, round(0.99 * len(ordered)) - 1))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(p99 * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "samples": len(ordered),
    }


def header(benchmark: str, **extra: Any) -> dict[str, Any]:
    return {
        "benchmark": benchmark,
        "python": platform.python_version(),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(terse=True)},
        **extra,
    }


def redacted(url: str) -> str:
    from ludex.config import redact_url

    return redact_url(url)


def cpu_seconds() -> tuple[float, float | None]:
    """(CPU seconds of this process, busy CPU seconds of the whole machine or None where
    ``/proc/stat`` is missing): read before and after a phase, see :func:`cpu_per_item`."""
    try:
        with open("/proc/stat") as stat:
            ticks = [int(v) for v in stat.readline().split()[1:]]
        machine: float | None = (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        machine = None
    return time.process_time(), machine


def cpu_per_item(
    before: tuple[float, float | None], after: tuple[float, float | None], items: int
) -> dict[str, float | None]:
    """Microseconds of CPU per item: in this process, and in the rest of the machine
    (the database server and the kernel, on a machine that runs nothing else)."""
    own = (after[0] - before[0]) / items * 1e6
    rest = None
    if before[1] is not None and after[1] is not None:
        rest = round(max(0.0, (after[1] - before[1]) / items * 1e6 - own), 1)
    return {"this_process": round(own, 1), "rest_of_machine": rest}
