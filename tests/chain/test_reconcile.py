"""Reconciliation of the vault mirror: the pure comparison, then on anvil through the
service's own store and through `ludex chain reconcile`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ludex import ledger
from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.chain.reconcile import Difference, compare, compare_treasury, reconcile
from ludex.chain.vault import Holding
from ludex.cli import app
from ludex.ledger import AccountKind, AccountSpec, TransferSpec
from ludex.ports.store import OperationalStore
from tests.chain.vault_env import ETHER, GWEI, NATIVE, Vault, deploy_vault
from tests.conftest import service_url
from tests.contract.sql_backends import fresh_database, started_store

ALICE = "0x" + "aa" * 20
TOKEN = "0x" + "70" * 20


# -- the comparison (pure) ----------------------------------------------------------------


def test_equal_floors_are_no_difference() -> None:
    chain = {(ALICE, NATIVE): Holding(19 * GWEI // 10, 3 * GWEI)}  # 1.9 and 3 units
    ledger_side = {(ALICE, NATIVE, "available"): 1, (ALICE, NATIVE, "locked"): 3}
    assert compare(chain, ledger_side, GWEI) == []


def test_every_disagreement_is_listed_once_in_order() -> None:
    chain = {
        (ALICE, NATIVE): Holding(2 * GWEI, 0),
        (ALICE, TOKEN): Holding(5 * GWEI, -3 * GWEI // 2),  # settled hands: locked < 0
    }
    ledger_side = {
        (ALICE, NATIVE, "available"): 1,
        (ALICE, TOKEN, "available"): 5,
        (ALICE, TOKEN, "locked"): -2,
        ("0x" + "bb" * 20, NATIVE, "available"): 4,  # no such holding on chain
    }
    differences = compare(chain, ledger_side, GWEI)
    assert differences == [
        Difference(ALICE, NATIVE, "available", 2 * GWEI, 2, 1),
        Difference("0x" + "bb" * 20, NATIVE, "available", 0, 0, 4),
    ]
    assert str(differences[0]).endswith("ledger 1 (ledger - chain = -1)")


def test_a_missing_ledger_account_is_named() -> None:
    [difference] = compare({(ALICE, NATIVE): Holding(GWEI, 0)}, {}, GWEI)
    assert difference.ledger_units is None
    assert "ledger no account" in str(difference)
    assert compare({(ALICE, NATIVE): Holding(GWEI - 1, 0)}, {}, GWEI) == []  # dust only


def test_the_unit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ledger unit"):
        compare({}, {}, 0)
    with pytest.raises(ValueError, match="ledger unit"):
        compare_treasury(ALICE, {}, {}, 0)


def test_treasuries_are_compared_by_their_floor() -> None:
    contract = "0x" + "cc" * 20
    chain = {NATIVE: 4 * GWEI + 1, TOKEN: 3 * GWEI}
    assert compare_treasury(contract, chain, {NATIVE: 4, TOKEN: 3}, GWEI) == []
    assert compare_treasury(contract, {NATIVE: GWEI - 1}, {}, GWEI) == []  # dust only
    differences = compare_treasury(contract, chain, {NATIVE: 6}, GWEI)
    assert differences == [
        Difference(contract, NATIVE, "treasury", 4 * GWEI + 1, 4, 6),
        Difference(contract, TOKEN, "treasury", 3 * GWEI, 3, None),
    ]
    assert str(differences[0]) == (
        f"{contract} token {NATIVE} treasury: chain 4 units ({4 * GWEI + 1} base units), "
        "ledger 6 (ledger - chain = 2)"
    )


# -- on anvil -----------------------------------------------------------------------------


@pytest.fixture
async def chain() -> AsyncIterator[JsonRpcChain]:
    client = JsonRpcChain(service_url("anvil"))
    await client.start()
    yield client
    await client.close()


async def _seed_a_theft(store: OperationalStore, vault: Vault, units: int) -> None:
    """A ledger transfer made behind the watcher's back."""
    accounts = vault.accounts(vault.players[0])
    async with store.transaction() as session:
        await ledger.create_accounts(
            session, [AccountSpec("thief", accounts.ledger, AccountKind.PLAYER)]
        )
        await ledger.transfer(
            session,
            [
                TransferSpec(
                    id="behind-the-back",
                    debit=accounts.available,
                    credit="thief",
                    amount=units,
                    ledger=accounts.ledger,
                    code="test",
                )
            ],
        )


async def _deposits(vault: Vault, store: OperationalStore) -> None:
    alice, bob = vault.players[:2]
    await vault.ludex.transact(alice, "deposit", value=2 * ETHER + 7)
    await vault.token.transact(bob, "mint", bob.address, ETHER)
    await vault.token.transact(bob, "approve", vault.ludex.address, ETHER)
    await vault.ludex.transact(bob, "depositToken", vault.token.address, ETHER)
    await vault.ludex.transact(bob, "lock", vault.token.address, ETHER // 4)
    assert (await vault.watcher(store, confirmations=0).run_once()).applied == 3


async def test_reconcile_finds_nothing_then_the_seeded_difference(
    chain: JsonRpcChain, tmp_path: Path
) -> None:
    vault = await deploy_vault(chain)
    alice, _, carol = vault.players
    async with fresh_database("sqlite", tmp_path) as url, started_store(url) as store:
        await _deposits(vault, store)
        options: dict[str, Any] = {
            "contract": vault.ludex.address,
            "ledger_unit": GWEI,
            "confirmations": 0,
        }
        report = await reconcile(store, chain, **options)
        assert report.ok, report.differences
        assert (report.players, report.tokens, report.compared) == (2, 2, 6)  # 2 treasuries

        await _seed_a_theft(store, vault, 5)
        await vault.ludex.transact(carol, "deposit", value=ETHER)  # the watcher has not run
        report = await reconcile(store, chain, players=[carol.address], block=None, **options)
        assert report.differences == [
            Difference(alice.address, NATIVE, "available", 2 * ETHER + 7, 2 * GWEI, 2 * GWEI - 5)
        ]
        # At the head, carol's deposit shows too: on chain, not in the ledger.
        latest = await chain.block_number()
        report = await reconcile(store, chain, players=[carol.address], block=latest, **options)
        assert {(d.player, d.ledger_units) for d in report.differences} == {
            (alice.address, 2 * GWEI - 5),
            (carol.address, None),
        }


def test_the_cli_exits_1_on_a_difference_and_0_without(tmp_path: Path) -> None:
    rpc = service_url("anvil")
    store_url = f"sqlite:///{tmp_path}/ludex.db"
    holder: dict[str, Vault] = {}

    async def setup() -> None:
        chain = JsonRpcChain(rpc)
        async with started_store(store_url) as store:
            vault = await deploy_vault(chain)
            await _deposits(vault, store)
            holder["vault"] = vault
        await chain.close()

    async def seed() -> None:
        async with started_store(store_url) as store:
            await _seed_a_theft(store, holder["vault"], 3)

    asyncio.run(setup())
    vault = holder["vault"]
    runner = CliRunner()
    command = ["chain", "reconcile", "--contract", vault.ludex.address, "--rpc", rpc]
    env = {"LUDEX_STORE_URL": store_url, "LUDEX_CHAIN_CONFIRMATIONS": "0"}
    clean = runner.invoke(app, command, env=env)
    assert clean.exit_code == 0, clean.output
    assert clean.output.strip().endswith("no differences")
    assert "2 players, 2 tokens, 6 balances compared" in clean.output  # 2 treasuries

    asyncio.run(seed())
    found = runner.invoke(app, command, env=env)
    assert found.exit_code == 1, found.output
    lines = found.stdout.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"DIFF  {vault.players[0].address} token {NATIVE} available:")
    assert "(ledger - chain = -3)" in lines[0]
    assert lines[1].endswith("1 difference(s)")

    players = f"{vault.players[2].address},{vault.players[1].address}"
    extra = runner.invoke(app, [*command, "--players", players], env=env)
    assert extra.exit_code == 1
    assert "3 players, 2 tokens, 12 balances compared" in extra.output

    no_contract = runner.invoke(
        app, ["chain", "reconcile"], env={**env, "LUDEX_CHAIN_CONTRACT": None}
    )
    assert no_contract.exit_code == 2
    assert "--contract" in no_contract.stderr
