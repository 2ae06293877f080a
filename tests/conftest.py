"""Shared test configuration.

Real local services (PostgreSQL, MariaDB, Redis, Kafka, anvil) are started by
``scripts/services up``, which writes their URLs to ``.services/env``. Tests read
them from the environment first, then from that file. When a service is not
running, its tests are skipped with the reason, unless ``LUDEX_REQUIRE_SERVICES=1``
(set by ``make test`` and CI), in which case they fail: in CI nothing may skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVICES_ENV = ROOT / ".services" / "env"

SERVICE_VARS = {
    "postgres": "LUDEX_TEST_POSTGRES_URL",
    "mysql": "LUDEX_TEST_MYSQL_URL",
    "redis": "LUDEX_TEST_REDIS_URL",
    "kafka": "LUDEX_TEST_KAFKA_URL",
    "anvil": "LUDEX_TEST_ANVIL_URL",
}


def _file_env() -> dict[str, str]:
    if not SERVICES_ENV.exists():
        return {}
    values = {}
    for line in SERVICES_ENV.read_text().splitlines():
        name, sep, value = line.strip().partition("=")
        if sep and not name.startswith("#"):
            values[name] = value
    return values


def service_url(name: str) -> str:
    """The URL of a real local service, or skip/fail when it is not running."""
    var = SERVICE_VARS[name]
    url = os.environ.get(var) or _file_env().get(var)
    if url:
        return url
    reason = f"{name} is not running: start it with `scripts/services up` (or set {var})"
    if os.environ.get("LUDEX_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


BACKENDS = ("memory", "kafka", "redis", "sqlite", "postgres", "mysql", "chdb", "clickhouse")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Show which backends the contract suites really ran against (and how it went)."""
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(report, "nodeid", "")
            if "tests/contract/" not in nodeid or "[" not in nodeid:
                continue
            if getattr(report, "when", "call") != "call" and outcome == "passed":
                continue
            params = nodeid[nodeid.index("[") + 1 : -1].split("-")
            for backend in BACKENDS:
                if backend in params:
                    counts.setdefault(backend, {}).setdefault(outcome, 0)
                    counts[backend][outcome] += 1
    if not counts:
        return
    terminalreporter.section("contract suites by backend")
    for backend in BACKENDS:
        if backend in counts:
            summary = ", ".join(f"{n} {o}" for o, n in sorted(counts[backend].items()))
            terminalreporter.write_line(f"{backend:<10} {summary}")
