"""Bots play full hands through a real gateway (uvicorn, SIWE, /v1/stream, the table
host), and afterwards the ledger, the hand records and the event log agree exactly."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from ludex.adapters.chain.anvil import free_port
from ludex.adapters.sql.outbox import fetch_unpublished
from ludex.adapters.sql.tables import poker_hands
from ludex.composition import Container, open_container
from ludex.events import decode
from ludex.gameserver.bots import AdminApi, run_bots
from ludex.gameserver.store import GameStore, escrow_account, player_account, rake_account
from ludex.gateway.server import GatewayServer
from ludex.poker import phh
from ludex.poker.record import from_json, verify_chain
from tests.conftest import service_url
from tests.gateway.test_app import _settings

ADMIN_TOKEN = "an-admin-token-for-bot-tests"


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Container, str]]:
    port = free_port()
    settings = _settings(
        tmp_path,
        service_url("anvil"),
        admin_token=ADMIN_TOKEN,
        auth_rate_capacity=10_000,
        auth_rate_per_second=1000.0,
        http_port=port,
        siwe_domain=f"127.0.0.1:{port}",
        gameserver_lease_seconds=2.0,
    )
    async with open_container(settings) as container:
        stop = asyncio.Event()
        server = GatewayServer(container)
        serving = asyncio.create_task(server.run(stop))
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(100):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield container, base
        stop.set()
        await serving


async def test_bots_play_full_hands_and_the_ledger_matches_the_event_log(
    gateway: tuple[Container, str],
) -> None:
    container, base = gateway
    async with httpx.AsyncClient(base_url=base) as http:
        admin = AdminApi(http, ADMIN_TOKEN)
        run = await run_bots(
            base,
            tables=2,
            players_per_table=3,
            seconds=6.0,
            open_table=admin.open_table,
            fund=admin.fund,
            siwe_domain=container.settings.siwe_domain,
            chain_id=container.settings.siwe_chain_id,
            seed=11,
        )
    summary = run.summary()
    assert summary["actions"] > 0
    assert summary["action_to_broadcast_ms"]["p99"] is not None
    # Wait until every bot has cashed out (leave at the end of the hand in play).
    games = GameStore(container.store)
    bots = [b.address for b in run.bots]
    tables = sorted({b.table_id for b in run.bots})
    for _ in range(200):
        balances = await games.balances([escrow_account(t) for t in tables])
        if all(v == 0 for v in balances.values()):
            break
        await asyncio.sleep(0.05)
    assert all(v == 0 for v in balances.values()), balances

    async with container.store.transaction(read_only=True) as session:
        hands = (await session.execute(select(poker_hands))).all()
        rows = await fetch_unpublished(session, 1_000_000)
    events = [decode(r.payload) for r in rows]
    completed = [e.payload for e in events if e.type == "poker.hand_completed"]
    assert len(hands) >= 2
    assert sorted(c.hand_id for c in completed) == sorted(h.hand_id for h in hands)
    # Each engine step of each hand exactly once, and every hand started once.
    steps = Counter(
        (e.payload.hand_id, e.payload.sequence) for e in events if e.type == "poker.action"
    )
    assert steps
    assert max(steps.values()) == 1
    started = Counter(e.payload.hand_id for e in events if e.type == "poker.hand_started")
    assert set(started) >= {c.hand_id for c in completed}
    assert max(started.values()) == 1

    # The ledger: each bot holds its funding plus the sum of its hand deltas, the rake
    # account holds the sum of the rake, and nothing else moved.
    funded = 200 * 50
    ledger = await games.balances(
        [player_account("CHIPS", b) for b in bots] + [rake_account("CHIPS")]
    )
    for bot in bots:
        net = sum(c.deltas.get(bot, 0) for c in completed)
        assert ledger[player_account("CHIPS", bot)] == funded + net
    assert ledger.get(rake_account("CHIPS"), 0) == sum(c.rake for c in completed)

    # Every table's records verify as one hash chain, and every PHH replays to its deltas.
    for table_id in tables:
        chain = sorted((h for h in hands if h.table_id == table_id), key=lambda h: h.number)
        assert all(v.ok for v in verify_chain([from_json(json.loads(h.record)) for h in chain]))
        for h in chain:
            result = phh.replay(phh.loads(h.history_phh))
            assert result.agrees is True
            deltas = json.loads(h.deltas)
            players = list(result.players)
            assert {p: result.payoffs[k] for k, p in enumerate(players)} == deltas
