"""Reconciliation finds seeded differences between ledger, provider log and events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update
from typer.testing import CliRunner

from ludex import ledger
from ludex.adapters.sql.tables import outbox, provider_transactions
from ludex.cli import app
from ludex.events import decode
from ludex.wagering.reconcile import reconcile
from tests.wagering.conftest import Harness


async def test_reconcile_reports_every_seeded_difference(wallet: Harness) -> None:
    player = await wallet.add_player(1000)
    await wallet.bet(player, 100, "b-1", round_id="r1")
    await wallet.win(player, 250, "w-1", round_id="r1")
    await wallet.bet(player, 40, "b-2", round_id="r2")
    await wallet.rollback(player, "rb-2", "b-2")
    await wallet.rollback(player, "rb-3", "never-seen")
    clean = await reconcile(wallet.store)
    assert clean.ok, clean.differences
    assert clean.transactions == 5
    assert clean.transfers == 4

    async with wallet.store.transaction() as session:
        rows = (await session.execute(select(outbox.c.id, outbox.c.payload))).all()
        [win_event] = [r.id for r in rows if decode(bytes(r.payload)).type == "wallet.win_settled"]
        await session.execute(delete(outbox).where(outbox.c.id == win_event))
        await session.execute(
            update(provider_transactions)
            .where(provider_transactions.c.transaction_id == "b-1")
            .values(amount=101)
        )
        await ledger.transfer(
            session,
            [
                ledger.TransferSpec(
                    "wb:studio:ghost",
                    f"player:{player}",
                    "provider:studio",
                    5,
                    "CHIPS",
                    "bet",
                    metadata={"provider": "studio", "transaction_id": "ghost"},
                )
            ],
        )
    report = await reconcile(wallet.store)
    found = sorted(str(d) for d in report.differences)
    assert found == [
        "events: studio/b-1: provider log bet 101, event bet 100",
        "events: studio/w-1: win of 250 has no event",
        "ledger: studio/b-1: amount: provider log 101, ledger 100",
        "provider log: studio/ghost: ledger bet of 5 (transfer wb:studio:ghost) has no provider "
        "transaction",
    ]


def test_cli_flow_and_reconcile_exit_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUDEX_STORE_URL", f"sqlite:///{tmp_path}/cli.db")
    runner = CliRunner()
    added = runner.invoke(app, ["wallet", "provider", "add", "acme"])
    assert added.exit_code == 0, added.output
    assert "whsec_" in added.stdout
    assert (
        runner.invoke(app, ["wallet", "player", "add", "alice", "--balance", "300"]).exit_code == 0
    )
    assert runner.invoke(app, ["wallet", "player", "balance", "alice"]).stdout.strip() == "300"
    set_limit = runner.invoke(
        app, ["wallet", "limits", "set", "player", "alice", "max_stake", "50", "--actor", "ops"]
    )
    assert set_limit.exit_code == 0
    assert "None -> 50" in set_limit.stdout
    listed = json.loads(runner.invoke(app, ["wallet", "limits", "list", "--json"]).stdout)
    assert listed == [{"scope": "player", "key": "alice", "name": "max_stake", "value": 50}]
    bad = runner.invoke(app, ["wallet", "limits", "set", "provider", "acme", "max_stake", "5"])
    assert bad.exit_code == 1
    ok = runner.invoke(app, ["wallet", "reconcile"])
    assert ok.exit_code == 0
    assert "0 difference(s)" in ok.stdout

    import asyncio

    from ludex.adapters.sql import create_store

    async def seed() -> None:
        store = create_store(f"sqlite:///{tmp_path}/cli.db")
        await store.start()
        try:
            async with store.transaction() as session:
                await ledger.transfer(
                    session,
                    [
                        ledger.TransferSpec(
                            "stray", "player:alice", "provider:acme", 7, "CHIPS", "bet"
                        )
                    ],
                )
        finally:
            await store.close()

    asyncio.run(seed())
    report = runner.invoke(app, ["wallet", "reconcile", "--json"])
    assert report.exit_code == 1
    body = json.loads(report.stdout)
    assert body["ok"] is False
    assert body["differences"][0]["transaction_id"] == "stray"
