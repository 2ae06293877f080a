"""End to end: `ludex run --demo` on embedded defaults, as `make run` starts it.

Starts the real command in a subprocess (with its own anvil node), waits for
/readyz to report every backend ready, watches demo events travel outbox → relay →
bus → analytics sink → chDB, then stops it with SIGTERM and checks a clean exit.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ludex.adapters.chain.anvil import free_port
from tests.conftest import ROOT

ANVIL = ROOT / "node_modules" / ".bin" / "anvil"


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.timeout(180)
def test_run_serves_ready_backends_and_the_demo_reaches_analytics(tmp_path: Path) -> None:
    if not ANVIL.exists():
        pytest.fail("anvil is not installed: run `make install` (npm ci)")
    http_port, anvil_port = free_port(), free_port()
    env = {
        **os.environ,
        "LUDEX_HTTP_PORT": str(http_port),
        "LUDEX_ANVIL_PORT": str(anvil_port),
        "LUDEX_ANVIL_BIN": str(ANVIL),
        "LUDEX_STORE_URL": f"sqlite:///{tmp_path}/ludex.db",
        "LUDEX_ANALYTICS_URL": f"chdb://{tmp_path}/olap",
        "LUDEX_BUS_URL": "memory://",
        "LUDEX_CACHE_URL": "memory://",
        "LUDEX_CHAIN_URL": "anvil://",
        "LUDEX_DATA_DIR": str(tmp_path),
        "LUDEX_DEMO_SUMMARY_EVERY": "1",
    }
    log_path = tmp_path / "ludex.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "ludex", "run", "--demo"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            ready = None
            while time.monotonic() - started < 60:
                assert process.poll() is None, log_path.read_text()
                try:
                    response = httpx.get(f"http://127.0.0.1:{http_port}/readyz", timeout=5)
                except httpx.TransportError:
                    time.sleep(0.2)
                    continue
                if response.status_code == 200:
                    ready = response.json()
                    break
                time.sleep(0.2)
            assert ready is not None, f"not ready within 60 s:\n{log_path.read_text()[-3000:]}"
            assert set(ready["backends"]) == {"store", "analytics", "bus", "cache", "chain"}
            assert ready["backends"]["chain"]["kind"] == "anvil"
            assert _port_open(anvil_port)

            # The demo's bets reach ClickHouse (chDB) through outbox, relay, bus and sink.
            counts: dict[str, int] = {}
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and counts.get("wallet.bet_placed", 0) < 2:
                time.sleep(0.5)
                for line in log_path.read_text().splitlines():
                    if '"demo.summary"' in line:
                        counts = json.loads(line)["analytics_events"]
            assert counts.get("wallet.bet_placed", 0) >= 2, log_path.read_text()[-3000:]
            assert counts.get("game.finalized", 0) >= 2

            metrics = httpx.get(f"http://127.0.0.1:{http_port}/metrics", timeout=5).text
            assert "ludex_outbox_published_total" in metrics
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
    assert code == 0, log_path.read_text()[-3000:]
    assert not _port_open(anvil_port), "anvil was left running"
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert lines, "logs are not JSON lines"
    assert all("timestamp" in line and "level" in line for line in lines)
