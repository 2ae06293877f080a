"""The vault watcher on a real anvil node: deposits credited once after the
confirmation depth, tokens, withdrawals, locks and releases, a reorg before
confirmation, malformed node answers, the WebSocket wake-up and its polling fallback.

Block counts matter here (confirmation depth), so these tests run on an anvil of
their own (one per module; the reorg test starts another), never on the shared
node where other sessions mine. Each test deploys a fresh Ludex with fresh players.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from structlog.testing import capture_logs

from ludex import ledger
from ludex.adapters.chain.anvil import free_port
from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.adapters.sql.tables import (
    chain_checkpoints,
    chain_cursors,
    chain_vault_balances,
    chain_vault_events,
    ledger_transfers,
)
from ludex.chain.vault import transfer_id
from ludex.composition import SERVICES, run_services
from ludex.config import load_settings
from ludex.errors import ChainError, StoreError
from ludex.ledger import TransferState
from ludex.ports.store import OperationalStore
from ludex.services.deposit_watcher import IdleWatcher, VaultWatcher, watcher_service
from tests.chain.vault_env import (
    ETHER,
    GWEI,
    NATIVE,
    Vault,
    anvil_node,
    cursor_rows,
    deploy_vault,
    event_rows,
    funded,
    mine,
    outbox_events,
)
from tests.contract.sql_backends import fresh_database, started_store


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


@pytest.fixture
async def vault(chain: JsonRpcChain) -> Vault:
    return await deploy_vault(chain)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[OperationalStore]:
    async with fresh_database("sqlite", tmp_path) as url, started_store(url) as started:
        yield started


async def _balance(store: OperationalStore, account: str) -> ledger.Balance:
    async with store.transaction() as session:
        return await ledger.balance(session, account)


async def _transfers(store: OperationalStore, account: str) -> list[ledger.Transfer]:
    async with store.transaction() as session:
        return await ledger.transfers_of(session, account)


# -- deposits -----------------------------------------------------------------------------


async def test_a_deposit_is_credited_once_after_the_confirmation_depth(
    vault: Vault, store: OperationalStore
) -> None:
    alice = vault.players[0]
    accounts = vault.accounts(alice)
    watcher = vault.watcher(store, confirmations=3)
    receipt = await vault.ludex.transact(alice, "deposit", value=ETHER + ETHER // 2)

    summary = await watcher.run_once()
    assert (summary.seen, summary.applied) == (1, 0)
    [row] = await event_rows(store)
    assert (row.event, row.status, row.player, row.amount) == (
        "Deposited",
        "pending",
        alice.address,
        str(ETHER + ETHER // 2),
    )
    assert (row.tx_hash, row.block_number) == (receipt.tx_hash.lower(), receipt.block_number)
    in_flight = await _balance(store, accounts.available)
    assert (in_flight.balance, in_flight.pending_credits) == (0, 3 * GWEI // 2)
    assert await outbox_events(store) == []

    await mine(vault.chain, 2)  # two blocks on top: not yet
    assert (await watcher.run_once()).applied == 0
    assert [r.status for r in await event_rows(store)] == ["pending"]

    await mine(vault.chain, 1)  # three on top
    summary = await watcher.run_once()
    assert (summary.seen, summary.applied) == (0, 1)
    credited = await _balance(store, accounts.available)
    assert (credited.balance, credited.pending_credits) == (3 * GWEI // 2, 0)
    [event] = await outbox_events(store)
    assert event.type == "wallet.deposit_credited"
    assert event.key == alice.address
    assert (event.payload.player_id, event.payload.amount, event.payload.balance_after) == (
        alice.address,
        3 * GWEI // 2,
        3 * GWEI // 2,
    )
    assert (event.payload.tx_hash, event.payload.log_index) == (row.tx_hash, row.log_index)

    # Again, and from a second watcher with no memory: nothing more.
    assert (await watcher.run_once()).applied == 0
    await mine(vault.chain, 5)
    again = vault.watcher(store, confirmations=0)
    summary = await again.run_once()
    assert (summary.seen, summary.applied) == (0, 0)
    assert (await _balance(store, accounts.available)).balance == 3 * GWEI // 2
    assert len(await outbox_events(store)) == 1
    transfers = await _transfers(store, accounts.available)
    assert [t.state for t in transfers] == [TransferState.POSTED_FROM_PENDING, TransferState.POSTED]
    assert transfers[1].id == transfer_id(vault.chain_id, row.tx_hash, row.log_index, "credit")
    [applied] = await event_rows(store)
    assert (applied.status, applied.ledger_amount) == ("applied", 3 * GWEI // 2)


async def test_token_deposits_carry_their_dust_until_it_makes_a_unit(
    vault: Vault, store: OperationalStore
) -> None:
    bob = vault.players[1]
    token = vault.token.address
    accounts = vault.accounts(bob, token)
    await vault.token.transact(bob, "mint", bob.address, 10 * ETHER)
    await vault.token.transact(bob, "approve", vault.ludex.address, 10 * ETHER)
    await vault.ludex.transact(bob, "depositToken", token, 5 * ETHER + 123)
    watcher = vault.watcher(store, confirmations=0)
    assert (await watcher.run_once()).applied == 1
    assert (await _balance(store, accounts.available)).balance == 5 * GWEI
    assert accounts.ledger == ledger.token_ledger(vault.chain_id, token)

    await vault.ludex.transact(bob, "depositToken", token, GWEI - 123)  # the dust completes
    assert (await watcher.run_once()).applied == 1
    assert (await _balance(store, accounts.available)).balance == 5 * GWEI + 1
    events = await outbox_events(store)
    assert [e.payload.amount for e in events] == [5 * GWEI, 1]
    assert {e.payload.token for e in events} == {token.lower()}
    rows = await event_rows(store)
    assert [(r.token, r.amount, r.ledger_amount) for r in rows] == [
        (token, str(5 * ETHER + 123), 5 * GWEI),
        (token, str(GWEI - 123), 1),
    ]
    # The native coin's accounts are another ledger, untouched.
    async with store.transaction() as session:
        assert await ledger.get_accounts(session, [vault.accounts(bob).available]) == {}


async def _withdrawals_locks_and_releases(vault: Vault, store: OperationalStore) -> None:
    alice = vault.players[0]
    accounts = vault.accounts(alice)
    await vault.ludex.transact(alice, "deposit", value=3 * ETHER)
    await vault.ludex.transact(alice, "lock", NATIVE, ETHER)
    await vault.ludex.transact(vault.operator, "release", alice.address, NATIVE, ETHER // 2)
    await vault.ludex.transact(alice, "withdraw", NATIVE, 2 * ETHER)
    watcher = vault.watcher(store, confirmations=2)
    summary = await watcher.run_once()
    # The withdrawal's block has nothing on top yet, the release's one block.
    assert (summary.seen, summary.applied) == (4, 2)
    assert (await _balance(store, accounts.available)).balance == 2 * GWEI
    assert (await _balance(store, accounts.locked)).balance == GWEI
    await mine(vault.chain, 2)
    assert (await watcher.run_once()).applied == 2
    assert (await _balance(store, accounts.available)).balance == GWEI // 2
    assert (await _balance(store, accounts.locked)).balance == GWEI // 2
    async with store.transaction() as session:
        world = await ledger.balance(session, accounts.chain)
    assert world.balance == -(3 * GWEI - 2 * GWEI)  # what came in minus what went out
    assert [r.status for r in await event_rows(store)] == ["applied"] * 4
    events = await outbox_events(store)
    assert [(e.type, e.payload.amount, e.payload.balance_after) for e in events] == [
        ("wallet.deposit_credited", 3 * GWEI, 3 * GWEI),
        ("wallet.withdrawal_debited", 2 * GWEI, GWEI // 2),
    ]
    assert (await vault.ludex.call("available", alice.address, NATIVE))[0] == ETHER // 2


async def test_a_withdrawal_is_debited_and_locks_and_releases_move_between_accounts(
    vault: Vault, store: OperationalStore
) -> None:
    await _withdrawals_locks_and_releases(vault, store)


@pytest.mark.parametrize("backend", ["postgres", "mysql"])
async def test_the_watcher_runs_on_production_stores(
    backend: str, vault: Vault, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url, started_store(url) as store:
        await _withdrawals_locks_and_releases(vault, store)
        # A second instance, from nothing, adds nothing.
        again = vault.watcher(store, confirmations=0)
        assert (await again.run_once()).applied == 0
        assert len(await outbox_events(store)) == 2


async def test_lock_and_release_round_through_the_rounding_account(
    vault: Vault, store: OperationalStore
) -> None:
    carol = vault.players[2]
    accounts = vault.accounts(carol)
    unit = GWEI  # ledger unit in wei; amounts below in tenths of a unit
    await vault.ludex.transact(carol, "deposit", value=15 * unit // 10)  # 1.5 units
    await vault.ludex.transact(carol, "lock", NATIVE, 6 * unit // 10)  # avail 0.9, locked 0.6
    await vault.ludex.transact(carol, "deposit", value=6 * unit // 10)  # avail 1.5
    await vault.ludex.transact(carol, "lock", NATIVE, 5 * unit // 10)  # avail 1.0, locked 1.1
    watcher = vault.watcher(store, confirmations=0)
    assert (await watcher.run_once()).applied == 4
    assert (await _balance(store, accounts.available)).balance == 1
    assert (await _balance(store, accounts.locked)).balance == 1
    async with store.transaction() as session:
        rounding = await ledger.balance(session, accounts.rounding)
    # Two whole units on chain for 2.1 deposited: the rounding account lent nothing,
    # but it took 1 (the first lock) and gave 1 back (the second lock).
    assert rounding.balance == 0
    assert (rounding.posted_credits, rounding.posted_debits) == (1, 1)


async def test_an_amount_the_ledger_cannot_hold_is_rejected_and_the_watcher_goes_on(
    vault: Vault, store: OperationalStore
) -> None:
    bob, carol = vault.players[1:]
    junk = 2**200
    await vault.token.transact(bob, "mint", bob.address, junk)
    await vault.token.transact(bob, "approve", vault.ludex.address, junk)
    await vault.ludex.transact(bob, "depositToken", vault.token.address, junk)
    await vault.ludex.transact(carol, "deposit", value=ETHER)
    watcher = vault.watcher(store, confirmations=0)
    with capture_logs() as logs:
        summary = await watcher.run_once()
    assert (summary.seen, summary.applied, summary.rejected) == (2, 1, 1)
    rows = {r.player: r for r in await event_rows(store)}
    assert rows[bob.address].status == "rejected"
    assert "exceeds the maximum" in rows[bob.address].detail
    assert rows[carol.address].status == "applied"
    [rejected] = [e for e in logs if e["event"] == "vault.event.rejected"]
    assert rejected["tx_hash"] == rows[bob.address].tx_hash
    async with store.transaction() as session:
        held = (await session.execute(select(chain_vault_balances))).all()
        bob_token = vault.accounts(bob, vault.token.address).available
        assert await ledger.get_accounts(session, [bob_token]) == {}  # nothing was mirrored
    assert {(h.player, h.available) for h in held} == {
        (bob.address, str(junk)),
        (carol.address, str(ETHER)),
    }
    assert [e.payload.player_id for e in await outbox_events(store)] == [carol.address]
    assert (await watcher.run_once()).rejected == 0  # decided once


# -- reorgs -------------------------------------------------------------------------------


async def _signed_deposit(vault: Vault, player: Any, value: int) -> str:
    """A signed deposit transaction (raw hex), so the same one can be sent twice."""
    data = vault.ludex.abi.encode_call("deposit", [])
    request = {"from": player.address, "to": vault.ludex.address, "value": hex(value)}
    gas = int(
        await vault.chain.call("eth_estimateGas", [{**request, "data": "0x" + data.hex()}]), 16
    )
    nonce = int(await vault.chain.call("eth_getTransactionCount", [player.address, "latest"]), 16)
    max_fee, tip = await player.fees()
    signed = player.account.sign_transaction(
        {
            "type": 2,
            "chainId": vault.chain_id,
            "nonce": nonce,
            "gas": gas * 2,
            "maxFeePerGas": max_fee * 4,
            "maxPriorityFeePerGas": tip,
            "to": vault.ludex.address,
            "value": value,
            "data": data,
        }
    )
    return "0x" + bytes(signed.raw_transaction).hex()


async def _send_raw(chain: JsonRpcChain, raw: str) -> str:
    tx_hash = str(await chain.call("eth_sendRawTransaction", [raw]))
    for _ in range(200):
        if await chain.call("eth_getTransactionReceipt", [tx_hash]) is not None:
            return tx_hash
        await asyncio.sleep(0.02)
    raise AssertionError(f"{tx_hash} was not mined")


async def test_a_reorg_before_confirmation_reverts_the_pending_credit(tmp_path: Path) -> None:
    with anvil_node() as url:
        chain = JsonRpcChain(url)
        await chain.start()
        try:
            vault = await deploy_vault(chain)
            async with (
                fresh_database("sqlite", tmp_path) as store_url,
                started_store(store_url) as store,
            ):
                await _reorg_scenario(vault, store)
        finally:
            await chain.close()


async def _reorg_scenario(vault: Vault, store: OperationalStore) -> None:
    alice, bob, carol = vault.players
    accounts = vault.accounts(alice)
    watcher = vault.watcher(store, confirmations=3)
    await watcher.run_once()
    snapshot = await vault.chain.call("evm_snapshot", [])

    raw = await _signed_deposit(vault, alice, 2 * ETHER)
    tx_hash = await _send_raw(vault.chain, raw)
    assert (await watcher.run_once()).seen == 1
    [row] = await event_rows(store)
    assert (row.status, row.attempt) == ("pending", 1)
    assert (await _balance(store, accounts.available)).pending_credits == 2 * GWEI
    old_block = (row.block_number, row.block_hash)

    # Another branch: the deposit is gone, another transaction fills its height.
    assert await vault.chain.call("evm_revert", [snapshot]) is True
    await vault.ludex.transact(bob, "deposit", value=ETHER)
    await mine(vault.chain, 3)
    with capture_logs() as logs:
        summary = await watcher.run_once()
    assert summary.reorgs == 1
    assert summary.reverted == 1
    assert any(entry["event"] == "vault.watcher.reorg" for entry in logs)
    rows = {r.player: r for r in await event_rows(store)}
    assert (rows[alice.address].status, rows[alice.address].tx_hash) == ("reverted", tx_hash)
    assert rows[bob.address].status == "applied"  # bob's deposit is three blocks deep
    voided = await _balance(store, accounts.available)
    assert (voided.balance, voided.pending_credits) == (0, 0)
    assert [e.payload.player_id for e in await outbox_events(store)] == [bob.address]
    async with store.transaction() as session:
        [head] = (await session.execute(select(func.max(chain_checkpoints.c.block_number)))).one()
    assert head == await vault.chain.block_number()

    # The same signed deposit comes back on the new branch: credited once.
    await vault.ludex.transact(carol, "deposit", value=ETHER)  # move the block contents on
    assert await _send_raw(vault.chain, raw) == tx_hash
    assert (await watcher.run_once()).seen == 2
    back = {r.player: r for r in await event_rows(store)}[alice.address]
    assert (back.status, back.attempt) == ("pending", 2)
    assert (back.block_number, back.block_hash) != old_block
    await mine(vault.chain, 3)
    assert (await watcher.run_once()).applied == 2
    credited = await _balance(store, accounts.available)
    assert (credited.balance, credited.pending_credits) == (2 * GWEI, 0)
    states = [t.state for t in await _transfers(store, accounts.available)]
    assert states == [
        TransferState.VOIDED,  # the first sighting's reservation
        TransferState.VOIDED,  # ... and its void
        TransferState.POSTED_FROM_PENDING,  # the second sighting's reservation
        TransferState.POSTED,  # its posting: the one credit
    ]
    credits = [e for e in await outbox_events(store) if e.payload.player_id == alice.address]
    assert len(credits) == 1
    assert credits[0].payload.tx_hash == tx_hash


# -- node answers -------------------------------------------------------------------------


class Corrupting:
    """A chain client that spoils its first answer to one method, then behaves."""

    def __init__(self, inner: JsonRpcChain, method: str, spoil: Callable[[Any], Any]) -> None:
        self.inner = inner
        self.method = method
        self.spoil = spoil
        self.spoiled = 0

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        await self.inner.ping()

    async def chain_id(self) -> int:
        return await self.inner.chain_id()

    async def block_number(self) -> int:
        return await self.inner.block_number()

    async def call(self, method: str, params: list[Any]) -> Any:
        answer = await self.inner.call(method, params)
        if method == self.method and not self.spoiled and answer:
            self.spoiled += 1
            return self.spoil(copy.deepcopy(answer))
        return answer


def _last_log(change: Callable[[dict[str, Any]], None]) -> Callable[[Any], Any]:
    def spoil(answer: list[dict[str, Any]]) -> Any:
        change(answer[-1])
        return answer

    return spoil


SPOILERS: dict[str, Callable[[Any], Any]] = {
    "block hash of another branch": _last_log(lambda e: e.update(blockHash="0x" + "ab" * 32)),
    "block number outside the range": _last_log(lambda e: e.update(blockNumber="0x0")),
    "removed log": _last_log(lambda e: e.update(removed=True)),
    "log index missing": _last_log(lambda e: e.pop("logIndex")),
    "topic not hex": _last_log(lambda e: e["topics"].__setitem__(1, "0x" + "zz" * 32)),
    "short hash": _last_log(lambda e: e.update(transactionHash="0x1234")),
    "log from another contract": _last_log(lambda e: e.update(address="0x" + "11" * 20)),
    "amount not an abi word": _last_log(lambda e: e.update(data="0x01")),
    "not a list": lambda answer: {"logs": answer},
}


@pytest.mark.parametrize("case", sorted(SPOILERS))
async def test_a_malformed_or_inconsistent_answer_is_refused_and_nothing_is_stored(
    case: str, vault: Vault, store: OperationalStore
) -> None:
    alice = vault.players[0]
    await vault.ludex.transact(alice, "deposit", value=ETHER)
    spoiled = Corrupting(vault.chain, "eth_getLogs", SPOILERS[case])
    watcher = vault.watcher(store, confirmations=0, chain=spoiled)
    with pytest.raises(ChainError):
        await watcher.run_once()
    assert spoiled.spoiled == 1
    assert await event_rows(store) == []
    assert await cursor_rows(store) == []
    # The next answer is good, and it is processed.
    summary = await watcher.run_once()
    assert (summary.seen, summary.applied) == (1, 1)
    assert (await _balance(store, vault.accounts(alice).available)).balance == GWEI


# -- the WebSocket ------------------------------------------------------------------------


async def _until(condition: Any, timeout: float) -> float:
    started = asyncio.get_running_loop().time()
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)
    return asyncio.get_running_loop().time() - started


async def test_a_refused_websocket_falls_back_to_polling(
    vault: Vault, store: OperationalStore
) -> None:
    alice = vault.players[0]
    refused = f"ws://127.0.0.1:{free_port()}"
    watcher = vault.watcher(store, confirmations=0, poll_interval=0.1, ws_url=refused)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(watcher.run(stop))
        try:
            await vault.ludex.transact(alice, "deposit", value=ETHER)

            async def credited() -> bool:
                return [r.status for r in await event_rows(store)] == ["applied"]

            await _until(credited, 10)
        finally:
            stop.set()
            await task
    assert not watcher.ws_connected
    failures = [e for e in logs if e["event"] == "vault.watcher.websocket_failed"]
    assert failures
    assert failures[0]["fallback"] == "polling every 0.1 s"


async def test_anvil_websocket_wakes_the_watcher_at_once(
    vault: Vault, store: OperationalStore, node_url: str
) -> None:
    alice = vault.players[0]
    ws_url = node_url.replace("http://", "ws://")
    watcher = vault.watcher(store, confirmations=0, poll_interval=60, ws_url=ws_url)
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:

        async def subscribed() -> bool:
            return watcher.ws_connected

        await _until(subscribed, 10)
        await asyncio.sleep(0.2)  # let the round the subscription triggered finish
        await vault.ludex.transact(alice, "deposit", value=ETHER)

        async def credited() -> bool:
            return [r.status for r in await event_rows(store)] == ["applied"]

        took = await _until(credited, 5)  # polling alone would take 60 s
    finally:
        stop.set()
        await task
    assert took < 5
    assert (await _balance(store, vault.accounts(alice).available)).balance == GWEI


# -- the service --------------------------------------------------------------------------


async def test_the_service_is_idle_without_a_contract_and_a_watcher_with_one(
    store: OperationalStore, chain: JsonRpcChain
) -> None:
    idle = watcher_service(store, chain, load_settings(chain_contract=None))
    assert isinstance(idle, IdleWatcher)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(idle.run(stop))
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 2)
    assert [e["event"] for e in logs] == ["vault.watcher.idle"]
    assert "LUDEX_CHAIN_CONTRACT" in logs[0]["reason"]
    address = (await funded(chain)).address
    watcher = watcher_service(
        store, chain, load_settings(chain_contract=address, chain_confirmations=7)
    )
    assert isinstance(watcher, VaultWatcher)
    assert watcher.contract == address
    assert "deposit-watcher" in SERVICES


async def test_run_services_starts_the_watcher_from_settings(
    vault: Vault, node_url: str, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path}/ludex.db"
    settings = load_settings(
        store_url=store_url,
        analytics_url=f"chdb://{tmp_path}/olap",
        bus_url="memory://",
        cache_url="memory://",
        chain_url=node_url,
        chain_contract=vault.ludex.address,
        chain_confirmations=0,
        chain_poll_interval=0.05,
    )
    alice = vault.players[0]
    await vault.ludex.transact(alice, "deposit", value=ETHER)
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_services(settings, ["deposit-watcher"], stop=stop, with_http=False)
    )
    try:
        async with started_store(store_url, migrate=False) as store:

            async def credited() -> bool:
                if task.done():
                    task.result()
                try:
                    return [r.status for r in await event_rows(store)] == ["applied"]
                except StoreError:  # not migrated yet
                    return False

            await _until(credited, 20)
            assert (await _balance(store, vault.accounts(alice).available)).balance == GWEI
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_contract_that_is_not_there_is_a_clear_error(
    store: OperationalStore, chain: JsonRpcChain
) -> None:
    nobody = (await funded(chain)).address
    watcher = VaultWatcher(
        store, chain, contract=nobody, confirmations=0, ledger_unit=GWEI, poll_interval=1
    )
    with pytest.raises(ChainError, match="no contract at"):
        await watcher.run_once()


async def test_without_a_start_block_reading_starts_at_the_deployment(
    vault: Vault, store: OperationalStore
) -> None:
    await mine(vault.chain, 3)
    await vault.ludex.transact(vault.players[0], "deposit", value=ETHER)
    watcher = vault.watcher(store, confirmations=0, start_block=None)
    with capture_logs() as logs:
        summary = await watcher.run_once()
    assert summary.applied == 1
    [start] = [e for e in logs if e["event"] == "vault.watcher.start_block"]
    assert start["block"] == vault.deploy_block


async def test_a_deep_reorg_of_an_applied_event_stops_with_a_clear_error(
    vault: Vault, store: OperationalStore
) -> None:
    await vault.ludex.transact(vault.players[0], "deposit", value=ETHER)
    watcher = vault.watcher(store, confirmations=0)
    assert (await watcher.run_once()).applied == 1
    [row] = await event_rows(store)
    # Pretend the node now holds another block at that height: rewrite our record of it.
    async with store.transaction() as session:
        await session.execute(update(chain_vault_events).values(block_hash="0x" + "cd" * 32))
        await session.execute(update(chain_cursors).values(block_hash="0x" + "cd" * 32))
        await session.execute(update(chain_checkpoints).values(block_hash="0x" + "cd" * 32))
    with capture_logs() as logs, pytest.raises(ChainError, match="reorg deeper than 0"):
        await watcher.run_once()
    assert any(e["event"] == "vault.watcher.deep_reorg" for e in logs)
    assert [r.status for r in await event_rows(store)] == ["applied"]
    async with store.transaction() as session:
        count = (await session.execute(select(func.count()).select_from(ledger_transfers))).scalar()
    assert count == 2  # the reservation and its posting; nothing undone, nothing added
    assert row.status == "applied"
