"""The settlement service on real anvil nodes: hands from the bus to the contract.

A batch settled and confirmed (events in order, the contract's table head equal to our
last record, locked balances moved), a restart mid-batch that loses and duplicates
nothing, a reorg (anvil snapshot and revert) after confirmation (confirmed twice,
mirrored into the vault mirror once), malformed and forged hands refused, and the
``ludex chain`` commands (the mirror end to end is in test_settlement_mirror.py). Each
test deploys a fresh Ludex with fresh players; tests that revert the chain run on an
anvil of their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_utils.crypto import keccak
from sqlalchemy import select
from structlog.testing import capture_logs
from typer.testing import CliRunner

from ludex import ledger
from ludex.adapters.bus.memory import MemoryBus
from ludex.adapters.chain.anvil import free_port, set_balance
from ludex.adapters.chain.jsonrpc import JsonRpcChain, parse_quantity
from ludex.adapters.sql import SqlStore, create_store
from ludex.adapters.sql.tables import (
    chain_vault_balances,
    outbox,
    settlement_batches,
    settlement_hands,
)
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import Contract, Transactor, contract_at, deploy
from ludex.chain.keystore import KeystoreSigner
from ludex.chain.reconcile import reconcile
from ludex.chain.settlement import NATIVE, hand_record
from ludex.chain.vault import treasury_accounts, vault_accounts
from ludex.cli import app
from ludex.composition import SERVICES, build
from ludex.config import load_settings
from ludex.errors import ConfigError
from ludex.events import Envelope, HandCompleted, decode, new_event
from ludex.ledger import token_ledger
from ludex.services.deposit_watcher import VaultWatcher
from ludex.services.settlement import (
    HandRefused,
    SettlementService,
    hand_fields,
    hand_from_row,
    token_for,
)
from tests.chain.test_txmanager import dedicated_anvil, mine
from tests.chain.vault_env import funded
from tests.conftest import ROOT, service_url
from tests.contract.sql_backends import BACKENDS, fresh_database, started_store

ETHER = 10**18
UNIT = 10**9  # wei per ledger unit (the default LUDEX_CHAIN_LEDGER_UNIT)
LOCKED = ETHER  # each player's table funds at the start
BATCH_SETTLED = keccak(text="BatchSettled(uint64,address,uint256)")


@dataclass
class Env:
    chain: Any
    chain_id: int
    ludex: Contract
    owner: Transactor
    operator: KeystoreSigner
    operator_key: bytes
    players: list[Transactor]

    def addresses(self, count: int = 3) -> list[str]:
        return [p.address for p in self.players[:count]]

    async def locked(self, address: str, token: str = NATIVE) -> int:
        return int((await self.ludex.call("locked", address, token))[0])

    async def head(self, table_id: int) -> tuple[bytes, int]:
        record, last = await self.ludex.call("tables", table_id)
        return bytes(record), int(last)

    async def batches_settled(self) -> list[int]:
        logs = await self.chain.call(
            "eth_getLogs",
            [
                {
                    "address": self.ludex.address,
                    "fromBlock": "0x0",
                    "toBlock": "latest",
                    "topics": ["0x" + BATCH_SETTLED.hex()],
                }
            ],
        )
        return [int(entry["topics"][1], 16) for entry in logs]


async def make_env(chain: Any, *, players: int = 4, lock: int = LOCKED) -> Env:
    owner = await funded(chain)
    operator_account = Account.create()
    await set_balance(chain, operator_account.address, 1000 * ETHER)
    ludex, _ = await deploy(owner, load_artifact("Ludex"), owner.address)
    await ludex.transact(owner, "setOperator", operator_account.address, True)
    seated = [await funded(chain) for _ in range(players)]
    for player in seated[:3]:
        await ludex.transact(player, "deposit", value=lock)
        await ludex.transact(player, "lock", NATIVE, lock)
    return Env(
        chain,
        await chain.chain_id(),
        ludex,
        owner,
        KeystoreSigner(operator_account),
        bytes(operator_account.key),
        seated,
    )


def completed(
    env: Env,
    table: str,
    n: int,
    *,
    players: Sequence[str] | None = None,
    deltas: Sequence[int] | None = None,
    rake: int = 2,
    currency: str = "NATIVE",
    hand_id: str | None = None,
    commitment: str | None = None,
) -> HandCompleted:
    """Hand ``n`` of ``table``: the winner rotates, the others lose 10 each, rake 2."""
    seats = list(players or env.addresses())
    if deltas is None:
        winner = n % len(seats)
        deltas = [10 * (len(seats) - 1) - rake if s == winner else -10 for s in range(len(seats))]
    return HandCompleted(
        table_id=table,
        hand_id=hand_id or f"{table}/hand-{n}",
        history_phh="",
        commitment=commitment or keccak(text=f"{table}/{n}").hex(),
        seed_reveal="00" * 32,
        previous_record_hash="0" * 64,
        record_hash="0" * 64,
        deltas=dict(zip(seats, deltas, strict=True)),
        rake=rake,
        currency=currency,
    )


def event(payload: HandCompleted) -> Envelope:
    return new_event(payload, key=payload.table_id, producer="poker")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    sql = create_store(f"sqlite:///{tmp_path}/ludex.db")
    await sql.start()
    await sql.migrate()
    yield sql
    await sql.close()


@pytest.fixture(params=BACKENDS)
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """The store on SQLite, PostgreSQL and MariaDB (a fresh database each)."""
    async with fresh_database(request.param, tmp_path) as url, started_store(url) as sql:
        yield sql


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    memory = MemoryBus()
    await memory.start()
    yield memory
    await memory.close()


@pytest.fixture
async def shared() -> AsyncIterator[JsonRpcChain]:
    client = JsonRpcChain(service_url("anvil"))
    await client.start()
    yield client
    await client.close()


def service(store: SqlStore, bus: Any, env: Env, **options: Any) -> SettlementService:
    values: dict[str, Any] = {
        "contract": env.ludex.address,
        "confirmations": 2,
        "batch_size": 100,
        "batch_seconds": 0.05,
        "poll_interval": 0.02,
        "retry_initial": 0.02,
        "retry_max": 0.1,
    }
    values.update(options)
    return SettlementService(store, bus, env.chain, env.operator, **values)


async def settlement_events(store: SqlStore) -> list[Envelope]:
    async with store.transaction() as session:
        rows = (
            await session.execute(
                select(outbox.c.payload)
                .where(outbox.c.topic == "ludex.settlement")
                .order_by(outbox.c.id)
            )
        ).scalars()
        return [decode(bytes(p)) for p in rows]


async def hand_rows(store: SqlStore) -> list[dict[str, Any]]:
    async with store.transaction() as session:
        rows = await session.execute(select(settlement_hands).order_by(settlement_hands.c.seq))
        return [dict(r) for r in rows.mappings()]


async def until(predicate: Any, *, chain: Any = None, timeout: float = 20.0) -> None:
    """Wait for ``predicate()``, mining a block every round when ``chain`` is given."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "timed out"
        if chain is not None:
            await mine(chain)
        await asyncio.sleep(0.03)


async def drive(settler: SettlementService, chain: Any, predicate: Any, rounds: int = 20) -> None:
    """Run the service's rounds by hand, mining a block after each, until ``predicate()``."""
    for _ in range(rounds):
        await settler.run_once()
        if await predicate():
            return
        await mine(chain)
    raise AssertionError("the service did not get there")


# -- the pure checks ----------------------------------------------------------------------


def test_currency_rule() -> None:
    token = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert token_for("NATIVE", 31337) == NATIVE
    assert token_for(token_ledger(31337, token), 31337) == token
    assert token_for(token_ledger(31337, NATIVE), 31337) == NATIVE
    with pytest.raises(HandRefused, match="is on chain 1, this is chain 31337"):
        token_for(token_ledger(1, token), 31337)
    with pytest.raises(HandRefused, match="'CHIPS' is not on chain"):
        token_for("CHIPS", 31337)


def test_amounts_are_ledger_units_times_the_unit() -> None:
    players = [Account.create().address for _ in range(2)]
    payload = HandCompleted(
        table_id="t",
        hand_id="h",
        history_phh="",
        commitment="0x" + "ab" * 32,
        seed_reveal="",
        previous_record_hash="",
        record_hash="",
        deltas={players[0].lower(): 8, players[1]: -10},
        rake=2,
        currency="NATIVE",
    )
    fields = hand_fields(payload, chain_id=1, ledger_unit=UNIT)
    assert fields.players == tuple(players)  # checksummed, in the payload's order
    assert fields.deltas == (8 * UNIT, -10 * UNIT)
    assert fields.rake == 2 * UNIT
    assert fields.commitment == b"\xab" * 32


# -- a batch, end to end ------------------------------------------------------------------


async def test_a_batch_from_the_bus_is_signed_submitted_and_confirmed(
    store: SqlStore, bus: MemoryBus, shared: JsonRpcChain
) -> None:
    env = await make_env(shared)
    a, b, c = env.addresses()
    before = {p: await env.locked(p) for p in (a, b, c)}
    hands = [completed(env, "table-A", n) for n in (1, 2, 3)] + [
        completed(env, "table-B", n) for n in (1, 2)
    ]
    for payload in hands:
        await bus.publish(event(payload))
    settler = service(store, bus, env)
    stop = asyncio.Event()
    with capture_logs() as logs:
        task = asyncio.create_task(settler.run(stop))
        await until(lambda: _has(store, "settlement.confirmed"), chain=shared)
        stop.set()
        await asyncio.wait_for(task, 10)

    events = await settlement_events(store)
    assert [e.type for e in events] == ["settlement.submitted", "settlement.confirmed"]
    submitted, confirmed = (e.payload for e in events)
    assert submitted.batch_id == confirmed.batch_id == "1"
    assert submitted.hand_ids == confirmed.hand_ids == [h.hand_id for h in hands]
    assert submitted.tx_hash == confirmed.tx_hash
    assert submitted.nonce == 0
    receipt = await shared.call("eth_getTransactionReceipt", [confirmed.tx_hash])
    assert parse_quantity(receipt["status"], "status") == 1
    assert parse_quantity(receipt["blockNumber"], "b") == confirmed.block_number

    rows = await hand_rows(store)
    assert {r["status"] for r in rows} == {"settled"}
    last = {r["chain_table_id"]: r for r in rows}  # the last hand of each table
    for table_id, row in last.items():
        record, number = await env.head(table_id)
        assert number == row["hand_number"] == (3 if row["table_key"] == "table-A" else 2)
        assert "0x" + record.hex() == row["record"] == "0x" + hand_record(hand_from_row(row)).hex()
    assert await env.batches_settled() == [1]
    # Locked funds moved by the deltas (ledger units times the unit), the rake went aside.
    moved = Counter[str]()
    for payload in hands:
        for player, delta in payload.deltas.items():
            moved[player] += delta * UNIT
    for player in (a, b, c):
        assert await env.locked(player) == before[player] + moved[player]
    assert (await env.ludex.call("treasury", NATIVE))[0] == 5 * 2 * UNIT
    # The operator key appears in no log line.
    assert logs
    assert all(env.operator_key.hex() not in repr(line) for line in logs)


async def _has(store: SqlStore, event_type: str, count: int = 1) -> bool:
    return sum(1 for e in await settlement_events(store) if e.type == event_type) >= count


async def test_batches_are_cut_by_count(store: SqlStore, shared: JsonRpcChain) -> None:
    env = await make_env(shared)
    settler = service(store, MemoryBus(), env, batch_size=2, batch_seconds=3600)
    await settler.start()
    for n in (1, 2, 3):
        await settler.consumer.handle(event(completed(env, "t", n)))
    await settler.run_once()  # two hands are a full batch; the third waits
    async with store.transaction() as session:
        counts = Counter(r.status for r in await session.execute(select(settlement_hands)))
    assert counts == {"batched": 2, "queued": 1}
    await drive(settler, shared, lambda: _has(store, "settlement.confirmed"))
    # Nothing else is due: one hand, waiting for time or company.
    await settler.run_once()
    assert (await env.head(1))[1] == 2
    assert [r["status"] for r in await hand_rows(store)] == ["settled", "settled", "queued"]


# -- restart mid-batch --------------------------------------------------------------------


class Crash(Exception):
    pass


@pytest.mark.parametrize("point", ["after_record", "after_broadcast"])
async def test_a_restart_mid_batch_loses_and_duplicates_nothing(
    point: str, any_store: SqlStore, bus: MemoryBus, shared: JsonRpcChain
) -> None:
    store = any_store
    env = await make_env(shared)
    hands = [completed(env, "table-R", n) for n in range(1, 6)]
    for payload in hands:
        await bus.publish(event(payload))

    async def crash(record: Any) -> None:
        raise Crash(point)

    first = service(store, bus, env, batch_size=3, **{point: crash})
    with pytest.raises(ExceptionGroup) as died:
        await asyncio.wait_for(first.run(asyncio.Event()), 20)
    assert died.group_contains(Crash)
    async with store.transaction() as session:
        [batch] = (await session.execute(select(settlement_batches))).mappings().all()
    assert batch["status"] == "sending"  # the transaction is recorded, the event is not out
    assert [e.type for e in await settlement_events(store)] == []

    second = service(store, bus, env, batch_size=3)
    stop = asyncio.Event()
    task = asyncio.create_task(second.run(stop))
    await until(lambda: _has(store, "settlement.confirmed", 2), chain=shared)
    stop.set()
    await asyncio.wait_for(task, 10)

    events = await settlement_events(store)
    # Per batch: submitted once, then confirmed once (batch 2 may go out once 1 is mined).
    for batch_id in ("1", "2"):
        mine_ = [e.type for e in events if e.payload.batch_id == batch_id]
        assert mine_ == ["settlement.submitted", "settlement.confirmed"]
    assert len(events) == 4
    settled = [h for e in events if e.type == "settlement.confirmed" for h in e.payload.hand_ids]
    assert settled == [h.hand_id for h in hands]  # each hand once, in order
    assert [e.payload.nonce for e in events if e.type == "settlement.submitted"] == [0, 1]
    assert await env.batches_settled() == [1, 2]
    record, number = await env.head(1)
    rows = await hand_rows(store)
    assert number == 5
    assert "0x" + record.hex() == rows[-1]["record"]
    assert [r["status"] for r in rows] == ["settled"] * 5
    assert await shared.call("eth_getTransactionCount", [env.operator.address, "latest"]) == "0x2"


async def test_a_nonce_used_elsewhere_is_replanned_with_a_new_one(
    store: SqlStore, shared: JsonRpcChain
) -> None:
    """Recorded, never broadcast, and the same key spends that nonce meanwhile: the batch
    is checked against the contract again and sent with the next nonce."""
    env = await make_env(shared)

    async def crash(record: Any) -> None:
        raise Crash("after_record")

    first = service(store, MemoryBus(), env, after_record=crash)
    await first.start()
    await first.consumer.handle(event(completed(env, "table-L", 1)))
    await first.form_batch(force=True)
    with pytest.raises(Crash):
        await first.run_once()
    stray = await env.operator.sign_transaction(
        {
            "type": 2,
            "chainId": env.chain_id,
            "nonce": 0,
            "gas": 21_000,
            "maxFeePerGas": 10 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "to": env.operator.address,
            "value": 0,
            "data": b"",
        }
    )
    await shared.call("eth_sendRawTransaction", ["0x" + stray.hex()])

    second = service(store, MemoryBus(), env, lost_after=2)
    await drive(second, shared, lambda: _has(store, "settlement.confirmed"))
    events = await settlement_events(store)
    assert [e.type for e in events] == ["settlement.submitted", "settlement.confirmed"]
    assert events[0].payload.nonce == 1
    assert await env.batches_settled() == [1]
    assert (await env.head(1))[1] == 1
    statuses = [r.status for r in await second.txm.transactions()]
    assert statuses == ["lost", "confirmed"]


async def test_a_duplicate_hand_is_settled_once(
    store: SqlStore, bus: MemoryBus, shared: JsonRpcChain
) -> None:
    env = await make_env(shared)
    payload = completed(env, "table-D", 1)
    for _ in range(2):  # the same hand, twice, under two event ids
        await bus.publish(event(payload))
    again = event(payload)
    await bus.publish(again)
    await bus.publish(again)  # and the same event twice
    settler = service(store, bus, env)
    stop = asyncio.Event()
    task = asyncio.create_task(settler.run(stop))
    await until(lambda: _has(store, "settlement.confirmed"), chain=shared)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait_for(task, 10)
    assert len(await hand_rows(store)) == 1
    assert await env.head(1) == (bytes.fromhex((await hand_rows(store))[0]["record"][2:]), 1)


# -- reorg --------------------------------------------------------------------------------


async def test_a_reorg_after_confirmation_resubmits_and_settles_once(store: SqlStore) -> None:
    node = await dedicated_anvil()
    try:
        env = await make_env(node)
        a, b, c = env.addresses()
        before = {p: await env.locked(p) for p in (a, b, c)}
        settler = service(store, MemoryBus(), env, confirmations=2, reorg_window=20)
        await settler.start()
        hands = [completed(env, "table-Z", n) for n in (1, 2, 3)]
        for payload in hands:
            await settler.consumer.handle(event(payload))
        snapshot = await node.call("evm_snapshot", [])  # before the settlement is mined
        await settler.form_batch(force=True)
        await settler.run_once()  # signed, sent, mined (automine)
        await mine(node, 2)
        await settler.run_once()
        assert [e.type for e in await settlement_events(store)] == [
            "settlement.submitted",
            "settlement.confirmed",
        ]
        first_block = (await settlement_events(store))[1].payload.block_number
        mirrored_at = [r["mirrored_at"] for r in await hand_rows(store)]
        assert None not in mirrored_at  # mirrored at the first confirmation

        assert await node.call("evm_revert", [snapshot]) is True
        await mine(node, 5)  # another branch, longer than the one that held the batch
        assert await env.head(1) == (b"\x00" * 32, 0)
        await settler.run_once()  # notices, says so, sends the same transaction again
        await mine(node, 2)
        await settler.run_once()

        events = await settlement_events(store)
        assert [e.type for e in events] == [
            "settlement.submitted",
            "settlement.confirmed",
            "settlement.failed",
            "settlement.confirmed",
        ]
        failed, again = events[2].payload, events[3].payload
        assert failed.next_step == "resubmit"
        assert "reorg" in failed.reason
        assert again.tx_hash == events[1].payload.tx_hash  # the same signed transaction
        assert again.block_number > first_block
        rows = await hand_rows(store)
        assert [r["status"] for r in rows] == ["settled"] * 3
        assert await env.head(1) == (bytes.fromhex(rows[-1]["record"][2:]), 3)
        assert await env.batches_settled() == [1]
        for payload in hands:
            for player, delta in payload.deltas.items():
                before[player] += delta * UNIT
        for player in (a, b, c):
            assert await env.locked(player) == before[player]  # applied exactly once

        # Mirrored once: the second confirmation did not move the exact amounts or the
        # ledger again, and the vault watcher's mirror agrees with the contract.
        assert [r["mirrored_at"] for r in rows] == mirrored_at
        async with store.transaction() as session:
            exact = dict(
                (
                    await session.execute(
                        select(chain_vault_balances.c.player, chain_vault_balances.c.locked)
                    )
                ).all()
            )
            house = treasury_accounts(env.chain_id, env.ludex.address, NATIVE)
            treasury = await ledger.balance(session, house.treasury)
        moved = Counter[str]()
        for payload in hands:
            for player, delta in payload.deltas.items():
                moved[player] += delta
        assert {p: int(v) for p, v in exact.items()} == {p: moved[p] * UNIT for p in (a, b, c)}
        assert treasury.balance == 3 * 2
        watcher = VaultWatcher(
            store,
            node,
            contract=env.ludex.address,
            confirmations=2,
            ledger_unit=UNIT,
            poll_interval=0.05,
        )
        await mine(node, 2)
        await watcher.run_once()
        report = await reconcile(
            store, node, contract=env.ludex.address, ledger_unit=UNIT, confirmations=2
        )
        assert report.ok, [str(d) for d in report.differences]
        async with store.transaction() as session:
            for player in (a, b, c):
                locked = vault_accounts(env.chain_id, env.ludex.address, NATIVE, player).locked
                balance = (await ledger.balance(session, locked)).balance
                assert balance == await env.locked(player) // UNIT
    finally:
        await node.close()


async def test_a_reorg_before_confirmation_is_silent(store: SqlStore) -> None:
    node = await dedicated_anvil()
    try:
        env = await make_env(node)
        settler = service(store, MemoryBus(), env, confirmations=3)
        await settler.start()
        await settler.consumer.handle(event(completed(env, "table-Q", 1)))
        snapshot = await node.call("evm_snapshot", [])
        await settler.form_batch(force=True)
        await settler.run_once()
        await settler.run_once()  # mined, one block deep
        await node.call("evm_revert", [snapshot])
        await mine(node, 2)
        for _ in range(6):
            await settler.run_once()
            await mine(node)
        events = await settlement_events(store)
        assert [e.type for e in events] == ["settlement.submitted", "settlement.confirmed"]
        assert (await env.head(1))[1] == 1
    finally:
        await node.close()


# -- refused and forged hands ------------------------------------------------------------


async def test_malformed_hands_are_refused_with_settlement_failed(
    store: SqlStore, shared: JsonRpcChain
) -> None:
    env = await make_env(shared)
    settler = service(store, MemoryBus(), env)
    await settler.start()
    a, b, c = env.addresses()
    bad = {
        "not-addresses": completed(env, "t", 1, players=["alice", b, c]),
        "not-zero-sum": completed(env, "t", 2, deltas=[30, -10, -10]),
        "off-chain-currency": completed(env, "t", 3, currency="CHIPS"),
        "other-chain": completed(env, "t", 4, currency=token_ledger(1, env.ludex.address)),
        "bad-commitment": completed(env, "t", 5, commitment="xyz"),
        "negative-rake": completed(env, "t", 6, deltas=[10, -5, -3], rake=-2),
        "same-player-twice": completed(env, "t", 7, players=[a, a.lower(), c]),
        "too-large": completed(env, "t", 8, deltas=[2**104, -(2**104), 0], rake=0),
    }
    for name, payload in bad.items():
        await settler.consumer.handle(event(HandCompleted(**{**_fields(payload), "hand_id": name})))
    good = completed(env, "t", 9, hand_id="good")
    await settler.consumer.handle(event(good))
    events = await settlement_events(store)
    reasons = {e.payload.hand_ids[0]: e.payload.reason for e in events}
    assert set(reasons) == set(bad)
    assert all(e.type == "settlement.failed" and e.payload.next_step == "none" for e in events)
    assert "'alice' is not an address" in reasons["not-addresses"]
    assert "together they must be zero" in reasons["not-zero-sum"]
    assert "'CHIPS' is not on chain" in reasons["off-chain-currency"]
    assert "is on chain 1" in reasons["other-chain"]
    assert "commitment" in reasons["bad-commitment"]
    assert "negative" in reasons["negative-rake"]
    assert "appears twice" in reasons["same-player-twice"]
    assert "112 bits" in reasons["too-large"]
    rows = {r["hand_id"]: r for r in await hand_rows(store)}
    assert {r["status"] for n, r in rows.items() if n != "good"} == {"refused"}
    assert rows["good"]["hand_number"] == 1  # refused hands take no number
    await settler.form_batch(force=True)
    await drive(settler, shared, lambda: _has(store, "settlement.confirmed"))
    assert (await env.head(1))[1] == 1


def _fields(payload: HandCompleted) -> dict[str, Any]:
    return {f: getattr(payload, f) for f in payload.__struct_fields__}


async def test_a_forged_hand_halts_its_table_and_the_rest_settles(
    store: SqlStore, shared: JsonRpcChain
) -> None:
    env = await make_env(shared)
    settler = service(store, MemoryBus(), env)
    await settler.start()
    a, b, _c = env.addresses()
    broke = env.players[3].address  # never locked anything
    await settler.consumer.handle(event(completed(env, "honest", 1)))
    await settler.consumer.handle(event(completed(env, "forged", 1, players=[a, b, broke])))
    await settler.consumer.handle(event(completed(env, "forged", 2)))
    await settler.consumer.handle(event(completed(env, "honest", 2)))
    await settler.form_batch(force=True)
    for _ in range(6):
        await settler.run_once()
        await mine(shared)
    events = await settlement_events(store)
    assert [e.type for e in events] == [
        "settlement.failed",
        "settlement.submitted",
        "settlement.confirmed",
    ]
    failed = events[0].payload
    assert failed.hand_ids == ["forged/hand-1", "forged/hand-2"]
    assert failed.next_step == "none"
    assert "InsufficientLocked" in failed.reason
    assert broke in failed.reason
    assert events[2].payload.hand_ids == ["honest/hand-1", "honest/hand-2"]
    assert (await env.head(1))[1] == 2  # "honest" is table 1
    assert (await env.head(2))[1] == 0
    # The halted table refuses what comes next, saying why.
    await settler.consumer.handle(event(completed(env, "forged", 3)))
    last = (await settlement_events(store))[-1]
    assert last.type == "settlement.failed"
    assert "halted" in last.payload.reason


async def test_a_paused_contract_requeues_the_batch(store: SqlStore, shared: JsonRpcChain) -> None:
    env = await make_env(shared)
    settler = service(store, MemoryBus(), env)
    await settler.start()
    await settler.consumer.handle(event(completed(env, "p", 1)))
    await env.ludex.transact(env.owner, "pause")
    await settler.form_batch(force=True)
    await settler.run_once()
    [failed] = await settlement_events(store)
    assert failed.type == "settlement.failed"
    assert failed.payload.next_step == "requeue"
    assert "IsPaused" in failed.payload.reason
    assert [r["status"] for r in await hand_rows(store)] == ["queued"]
    await env.ludex.transact(env.owner, "unpause")
    await settler.form_batch(force=True)
    for _ in range(5):
        await settler.run_once()
        await mine(shared)
    events = await settlement_events(store)
    assert [e.type for e in events][-2:] == ["settlement.submitted", "settlement.confirmed"]
    assert events[-1].payload.batch_id == "2"
    assert (await env.head(1))[1] == 1


async def test_hands_already_on_chain_are_confirmed_not_sent_again(
    store: SqlStore, shared: JsonRpcChain
) -> None:
    """The chain holds the batch (sent by another instance): verified, then confirmed."""
    env = await make_env(shared)
    settler = service(store, MemoryBus(), env)
    await settler.start()
    await settler.consumer.handle(event(completed(env, "dup", 1)))
    await settler.form_batch(force=True)
    await settler.sign_batches()
    # Someone else sends our signed batch first (same data, another sender).
    async with store.transaction() as session:
        [batch] = (await session.execute(select(settlement_batches))).mappings().all()
        rows = (await session.execute(select(settlement_hands))).mappings().all()
    from ludex.chain.settlement import table_runs

    hands = [hand_from_row(r) for r in rows]
    await env.ludex.transact(
        env.players[3], "settle", batch["id"], table_runs(hands), bytes(batch["signature"])
    )
    for _ in range(4):
        await settler.run_once()
        await mine(shared)
    events = await settlement_events(store)
    assert [e.type for e in events] == ["settlement.confirmed"]
    assert await env.batches_settled() == [batch["id"]]
    assert await shared.call("eth_getTransactionCount", [env.operator.address, "latest"]) == "0x0"


# -- composition and commands ------------------------------------------------------------


async def test_a_wrong_contract_address_stops_the_service_at_start(
    store: SqlStore, shared: JsonRpcChain
) -> None:
    env = await make_env(shared, players=0)
    nowhere = Account.create().address
    settler = service(store, MemoryBus(), env, contract=nowhere)
    with pytest.raises(ConfigError, match=f"no contract at {nowhere}"):
        await settler.start()


async def test_the_service_is_registered_and_skips_without_a_contract(tmp_path: Path) -> None:
    settings = load_settings(store_url=f"sqlite:///{tmp_path}/x.db", chain_url="http://127.0.0.1:1")
    container = build(settings)
    with capture_logs() as logs:
        await SERVICES["settlement"](container).run(asyncio.Event())
    assert any(line["event"] == "settlement.skipped" for line in logs)


def test_chain_deploy_and_devnet_commands(tmp_path: Path) -> None:
    """`ludex chain devnet --no-wait` on a node of our own, then `ludex chain deploy`."""
    port = free_port()
    anvil = subprocess.Popen(
        [
            str(ROOT / "node_modules/.bin/anvil"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--silent",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_rpc(port)
        env = {**os.environ, "LUDEX_DATA_DIR": str(tmp_path / "var"), "LUDEX_LOG_JSON": "1"}
        devnet = subprocess.run(
            [
                sys.executable,
                "-m",
                "ludex",
                "chain",
                "devnet",
                "--port",
                str(port),
                "--players",
                "2",
                "--no-wait",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
        assert devnet.returncode == 0, devnet.stderr
        summary = json.loads(devnet.stdout)
        assert summary["chain_id"] == 31337
        assert len(summary["players"]) == 2
        lines = dict(line.split("=", 1) for line in summary["env"])
        assert lines["LUDEX_CHAIN_CONTRACT"] == summary["contract"]
        assert lines["LUDEX_CHAIN_URL"] == f"http://127.0.0.1:{port}"
        signer = KeystoreSigner.from_file(
            lines["LUDEX_OPERATOR_KEYSTORE"],
            Path(lines["LUDEX_OPERATOR_PASSWORD_FILE"]).read_text().strip(),
        )
        assert signer.address == summary["operator"]
        key = Account.decrypt(
            json.loads(Path(lines["LUDEX_OPERATOR_KEYSTORE"]).read_text()),
            Path(lines["LUDEX_OPERATOR_PASSWORD_FILE"]).read_text().strip(),
        ).hex()
        assert key.removeprefix("0x") not in devnet.stdout + devnet.stderr

        async def check() -> None:
            chain = JsonRpcChain(f"http://127.0.0.1:{port}")
            ludex = contract_at(chain, summary["contract"], load_artifact("Ludex"))
            token = contract_at(chain, summary["token"], load_artifact("TestToken"))
            assert (await ludex.call("isOperator", summary["operator"]))[0] is True
            for player in summary["players"]:
                balance = await chain.call("eth_getBalance", [player, "latest"])
                assert parse_quantity(balance, "balance") >= 100 * ETHER
                assert (await token.call("balanceOf", player))[0] > 0
            await chain.close()

        asyncio.run(check())
        asyncio.run(_settle_with(lines, summary, tmp_path))

        result = CliRunner().invoke(
            app,
            [
                "chain",
                "deploy",
                "--rpc",
                f"http://127.0.0.1:{port}",
                "--keystore",
                lines["LUDEX_OPERATOR_KEYSTORE"],
                "--password-file",
                lines["LUDEX_OPERATOR_PASSWORD_FILE"],
            ],
        )
        assert result.exit_code == 0, result.output
        deployed = json.loads(result.stdout)
        assert deployed["chain_id"] == 31337
        assert deployed["contract"] != summary["contract"]
        assert deployed["operator"] == deployed["owner"] == signer.address
        assert deployed["gas_used"] > 1_000_000
        assert deployed["tx_hash"].startswith("0x")
    finally:
        anvil.terminate()
        anvil.wait(10)


async def _settle_with(lines: dict[str, str], summary: dict[str, Any], tmp_path: Path) -> None:
    """The service as `ludex run` builds it, from the devnet's env lines, settles a hand."""
    settings = load_settings(
        store_url=f"sqlite:///{tmp_path}/e2e.db",
        bus_url="memory://",
        chain_url=lines["LUDEX_CHAIN_URL"],
        chain_contract=lines["LUDEX_CHAIN_CONTRACT"],
        operator_keystore=lines["LUDEX_OPERATOR_KEYSTORE"],
        operator_password_file=lines["LUDEX_OPERATOR_PASSWORD_FILE"],
        chain_confirmations=1,
        chain_poll_interval=0.05,
        settlement_batch_seconds=0.05,
    )
    container = build(settings)
    await container.store.start()
    await container.store.migrate()
    await container.bus.start()
    await container.chain.start()
    try:
        ludex = contract_at(container.chain, summary["contract"], load_artifact("Ludex"))
        players = json.loads(Path(summary["players_file"]).read_text())
        for player in players:
            sender = Transactor(container.chain, Account.from_key(player["private_key"]))
            await ludex.transact(sender, "deposit", value=ETHER)
            await ludex.transact(sender, "lock", NATIVE, ETHER)
        a, b = (p["address"] for p in players)
        hand = HandCompleted(
            table_id="devnet-table",
            hand_id="devnet-hand-1",
            history_phh="",
            commitment="11" * 32,
            seed_reveal="",
            previous_record_hash="",
            record_hash="",
            deltas={a: 8, b: -10},
            rake=2,
            currency="NATIVE",
        )
        await container.bus.publish(event(hand))
        stop = asyncio.Event()
        task = asyncio.create_task(SERVICES["settlement"](container).run(stop))
        assert isinstance(container.store, SqlStore)
        await until(lambda: _has(container.store, "settlement.confirmed"), chain=container.chain)
        stop.set()
        await asyncio.wait_for(task, 10)
        assert (await ludex.call("tables", 1))[1] == 1
        assert (await ludex.call("locked", a, NATIVE))[0] == ETHER + 8 * UNIT
    finally:
        await container.chain.close()
        await container.bus.close()
        await container.store.close()


def _wait_rpc(port: int) -> None:
    import time

    import httpx

    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.post(
                f"http://127.0.0.1:{port}",
                json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
                timeout=1,
            )
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, "anvil did not start"
            time.sleep(0.1)
