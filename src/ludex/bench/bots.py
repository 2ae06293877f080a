"""Action-to-broadcast with tables of bots: the real gateway (``ludex serve gateway`` in
its own process, embedded backends) and bots that sign in, buy in and play over
``/v1/stream`` from this process.

The figure is per action: from the bot sending ``act`` to the bot receiving its own
action on the table channel, so it holds the client's JSON work, the server's command
path (validation, the engine, the fenced save, the publish) and both socket hops. The
bots run in the bench process and share the machine's CPUs with the server; the
effects (ledger, outbox) run after the broadcast and are not in the figure, but they
load the same server process. The window opens once every bot is seated; the server's
CPU seconds over it (from ``/proc``) give its cost per action.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
import sys
import tempfile
from typing import Any

import httpx

from ludex.adapters.chain.anvil import free_port
from ludex.gameserver.bots import AdminApi, BotError, run_bots
from ludex.gateway.server import settle_gc


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def action_to_broadcast(
    tables: int, players_per_table: int, seconds: float, think_seconds: float = 0.0
) -> dict[str, Any]:
    """Run the gateway, seat the bots, play ``seconds``; the summary with p50/p99."""
    # The bots measure in this process: tune its collector as the gateway tunes its own
    # (ludex.gateway.server.settle_gc), so a client pause is not counted as the server's.
    thresholds = gc.get_threshold()
    settle_gc()
    try:
        return await _measure(tables, players_per_table, seconds, think_seconds)
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def _measure(
    tables: int, players_per_table: int, seconds: float, think_seconds: float
) -> dict[str, Any]:
    port = free_port()
    admin_token = secrets.token_urlsafe(24)
    with (
        tempfile.TemporaryDirectory(prefix="ludex-bench-bots-") as data,
        tempfile.TemporaryFile(dir=data, prefix="gateway-", suffix=".log") as server_log,
    ):
        env = {
            **os.environ,
            "LUDEX_STORE_URL": f"sqlite:///{data}/ludex.db",
            "LUDEX_ANALYTICS_URL": f"chdb://{data}/olap",
            "LUDEX_BUS_URL": "memory://",
            "LUDEX_CACHE_URL": "memory://",
            "LUDEX_DATA_DIR": data,
            "LUDEX_HTTP_PORT": str(port),
            "LUDEX_ADMIN_TOKEN": admin_token,
            "LUDEX_SIWE_DOMAIN": f"127.0.0.1:{port}",
            "LUDEX_AUTH_RATE_CAPACITY": "100000",
            "LUDEX_AUTH_RATE_PER_SECOND": "100000",
            "LUDEX_API_RATE_CAPACITY": "100000",
            "LUDEX_API_RATE_PER_SECOND": "100000",
            "LUDEX_LOG_LEVEL": "WARNING",
        }
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "ludex",
            "serve",
            "gateway",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=server_log,  # a file: an unread pipe would stall the server once full
        )
        base = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                for _ in range(600):
                    if server.returncode is not None:
                        server_log.seek(0)
                        err = server_log.read().decode(errors="replace")[-500:]
                        return {"failed": f"the gateway exited ({server.returncode}): {err}"}
                    with contextlib.suppress(httpx.TransportError):
                        if (await http.get("/healthz")).status_code == 200:
                            break
                    await asyncio.sleep(0.1)
                else:
                    return {"failed": "the gateway did not answer /healthz within 60 s"}
                admin = AdminApi(http, admin_token)
                run = await run_bots(
                    base,
                    tables=tables,
                    players_per_table=players_per_table,
                    seconds=seconds,
                    open_table=admin.open_table,
                    fund=admin.fund,
                    siwe_domain=f"127.0.0.1:{port}",
                    chain_id=31337,
                    seed=7,
                    think_seconds=think_seconds,
                    server_cpu=lambda: process_cpu_seconds(server.pid),
                )
            summary = run.summary()
            server_log.seek(0)
            warnings = server_log.read().decode(errors="replace").splitlines()
            if warnings:  # the gateway logs at WARNING: anything here is news
                summary["gateway_warnings"] = {"count": len(warnings), "first": warnings[:3]}
            if not summary["actions"]:
                return {"failed": "the bots made no action", **summary}
            return summary
        except (BotError, httpx.HTTPError) as exc:
            return {"failed": f"{type(exc).__name__}: {exc}"}
        finally:
            with contextlib.suppress(ProcessLookupError):
                server.terminate()
            try:
                async with asyncio.timeout(15):
                    await server.wait()
            except TimeoutError:
                server.kill()
                await server.wait()
