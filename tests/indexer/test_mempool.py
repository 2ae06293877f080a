"""The mempool watcher on a real anvil with automine off: pending transactions seen by
polling (txpool_content, a pending filter) and by the WebSocket subscription, compared
with eth_getTransactionByHash; inclusion compared with the receipt; replacement, drop
and re-broadcast; the pipeline hooks; malformed answers refused; idempotence on SQLite,
PostgreSQL and MariaDB."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import select

from ludex.adapters.chain.anvil import set_balance
from ludex.adapters.chain.jsonrpc import JsonRpcChain, parse_quantity
from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.outbox import fetch_unpublished
from ludex.adapters.sql.tables import idx_pending_transactions
from ludex.errors import ChainError, ConfigError
from ludex.events import decode
from ludex.indexer.mempool import (
    Discovery,
    Inclusion,
    MempoolWatcher,
    gone_fate,
    mark_included,
    parse_lookup,
    parse_pending,
    parse_txpool,
    unmark_above,
)
from ludex.indexer.pipeline import Indexer
from ludex.indexer.source import RpcSource
from tests.chain.vault_env import ETHER, GWEI
from tests.contract.sql_backends import fresh_database, started_store

CHAIN_ID = 31337


# --- the pure part: a real anvil answer and malformed variants of it ------------------

SAMPLE: dict[str, Any] = {
    "type": "0x2",
    "chainId": "0x7a69",
    "nonce": "0x5",
    "gas": "0xea60",
    "maxFeePerGas": "0x2540be400",
    "maxPriorityFeePerGas": "0x3b9aca00",
    "to": None,
    "value": "0x1",
    "accessList": [],
    "input": "0x0001",
    "r": "0xe039cb38723363117f161bb094f02149739a09301b2c876f612bf6a7eb407924",
    "s": "0x135f305f07b222e574f1e27a950144ffa8c9c569d3347bed0bdbd78d3abfb67",
    "yParity": "0x1",
    "v": "0x1",
    "hash": "0xbbb79e74ec400065c5db32387494dfcc579efc1e7cf3c5fb607e8176d807f3ad",
    "blockHash": None,
    "blockNumber": None,
    "transactionIndex": None,
    "from": "0xC77F167F3751ceb8d9d8498e083bca78b75dda91",
    "gasPrice": "0x77359400",
}


def test_a_pending_answer_becomes_a_record() -> None:
    tx = parse_pending(CHAIN_ID, SAMPLE)
    assert tx.hash == SAMPLE["hash"]
    assert tx.sender == SAMPLE["from"].lower()
    assert (tx.nonce, tx.value, tx.gas, tx.type, tx.to) == (5, 1, 60000, 2, None)
    assert (tx.max_fee_per_gas, tx.max_priority_fee_per_gas) == (10 * GWEI, GWEI)
    assert tx.gas_price is None  # a fee-capped transaction has no price before a block
    legacy = {k: v for k, v in SAMPLE.items() if not k.startswith("max")} | {"type": "0x0"}
    assert parse_pending(CHAIN_ID, legacy).gas_price == 2 * GWEI
    pre_2718 = {k: v for k, v in legacy.items() if k not in ("type", "chainId")}
    assert parse_pending(CHAIN_ID, pre_2718).type == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"nonce": "5"}, "nonce"),
        ({"nonce": 5}, "nonce"),
        ({"value": None}, "value"),
        ({"gas": "0x"}, "gas"),
        ({"hash": "0x1234"}, "hash"),
        ({"from": "0xc77f167f3751ceb8d9d8498e083bca78b75dda9"}, "from"),
        ({"to": "nobody"}, "to"),
        ({"input": "0x123"}, "input"),
        ({"chainId": "0x1"}, "chainId"),
        ({"blockNumber": "0x3"}, "blockNumber"),
        ({"transactionIndex": "0x0"}, "transactionIndex"),
        ({"maxFeePerGas": "0xzz"}, "maxFeePerGas"),
        ({"type": "two"}, "type"),
    ],
)
def test_a_malformed_pending_answer_is_refused_naming_the_field(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(ChainError, match=rf": {field}: "):
        parse_pending(CHAIN_ID, SAMPLE | change)


def test_malformed_txpool_and_lookup_answers_are_refused() -> None:
    sender = SAMPLE["from"].lower()
    good = {"pending": {sender: {"5": SAMPLE}}, "queued": {}}
    assert [t.hash for t in parse_txpool(CHAIN_ID, good)] == [SAMPLE["hash"]]
    for bad, problem in [
        ({"pending": {sender: {"6": SAMPLE}}}, "nonce"),
        ({"pending": {"0x" + "11" * 20: {"5": SAMPLE}}}, "from"),
        ({"pending": [SAMPLE]}, "pending"),
        ({"pending": {sender: {"5": SAMPLE | {"gas": None}}}}, "gas"),
        ([SAMPLE], "expected a JSON object"),
    ]:
        with pytest.raises(ChainError, match=problem):
            parse_txpool(CHAIN_ID, bad)
    with pytest.raises(ChainError, match="hash"):
        parse_lookup(CHAIN_ID, "0x" + "ab" * 32, SAMPLE)
    mined = SAMPLE | {
        "blockNumber": "0x9",
        "blockHash": "0x" + "cd" * 32,
        "transactionIndex": "0x0",
    }
    found = parse_lookup(CHAIN_ID, SAMPLE["hash"], mined)
    assert isinstance(found, Inclusion)
    assert (found.block_number, found.sender) == (9, SAMPLE["from"].lower())
    with pytest.raises(ChainError, match="blockHash"):
        parse_lookup(CHAIN_ID, SAMPLE["hash"], mined | {"blockHash": "0x12"})
    assert parse_lookup(CHAIN_ID, SAMPLE["hash"], None) is None


def test_the_fate_of_a_transaction_the_node_no_longer_has() -> None:
    assert gone_fate(3, 4, 0.0, 60, sibling_pending=False) == "replaced"
    assert gone_fate(3, 4, 0.0, 60, sibling_pending=True) == "replaced"
    assert gone_fate(3, 3, 59.9, 60, sibling_pending=False) is None
    assert gone_fate(3, 3, 60.0, 60, sibling_pending=False) == "dropped"
    assert gone_fate(3, 3, 600.0, 60, sibling_pending=True) is None  # its replacement waits


# --- anvil and the store ----------------------------------------------------------------


@pytest.fixture
async def chain(node_url: str) -> AsyncIterator[JsonRpcChain]:
    client = JsonRpcChain(node_url)
    await client.start()
    await client.call("evm_setAutomine", [False])
    yield client
    await client.close()


@pytest.fixture
async def source(node_url: str) -> AsyncIterator[RpcSource]:
    async with RpcSource([node_url], max_batch=5) as s:
        yield s


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with fresh_database(request.param, tmp_path) as url, started_store(url) as s:
        yield s


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with started_store(f"sqlite:///{tmp_path}/mempool.db") as s:
        yield s


class Sender:
    """A funded account that signs its own transactions (nonce and fees chosen here)."""

    def __init__(self, chain: JsonRpcChain, account: LocalAccount) -> None:
        self.chain = chain
        self.account = account
        self.address = account.address.lower()

    @classmethod
    async def funded(cls, chain: JsonRpcChain) -> Sender:
        account = Account.create()
        await set_balance(chain, account.address, 1000 * ETHER)
        return cls(chain, account)

    def sign(
        self, nonce: int, *, tip_gwei: int = 1, legacy: bool = False, create: bool = False
    ) -> str:
        tx: dict[str, Any] = {
            "chainId": CHAIN_ID,
            "nonce": nonce,
            "value": nonce + 1,
            "gas": 100_000,
            "data": b"\x60\x00\x60\x00" if create else b"",
        }
        if not create:
            tx["to"] = Account.create().address
        if legacy:
            tx["gasPrice"] = (10 + tip_gwei) * GWEI
        else:
            tx.update(maxFeePerGas=(20 + tip_gwei) * GWEI, maxPriorityFeePerGas=tip_gwei * GWEI)
        signed = Account.sign_transaction(tx, self.account.key)
        return "0x" + bytes(signed.raw_transaction).hex()

    async def send(self, nonce: int, **options: Any) -> str:
        return str(await self.chain.call("eth_sendRawTransaction", [self.sign(nonce, **options)]))


async def rows(store: SqlStore) -> dict[str, dict[str, Any]]:
    t = idx_pending_transactions
    async with store.transaction() as session:
        found = (await session.execute(select(t))).mappings().all()
    return {str(r["hash"]): dict(r) for r in found}


async def events(store: SqlStore, kind: str | None = None) -> list[Any]:
    async with store.transaction() as session:
        found = await fetch_unpublished(session, 100_000)
    return [decode(r.payload) for r in found if kind is None or r.event_type == kind]


def assert_row_is_the_node_answer(row: dict[str, Any], raw: dict[str, Any]) -> None:
    """A stored row holds exactly the node's eth_getTransactionByHash fields."""

    def q(key: str) -> int | None:
        return None if raw.get(key) is None else parse_quantity(raw[key], key)

    assert row["hash"] == raw["hash"].lower()
    assert row["sender"] == raw["from"].lower()
    assert row["nonce"] == q("nonce")
    assert row["recipient"] == (None if raw["to"] is None else raw["to"].lower())
    assert int(row["value"]) == q("value")
    assert row["gas"] == q("gas")
    assert row["tx_type"] == q("type")
    assert row["max_fee_per_gas"] == (None if q("maxFeePerGas") is None else str(q("maxFeePerGas")))
    priority = q("maxPriorityFeePerGas")
    assert row["max_priority_fee_per_gas"] == (None if priority is None else str(priority))
    if raw.get("maxFeePerGas") is None:
        assert int(row["gas_price"]) == q("gasPrice")
    else:
        assert row["gas_price"] is None


async def mine(chain: JsonRpcChain) -> int:
    await chain.call("evm_mine", [])
    return parse_quantity(await chain.call("eth_blockNumber", []), "head")


# --- discovery ----------------------------------------------------------------------------


@pytest.mark.parametrize("discovery", ["txpool", "filter", "auto"])
async def test_polling_sees_pending_transactions_as_the_node_reports_them(
    discovery: str, store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    watcher = MempoolWatcher(store, source, CHAIN_ID, discovery=discovery)  # type: ignore[arg-type]
    await watcher.poll()  # a filter only reports what arrives after it exists
    alice, bob = await Sender.funded(chain), await Sender.funded(chain)
    sent = [
        await alice.send(0, legacy=True),
        await alice.send(1),
        await alice.send(2, create=True),
        await bob.send(0, tip_gwei=3),
    ]
    changes = await watcher.poll()
    assert changes.seen == 4
    assert watcher.discovery == ("txpool" if discovery == "auto" else discovery)
    stored = await rows(store)
    assert sorted(stored) == sorted(sent)
    for tx_hash in sent:
        raw = await chain.call("eth_getTransactionByHash", [tx_hash])
        assert_row_is_the_node_answer(stored[tx_hash], raw)
        assert stored[tx_hash]["status"] == "pending"
        assert stored[tx_hash]["block_number"] is None
    pending = await events(store, "chain.tx_pending")
    assert sorted(e.payload.hash for e in pending) == sorted(sent)
    assert {e.key for e in pending} == {alice.address, bob.address}

    # Again, and by a second watcher: nothing stored twice, no event twice.
    assert (await watcher.poll()).seen == 0
    other = MempoolWatcher(store, source, CHAIN_ID, discovery="txpool")
    assert (await other.poll()).seen == 0
    assert await rows(store) == stored
    assert len(await events(store)) == 4


async def test_the_subscription_sees_pending_transactions(
    sqlite_store: SqlStore, node_url: str, chain: JsonRpcChain
) -> None:
    # Discovery "none": only the WebSocket subscription can find them.
    watcher = MempoolWatcher(
        sqlite_store,
        [node_url],
        CHAIN_ID,
        ws_url=node_url.replace("http://", "ws://"),
        discovery="none",
        poll_interval=30,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(watcher.run(stop))
    try:
        alice = await Sender.funded(chain)
        await asyncio.sleep(0.5)  # the subscription is open
        sent = [await alice.send(0), await alice.send(1, legacy=True)]
        async with asyncio.timeout(10):
            while len(await rows(sqlite_store)) < 2:
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    stored = await rows(sqlite_store)
    assert sorted(stored) == sorted(sent)
    for tx_hash in sent:
        assert_row_is_the_node_answer(
            stored[tx_hash], await chain.call("eth_getTransactionByHash", [tx_hash])
        )
    assert watcher.stats.changes.seen == 2


# --- fate ---------------------------------------------------------------------------------


async def test_mining_includes_them_in_the_block_of_their_receipt(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    watcher = MempoolWatcher(store, source, CHAIN_ID)
    alice = await Sender.funded(chain)
    sent = [await alice.send(n) for n in range(3)]
    await watcher.poll()
    late = await alice.send(3)
    await mine(chain)
    await mine(chain)
    changes = await watcher.poll()
    assert changes.included == 3
    assert changes.seen == 0  # the late one was mined before the watcher saw it pending
    stored = await rows(store)
    assert late not in stored
    for tx_hash in sent:
        receipt = await chain.call("eth_getTransactionReceipt", [tx_hash])
        assert stored[tx_hash]["status"] == "included"
        assert stored[tx_hash]["block_number"] == parse_quantity(receipt["blockNumber"], "n")
    included = await events(store, "chain.tx_included")
    assert sorted(e.payload.hash for e in included) == sorted(sent)
    assert all(e.key == alice.address for e in included)
    assert (await watcher.poll()).included == 0
    assert len(await events(store, "chain.tx_included")) == 3


@pytest.mark.parametrize("known_by", ["mempool", "indexer", "nobody"])
async def test_a_replacement_marks_the_first_replaced(
    known_by: str, store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    watcher = MempoolWatcher(store, source, CHAIN_ID, drop_after=0)
    alice = await Sender.funded(chain)
    first = await alice.send(0, tip_gwei=1)
    await watcher.poll()
    second = await alice.send(0, tip_gwei=5)  # same nonce, higher fee
    assert await chain.call("eth_getTransactionByHash", [first]) is None
    if known_by == "mempool":
        # The replacement is pending, the nonce unused: the first waits (not dropped).
        assert (await watcher.poll()).seen == 1
        assert (await rows(store))[first]["status"] == "pending"
    block = await mine(chain)
    if known_by == "indexer":
        indexer = Indexer(store, source, chain_id=CHAIN_ID)
        await indexer.backfill(0, block)
    changes = await watcher.poll()
    assert changes.replaced == 1
    stored = await rows(store)
    assert stored[first]["status"] == "replaced"
    assert stored[first]["replaced_by"] == (None if known_by == "nobody" else second)
    receipt = await chain.call("eth_getTransactionReceipt", [second])
    assert parse_quantity(receipt["blockNumber"], "n") == block
    if known_by == "mempool":
        assert stored[second]["status"] == "included"
        assert stored[second]["block_number"] == block
    (event,) = await events(store, "chain.tx_replaced")
    assert (event.payload.hash, event.payload.replaced_by) == (first, stored[first]["replaced_by"])
    assert event.key == alice.address


async def test_a_dropped_transaction_is_dropped_after_drop_after_and_can_come_back(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    watcher = MempoolWatcher(store, source, CHAIN_ID, drop_after=0.6)
    alice = await Sender.funded(chain)
    raw = alice.sign(0)
    tx_hash = await chain.call("eth_sendRawTransaction", [raw])
    await watcher.poll()
    await chain.call("anvil_dropTransaction", [tx_hash])
    assert await chain.call("eth_getTransactionByHash", [tx_hash]) is None
    assert (await watcher.poll()).dropped == 0  # gone, but not for drop_after yet
    assert (await rows(store))[tx_hash]["status"] == "pending"
    await asyncio.sleep(0.7)
    assert (await watcher.poll()).dropped == 1
    assert (await rows(store))[tx_hash]["status"] == "dropped"
    assert [e.payload.hash for e in await events(store, "chain.tx_dropped")] == [tx_hash]

    # Broadcast again: back to pending (one more chain.tx_pending), then mined.
    assert await chain.call("eth_sendRawTransaction", [raw]) == tx_hash
    changes = await watcher.poll()
    assert (changes.returned, changes.seen) == (1, 0)
    assert (await rows(store))[tx_hash]["status"] == "pending"
    assert len(await events(store, "chain.tx_pending")) == 2
    block = await mine(chain)
    assert (await watcher.poll()).included == 1
    assert (await rows(store))[tx_hash]["block_number"] == block


# --- the pipeline hooks -----------------------------------------------------------------


async def test_mark_included_and_unmark_above(
    store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    watcher = MempoolWatcher(store, source, CHAIN_ID, drop_after=3600)
    alice, bob = await Sender.funded(chain), await Sender.funded(chain)
    a0 = await alice.send(0)
    b0 = await bob.send(0, tip_gwei=1)
    await watcher.poll()
    b0_again = await bob.send(0, tip_gwei=9)  # replaces b0 in the pool
    await watcher.poll()
    block = await mine(chain)
    included = [(h, block) for h in (a0, b0_again)]
    unknown = ("0x" + "77" * 32, block)  # a transaction the mempool never saw

    async with store.transaction() as session:
        changes = await mark_included(session, CHAIN_ID, [*included, unknown])
    assert changes.included == 2
    async with store.transaction() as session:  # again: nothing changes, no event
        assert (await mark_included(session, CHAIN_ID, included)).included == 0
    stored = await rows(store)
    assert {h: (stored[h]["status"], stored[h]["block_number"]) for h, _ in included} == {
        a0: ("included", block),
        b0_again: ("included", block),
    }
    assert len(await events(store, "chain.tx_included")) == 2
    await watcher.poll()  # b0 is gone and its nonce used: replaced by the included one
    stored = await rows(store)
    assert (stored[b0]["status"], stored[b0]["replaced_by"]) == ("replaced", b0_again)

    # A reorg below the block: both included and the replaced one are pending again.
    async with store.transaction() as session:
        assert (await unmark_above(session, CHAIN_ID, block)).returned == 0
    async with store.transaction() as session:
        assert (await unmark_above(session, CHAIN_ID, block - 1)).returned == 3
    stored = await rows(store)
    for h in (a0, b0, b0_again):
        assert (stored[h]["status"], stored[h]["block_number"], stored[h]["replaced_by"]) == (
            "pending",
            None,
            None,
        )
    assert len(await events(store, "chain.tx_pending")) == 3 + 3
    async with store.transaction() as session:
        assert (await unmark_above(session, CHAIN_ID, block - 1)).returned == 0

    # The node still has them in its block: the next poll includes them again.
    assert (await watcher.poll()).included == 2


# --- refusals and idempotence -------------------------------------------------------------


class Tampering:
    """A source that answers like ``inner`` except where ``tamper`` changes an answer."""

    def __init__(self, inner: RpcSource, tamper: Callable[[str, Any], Any]) -> None:
        self.inner = inner
        self.tamper = tamper

    async def call(self, method: str, params: list[Any]) -> Any:
        return self.tamper(method, copy.deepcopy(await self.inner.call(method, params)))

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        answers = await self.inner.batch(calls)
        return [self.tamper(m, copy.deepcopy(a)) for (m, _), a in zip(calls, answers, strict=True)]


def _first_pool_entry(answer: Any) -> dict[str, Any]:
    by_nonce = next(iter(answer["pending"].values()))
    return by_nonce[next(iter(by_nonce))]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("method", "change", "field"),
    [
        ("txpool_content", {"nonce": "7"}, "nonce"),
        ("txpool_content", {"blockNumber": "0x1"}, "blockNumber"),
        ("txpool_content", {"chainId": "0x1"}, "chainId"),
        ("eth_getTransactionByHash", {"value": "1000"}, "value"),
        ("eth_getTransactionByHash", {"to": "0x12"}, "to"),
        ("eth_getTransactionByHash", {"hash": "0x" + "33" * 32}, "hash"),
    ],
)
async def test_malformed_pending_answers_are_refused_and_nothing_is_stored(
    method: str,
    change: dict[str, Any],
    field: str,
    sqlite_store: SqlStore,
    source: RpcSource,
    chain: JsonRpcChain,
) -> None:
    def tamper(called: str, answer: Any) -> Any:
        if called != method or not answer or (method == "txpool_content" and not answer["pending"]):
            return answer
        (_first_pool_entry(answer) if method == "txpool_content" else answer).update(change)
        return answer

    discovery: Discovery = "txpool" if method == "txpool_content" else "filter"
    bad = MempoolWatcher(sqlite_store, Tampering(source, tamper), CHAIN_ID, discovery=discovery)
    await bad.poll()
    alice = await Sender.funded(chain)
    sent = await alice.send(0)
    with pytest.raises(ChainError, match=field):
        await bad.poll()
    assert await rows(sqlite_store) == {}
    assert await events(sqlite_store) == []

    # run() logs the failures and keeps polling; still nothing stored.
    await alice.send(1)
    stop = asyncio.Event()
    bad.poll_interval = 0.05
    task = asyncio.create_task(bad.run(stop))
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert bad.stats.failed_polls >= 1
    assert await rows(sqlite_store) == {}

    good = MempoolWatcher(sqlite_store, source, CHAIN_ID, discovery="txpool")
    await good.poll()
    assert (await rows(sqlite_store))[sent]["status"] == "pending"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"value": "1000"}, "value"),
        ({"from": "0x" + "22" * 20}, "from"),  # well-formed, but not the stored sender
        ({"blockNumber": "0xzz"}, "blockNumber"),
        ({"transactionIndex": None}, "transactionIndex"),
    ],
)
async def test_a_malformed_answer_to_the_reconcile_leaves_the_row_pending(
    change: dict[str, Any],
    field: str,
    sqlite_store: SqlStore,
    source: RpcSource,
    chain: JsonRpcChain,
) -> None:
    alice = await Sender.funded(chain)
    sent = await alice.send(0)
    await MempoolWatcher(sqlite_store, source, CHAIN_ID).poll()
    await mine(chain)

    def tamper(called: str, answer: Any) -> Any:
        if called == "eth_getTransactionByHash" and answer:
            answer.update(change)
        return answer

    checker = MempoolWatcher(sqlite_store, Tampering(source, tamper), CHAIN_ID, discovery="none")
    with pytest.raises(ChainError, match=field):
        await checker.poll()
    assert (await rows(sqlite_store))[sent]["status"] == "pending"
    assert await events(sqlite_store, "chain.tx_included") == []
    assert (await MempoolWatcher(sqlite_store, source, CHAIN_ID).poll()).included == 1


async def test_a_watcher_refuses_a_node_of_another_chain(
    sqlite_store: SqlStore, source: RpcSource
) -> None:
    with pytest.raises(ConfigError, match="chain 31337, not chain 1"):
        await MempoolWatcher(sqlite_store, source, 1).poll()
    with pytest.raises(ConfigError, match="discovery"):
        MempoolWatcher(sqlite_store, source, CHAIN_ID, discovery="gossip")  # type: ignore[arg-type]


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "mysql"])
async def test_concurrent_watchers_store_each_transaction_and_change_once(
    backend: str, tmp_path: Path, source: RpcSource, chain: JsonRpcChain
) -> None:
    async with fresh_database(backend, tmp_path) as url, started_store(url) as store:
        watchers = [MempoolWatcher(store, source, CHAIN_ID) for _ in range(3)]
        senders = [await Sender.funded(chain) for _ in range(4)]
        sent = [await s.send(n) for s in senders for n in range(3)]
        seen = await asyncio.gather(*(w.poll() for w in watchers))
        assert sum(c.seen for c in seen) == len(sent) == 12
        assert sorted(await rows(store)) == sorted(sent)
        block = await mine(chain)
        done = await asyncio.gather(*(w.poll() for w in watchers))
        assert sum(c.included for c in done) == 12
        stored = await rows(store)
        assert {r["status"] for r in stored.values()} == {"included"}
        assert {r["block_number"] for r in stored.values()} == {block}
        assert len(await events(store, "chain.tx_pending")) == 12
        assert len(await events(store, "chain.tx_included")) == 12


# --- the indexer pipeline marks inclusion and reorgs --------------------------------------


async def test_the_indexer_marks_inclusion_in_its_range_and_a_reorg_returns_them_to_pending(
    sqlite_store: SqlStore, source: RpcSource, chain: JsonRpcChain
) -> None:
    store = sqlite_store
    watcher = MempoolWatcher(store, source, CHAIN_ID, discovery="txpool")
    alice = await Sender.funded(chain)
    base = await mine(chain)
    snapshot = await chain.call("evm_snapshot", [])
    sent = [await alice.send(n) for n in range(2)]
    await watcher.poll()
    assert {r["status"] for r in (await rows(store)).values()} == {"pending"}
    block = await mine(chain)

    # The pipeline, not the watcher's reconcile, marks them: in the range's transaction.
    indexer = Indexer(store, source, chain_id=CHAIN_ID, mempool=True)
    await indexer.backfill(0, block)
    stored = await rows(store)
    assert [stored[h]["status"] for h in sent] == ["included", "included"]
    assert [stored[h]["block_number"] for h in sent] == [block, block]
    assert len(await events(store, "chain.tx_included")) == 2

    # A reorg orphans that block: the transactions are pending again, announced again.
    await chain.call("evm_revert", [snapshot])
    await mine(chain)
    await mine(chain)
    await indexer.step(start=base + 1)
    assert indexer.stats.reorgs
    stored = await rows(store)
    assert [stored[h]["status"] for h in sent] == ["pending", "pending"]
    assert [stored[h]["block_number"] for h in sent] == [None, None]
    assert len(await events(store, "chain.tx_pending")) == 4  # first seen, and back

    # Without mempool=True the pipeline leaves the table alone.
    plain = await rows(store)
    other = Indexer(store, source, chain_id=CHAIN_ID, name="plain")
    await other.backfill(0, await mine(chain))
    assert await rows(store) == plain


def test_the_index_command_wants_follow_for_the_mempool(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from ludex.cli import app

    result = CliRunner().invoke(
        app, ["index", "--rpc", "http://127.0.0.1:1", "--to", "3", "--mempool"]
    )
    assert result.exit_code == 2
    assert "--follow" in result.output
