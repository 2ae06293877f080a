"""Settled hands mirrored into the vault mirror, end to end on anvil.

Players deposit and lock (the deposit watcher mirrors that), hands of a native table
and a token table settle and are confirmed (the settlement service mirrors them), and
then the contract and the ledger agree: every player's exact amounts, their floors in
the ``vault:`` / ``locked:`` accounts, the treasury, a clearing account back at zero,
each ledger summing to zero, and ``ludex chain reconcile`` finding nothing. A release
of winnings is mirrored without a negative ``locked``; the two services may mirror in
either order. A reorg that makes a batch confirm twice is in test_settlement.py.

Block counts matter (confirmation depths), so the module runs on an anvil of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from eth_utils.crypto import keccak
from sqlalchemy import select
from typer.testing import CliRunner

from ludex import ledger
from ludex.adapters.bus.memory import MemoryBus
from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.adapters.sql.tables import chain_vault_balances, settlement_hands
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import Transactor, contract_at
from ludex.chain.keystore import KeystoreSigner
from ludex.chain.reconcile import Report, reconcile
from ludex.chain.vault import Holding, treasury_accounts
from ludex.cli import app
from ludex.events import HandCompleted, new_event
from ludex.ledger import token_ledger
from ludex.ports.store import OperationalStore
from ludex.services.settlement import SettlementService
from tests.chain.vault_env import (
    ETHER,
    GWEI,
    NATIVE,
    Vault,
    anvil_node,
    deploy_vault,
    mine,
)
from tests.contract.sql_backends import BACKENDS, fresh_database, started_store

CONFIRMATIONS = 2
NATIVE_LOCK = ETHER // 2 + 3  # dust below one unit, in locked too
TOKEN_LOCK = ETHER // 4 + 1


@pytest.fixture(scope="module")
def node_url() -> Iterator[str]:
    with anvil_node() as url:
        yield url


@pytest.fixture
async def chain(node_url: str) -> AsyncIterator[JsonRpcChain]:
    client = JsonRpcChain(node_url)
    await client.start()
    yield client
    await client.close()


@pytest.fixture(params=BACKENDS)
async def any_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[OperationalStore]:
    async with fresh_database(request.param, tmp_path) as url, started_store(url) as store:
        yield store


async def fund_and_lock(vault: Vault) -> None:
    """Each player: 1 ether + 7 wei and 1 token deposited, some of each locked."""
    token = vault.token.address
    for player in vault.players:
        await vault.ludex.transact(player, "deposit", value=ETHER + 7)
        await vault.ludex.transact(player, "lock", NATIVE, NATIVE_LOCK)
        await vault.token.transact(player, "mint", player.address, ETHER)
        await vault.token.transact(player, "approve", vault.ludex.address, ETHER)
        await vault.ludex.transact(player, "depositToken", token, ETHER)
        await vault.ludex.transact(player, "lock", token, TOKEN_LOCK)


def hands(vault: Vault) -> list[HandCompleted]:
    """Three hands of a native table (won by players 0, 0, 1), two of a token table
    (won by 2, 1): the winner wins 18 units, the two others lose 10 each, the rake is 2.
    Native locked funds end at +26, -2 and -30 units."""
    players = [p.address for p in vault.players]
    currency = token_ledger(vault.chain_id, vault.token.address)
    out = []
    for table, winners, unit in (
        ("mirror-native", (0, 0, 1), "NATIVE"),
        ("mirror-token", (2, 1), currency),
    ):
        for n, winner in enumerate(winners, start=1):
            deltas = {p: 18 if i == winner else -10 for i, p in enumerate(players)}
            out.append(
                HandCompleted(
                    table_id=table,
                    hand_id=f"{vault.ludex.address}/{table}/{n}",
                    history_phh="",
                    commitment=keccak(text=f"{table}/{n}").hex(),
                    seed_reveal="",
                    previous_record_hash="",
                    record_hash="",
                    deltas=deltas,
                    rake=2,
                    currency=unit,
                )
            )
    return out


async def settle(vault: Vault, store: OperationalStore) -> SettlementService:
    """Queue the hands, batch, send and follow them until the batch is confirmed."""
    settler = SettlementService(
        store,
        MemoryBus(),
        vault.chain,
        KeystoreSigner(vault.operator.account),
        contract=vault.ludex.address,
        confirmations=CONFIRMATIONS,
        ledger_unit=GWEI,
        batch_seconds=0.05,
        poll_interval=0.02,
        retry_initial=0.02,
        retry_max=0.1,
    )
    await settler.start()
    for payload in hands(vault):
        await settler.consumer.handle(new_event(payload, key=payload.table_id, producer="t"))
    await settler.form_batch(force=True)
    for _ in range(10):
        await settler.run_once()
        if {r.status for r in await hand_rows(store)} == {"settled"}:
            return settler
        await mine(vault.chain, 1)
    raise AssertionError("the batch was not confirmed")


async def hand_rows(store: OperationalStore) -> list[Any]:
    async with store.transaction() as session:
        return list((await session.execute(select(settlement_hands))).all())


async def catch_up(vault: Vault, store: OperationalStore) -> None:
    """Bury everything under the confirmation depth, then let the watcher apply it."""
    await mine(vault.chain, CONFIRMATIONS)
    await vault.watcher(store, confirmations=CONFIRMATIONS).run_once()


async def exact_amounts(vault: Vault, store: OperationalStore) -> dict[tuple[str, str], Holding]:
    b = chain_vault_balances.c
    async with store.transaction() as session:
        rows = await session.execute(
            select(b.player, b.token, b.available, b.locked).where(
                b.chain_id == vault.chain_id, b.contract == vault.ludex.address
            )
        )
        return {(r.player, r.token): Holding(int(r.available), int(r.locked)) for r in rows}


async def check_mirror(vault: Vault, store: OperationalStore) -> Report:
    """The contract and the mirror agree, exactly and in ledger units; the ledger balances."""
    report = await reconcile(
        store,
        vault.chain,
        contract=vault.ludex.address,
        ledger_unit=GWEI,
        confirmations=CONFIRMATIONS,
    )
    assert report.ok, [str(d) for d in report.differences]
    exact = await exact_amounts(vault, store)
    for token in (NATIVE, vault.token.address):
        house = treasury_accounts(vault.chain_id, vault.ludex.address, token)
        async with store.transaction() as session:
            balances = await ledger.ledger_balances(session, house.ledger)
        assert sum(b.balance for b in balances.values()) == 0
        assert balances[house.clearing].balance == 0
        (treasury,) = await vault.ludex.call("treasury", token)
        assert balances[house.treasury].balance == treasury // GWEI > 0
        for player in vault.players:
            accounts = vault.accounts(player, token)
            (available,) = await vault.ludex.call("available", player.address, token)
            (locked,) = await vault.ludex.call("locked", player.address, token)
            assert exact[(player.address, token)] == Holding(available, locked)
            assert balances[accounts.available].balance == available // GWEI
            assert balances[accounts.locked].balance == locked // GWEI >= 0
    return report


async def test_settled_hands_are_mirrored_and_reconcile_finds_nothing(
    chain: JsonRpcChain, any_store: OperationalStore
) -> None:
    store = any_store
    vault = await deploy_vault(chain)
    await fund_and_lock(vault)
    await catch_up(vault, store)  # the watcher mirrors the deposits and locks first
    await settle(vault, store)
    await catch_up(vault, store)

    report = await check_mirror(vault, store)
    assert (report.players, report.tokens, report.compared) == (3, 2, 3 * 2 * 2 + 2)
    rows = await hand_rows(store)
    assert len(rows) == 5
    assert all(r.mirrored_at is not None for r in rows)
    house = treasury_accounts(vault.chain_id, vault.ludex.address, NATIVE)
    async with store.transaction() as session:
        assert (await ledger.balance(session, house.treasury)).balance == 3 * 2  # 3 rakes
    # Each hand moved the exact amounts once (the dust stays).
    exact = await exact_amounts(vault, store)
    native = [exact[(p.address, NATIVE)].locked for p in vault.players]
    assert native == [NATIVE_LOCK + d * GWEI for d in (26, -2, -30)]

    # The operator releases all of the winner's table funds, winnings included: more
    # than the watcher ever saw locked.
    winner = vault.players[0]
    await vault.ludex.transact(vault.operator, "release", winner.address, NATIVE, native[0])
    await catch_up(vault, store)
    await check_mirror(vault, store)
    async with store.transaction() as session:
        locked = await ledger.balance(session, vault.accounts(winner).locked)
        available = await ledger.balance(session, vault.accounts(winner).available)
    assert locked.balance == 0
    assert available.balance == (ETHER + 7 - NATIVE_LOCK + native[0]) // GWEI


def _locked_units(balances: dict[str, ledger.Balance], vault: Vault, token: str) -> list[int]:
    return [balances[vault.accounts(p, token).locked].balance for p in vault.players]


def test_mirrored_before_the_watcher_then_reconciled_by_the_cli(
    node_url: str, tmp_path: Path
) -> None:
    """The settlement is mirrored before the watcher applied the locks that funded it
    (losers' ``locked:`` below zero for a while); once the watcher catches up,
    `ludex chain reconcile` finds nothing. The owner's moveTreasury is not mirrored: the
    command shows the treasury's difference."""
    store_url = f"sqlite:///{tmp_path}/ludex.db"
    holder: dict[str, Vault] = {}

    async def scenario() -> None:
        chain = JsonRpcChain(node_url)
        await chain.start()
        try:
            async with started_store(store_url) as store:
                vault = await deploy_vault(chain)
                await fund_and_lock(vault)
                await settle(vault, store)
                async with store.transaction() as session:
                    ledger_name = token_ledger(vault.chain_id, NATIVE)
                    early = await ledger.ledger_balances(session, ledger_name)
                assert _locked_units(early, vault, NATIVE) == [26, -2, -30]
                await catch_up(vault, store)
                await check_mirror(vault, store)
                holder["vault"] = vault
        finally:
            await chain.close()

    asyncio.run(scenario())
    vault = holder["vault"]
    runner = CliRunner()
    command = ["chain", "reconcile", "--contract", vault.ludex.address, "--rpc", node_url]
    env = {
        "LUDEX_STORE_URL": store_url,
        "LUDEX_CHAIN_CONFIRMATIONS": str(CONFIRMATIONS),
        "LUDEX_CHAIN_LEDGER_UNIT": str(GWEI),
    }
    clean = runner.invoke(app, command, env=env)
    assert clean.exit_code == 0, clean.output
    assert clean.output.strip().endswith("no differences")
    assert "3 players, 2 tokens, 14 balances compared" in clean.output

    async def move_treasury() -> None:
        chain = JsonRpcChain(node_url)
        await chain.start()
        try:
            ludex = contract_at(chain, vault.ludex.address, load_artifact("Ludex"))
            owner = Transactor(chain, vault.owner.account)
            await ludex.transact(owner, "moveTreasury", NATIVE, owner.address, 2 * GWEI)
            async with started_store(store_url) as store:
                await catch_up(replace(vault, chain=chain), store)
        finally:
            await chain.close()

    asyncio.run(move_treasury())
    found = runner.invoke(app, command, env=env)
    assert found.exit_code == 1, found.output
    lines = found.stdout.strip().splitlines()
    assert len(lines) == 2, found.output
    assert lines[0].startswith(f"DIFF  {vault.ludex.address} token {NATIVE} treasury:")
    assert "chain 4 units" in lines[0]
    assert lines[0].endswith("ledger 6 (ledger - chain = 2)")
    assert lines[1].endswith("1 difference(s)")
