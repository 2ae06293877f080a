"""Shared set-up for the vault watcher and reconcile tests: anvil nodes of their own,
a fresh Ludex deployment with funded players, the store's view of the mirror.

Not a test module. Tests that count blocks (confirmation depth) or rewrite history
(snapshot and revert) run on an anvil they start themselves, so that other test
sessions mining on the shared node cannot move their head.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from eth_account import Account
from sqlalchemy import select

from ludex.adapters.chain.anvil import free_port, set_balance
from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.adapters.sql.outbox import fetch_unpublished
from ludex.adapters.sql.tables import chain_cursors, chain_vault_events
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import Contract, Transactor, deploy
from ludex.chain.vault import VaultAccounts, vault_accounts
from ludex.events import Envelope, decode
from ludex.ports.store import OperationalStore
from ludex.services.deposit_watcher import VaultWatcher
from tests.conftest import ROOT

ANVIL = ROOT / "node_modules" / ".bin" / "anvil"
ETHER = 10**18
GWEI = 10**9


@contextlib.contextmanager
def anvil_node(*extra: str) -> Iterator[str]:
    """Start an anvil of our own on a free port; yield its URL; stop it."""
    if not ANVIL.exists():
        pytest.fail("anvil is not installed: run `make install` (npm ci)")
    port = free_port()
    process = subprocess.Popen(
        [str(ANVIL), "--host", "127.0.0.1", "--port", str(port), "--silent", *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, "anvil exited while starting"
            try:
                body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
                if httpx.post(url, json=body, timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "anvil did not answer within 20 s"
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def funded(chain: JsonRpcChain) -> Transactor:
    account = Account.create()
    await set_balance(chain, account.address, 1000 * ETHER)
    return Transactor(chain, account)


@dataclass
class Vault:
    chain: JsonRpcChain
    chain_id: int
    ludex: Contract
    token: Contract
    owner: Transactor
    operator: Transactor
    players: list[Transactor]
    deploy_block: int

    def accounts(self, player: Transactor, token: str | None = None) -> VaultAccounts:
        return vault_accounts(self.chain_id, self.ludex.address, token or NATIVE, player.address)

    def watcher(self, store: OperationalStore, **options: Any) -> VaultWatcher:
        settings: dict[str, Any] = {
            "contract": self.ludex.address,
            "confirmations": 3,
            "ledger_unit": GWEI,
            "poll_interval": 0.05,
            "start_block": self.deploy_block,
        }
        settings.update(options)
        chain = settings.pop("chain", self.chain)
        return VaultWatcher(store, chain, **settings)


NATIVE = "0x0000000000000000000000000000000000000000"


async def deploy_vault(chain: JsonRpcChain, *, players: int = 3) -> Vault:
    owner, operator = await funded(chain), await funded(chain)
    accounts = [await funded(chain) for _ in range(players)]
    ludex, receipt = await deploy(owner, load_artifact("Ludex"), owner.address)
    await ludex.transact(owner, "setOperator", operator.address, True)
    token, _ = await deploy(owner, load_artifact("TestToken"), "Test", "TST")
    return Vault(
        chain,
        await chain.chain_id(),
        ludex,
        token,
        owner,
        operator,
        accounts,
        receipt.block_number,
    )


async def mine(chain: JsonRpcChain, blocks: int) -> None:
    await chain.call("anvil_mine", [hex(blocks)])


async def head(chain: JsonRpcChain) -> int:
    return await chain.block_number()


async def event_rows(store: OperationalStore) -> list[Any]:
    async with store.transaction() as session:
        return list(
            (
                await session.execute(
                    select(chain_vault_events).order_by(
                        chain_vault_events.c.block_number, chain_vault_events.c.log_index
                    )
                )
            ).all()
        )


async def cursor_rows(store: OperationalStore) -> list[Any]:
    async with store.transaction() as session:
        return list((await session.execute(select(chain_cursors))).all())


async def outbox_events(store: OperationalStore) -> list[Envelope]:
    async with store.transaction() as session:
        return [decode(row.payload) for row in await fetch_unpublished(session, 1000)]
