"""Balance changes per address and block, against the node's own balances: on a generated
anvil chain (internal value transfers, CREATE / CREATE2, a reverted internal call, a
failed transaction, self-destructs, ERC-20 / 721 / 1155 moves), every native delta equals
``eth_getBalance(n) - eth_getBalance(n - 1)`` and every token delta the difference of
``balanceOf`` / ``ownerOf`` / ``balanceOf(id)``; a node without traces gives untraced
bundles and no native rows; the rows are stored and reverted on every SQL backend."""

from __future__ import annotations

import asyncio
import copy
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_utils.crypto import keccak
from sqlalchemy import select

from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.tables import NATIVE_TOKEN, idx_balance_changes
from ludex.errors import ChainError
from ludex.indexer import parse
from ludex.indexer.balances import balance_changes
from ludex.indexer.model import NATIVE, BlockBundle, TokenStandard, TokenTransfer, Withdrawal
from ludex.indexer.source import RpcSource
from ludex.indexer.store import IndexStore
from tests.chain.vault_env import anvil_node
from tests.contract.sql_backends import fresh_database, started_store
from tests.indexer.parse_chain import ZERO, TracedChain, generate_traced

CHAIN_ID = 31337


@pytest.fixture(scope="module")
def traced() -> Iterator[TracedChain]:
    with anvil_node() as url:
        yield asyncio.run(generate_traced(url))


@pytest.fixture
async def bundles(traced: TracedChain) -> list[BlockBundle]:
    async with RpcSource([traced.url], max_batch=9) as source:
        got = await source.fetch_bundles(traced.start + 1, traced.head)
        assert source.has_traces is True
    return got


def batch(url: str, calls: list[tuple[str, list[Any]]], *, reverts: bool = False) -> list[Any]:
    """Results in order; with ``reverts``, a call that reverts answers "0x" (nothing)."""
    out: list[Any] = []
    for i in range(0, len(calls), 500):
        body = [
            {"jsonrpc": "2.0", "id": n, "method": m, "params": p}
            for n, (m, p) in enumerate(calls[i : i + 500])
        ]
        answer = sorted(httpx.post(url, json=body, timeout=30).json(), key=lambda a: a["id"])
        for a in answer:
            if reverts and a.get("error", {}).get("message") == "execution reverted":
                a["result"] = "0x"
        assert all("error" not in a or reverts for a in answer), answer[:3]
        out += [a["result"] for a in answer]
    return out


def selector(signature: str) -> str:
    return "0x" + keccak(text=signature)[:4].hex()


def word(value: int | str) -> str:
    number = int(value, 16) if isinstance(value, str) else value
    return f"{number:064x}"


def amount(answer: str) -> int:
    """An eth_call's uint256 ("0x": no code there yet, or it reverted)."""
    return 0 if answer == "0x" else int(answer, 16)


def touched(traced: TracedChain, bundles: list[BlockBundle]) -> set[str]:
    """Every address the chain's blocks touch, whether or not the indexer reports it."""
    found = set(traced.accounts.values()) | {ZERO}
    for b in bundles:
        found.add(b.block.miner)
        for tx in b.transactions:
            found.add(tx.sender)
            if tx.to is not None:
                found.add(tx.to)
        found.update(r.contract_address for r in b.receipts if r.contract_address)
        found.update(c.address for c in b.contracts)
        for move in b.internal_transfers:
            found.update((move.sender, move.recipient))
        for change in b.balance_changes:
            found.add(change.address)
    return found


def reported(bundles: list[BlockBundle]) -> dict[tuple[int, str, str, int | None], int]:
    out: dict[tuple[int, str, str, int | None], int] = defaultdict(int)
    for b in bundles:
        keys = [(c.address, c.token, c.token_id) for c in b.balance_changes]
        assert len(keys) == len(set(keys)), "one row per address and asset"
        for c in b.balance_changes:
            assert c.delta != 0
            assert c.block_number == b.block.number
            assert c.block_hash == b.block.hash
            out[(c.block_number, c.address, c.token, c.token_id)] = c.delta
    return out


async def test_native_deltas_equal_the_node_balance_differences(
    traced: TracedChain, bundles: list[BlockBundle]
) -> None:
    assert all(b.traced for b in bundles)
    addresses = sorted(touched(traced, bundles))
    numbers = list(range(traced.start, traced.head + 1))
    balances = batch(
        traced.url,
        [("eth_getBalance", [a, hex(n)]) for n in numbers for a in addresses],
    )
    at = {
        (n, a): int(balances[i * len(addresses) + j], 16)
        for i, n in enumerate(numbers)
        for j, a in enumerate(addresses)
    }
    got = reported(bundles)
    checked = nonzero = 0
    for n in numbers[1:]:
        for a in addresses:
            expected = at[(n, a)] - at[(n - 1, a)]
            assert got.get((n, a, NATIVE, None), 0) == expected, f"block {n} address {a}"
            checked += 1
            nonzero += expected != 0
    assert set(addresses) >= {k[1] for k in got if k[2] == NATIVE}
    assert checked >= 200
    assert nonzero >= 40
    # The miner (the zero address on anvil) earns the priority fees.
    assert any(k[1] == bundles[0].block.miner and k[2] == NATIVE for k in got)


async def test_token_deltas_equal_balance_of_and_owner_of_differences(
    traced: TracedChain, bundles: list[BlockBundle]
) -> None:
    holders = sorted(set(traced.accounts.values()))
    numbers = list(range(traced.start, traced.head + 1))
    token, nft, multi = (traced.tokens[k] for k in ("TestToken", "TestNFT", "TestMulti"))
    erc20 = selector("balanceOf(address)")
    erc1155 = selector("balanceOf(uint256,address)")  # TestMulti's public mapping
    owner_of = selector("ownerOf(uint256)")
    keys: list[tuple[int, str, str, int | None]] = []
    calls: list[tuple[str, list[Any]]] = []
    for n in numbers:
        for h in holders:
            keys.append((n, h, token, None))
            calls.append(("eth_call", [{"to": token, "data": erc20 + word(h)}, hex(n)]))
            for i in traced.multi_ids:
                keys.append((n, h, multi, i))
                calls.append(
                    ("eth_call", [{"to": multi, "data": erc1155 + word(i) + word(h)}, hex(n)])
                )
        for i in traced.nft_ids:
            keys.append((n, "owner", nft, i))
            calls.append(("eth_call", [{"to": nft, "data": owner_of + word(i)}, hex(n)]))
    answers = dict(zip(keys, batch(traced.url, calls, reverts=True), strict=True))
    expected: dict[tuple[int, str, str, int | None], int] = defaultdict(int)
    for n in numbers[1:]:
        for (m, h, t, tid), value in answers.items():
            if m != n:
                continue
            before = answers[(n - 1, h, t, tid)]
            if h == "owner":  # ownerOf: -1 for the old owner, +1 for the new one
                old, new = (ZERO if v == "0x" else "0x" + v[-40:] for v in (before, value))
                if old != new:
                    expected[(n, old, t, tid)] -= 1
                    expected[(n, new, t, tid)] += 1
            else:
                expected[(n, h, t, tid)] += amount(value) - amount(before)
    expected = {k: v for k, v in expected.items() if v and k[1] != ZERO}
    got = {k: v for k, v in reported(bundles).items() if k[2] != NATIVE}
    assert got == expected
    assert {k[2] for k in got} == {token, nft, multi}
    assert not any(k[1] == ZERO for k in got)  # mints and burns: no row for the zero address
    assert len(got) >= 15


async def test_internal_creations_and_transfers_come_from_frames_that_did_not_revert(
    traced: TracedChain, bundles: list[BlockBundle]
) -> None:
    by_tx = {tx.hash: b for b in bundles for tx in b.transactions}
    via_trace = {c.address: c for b in bundles for c in b.contracts if c.via == "trace"}
    assert {a: c.creator for a, c in via_trace.items()} == traced.internal_creations
    receipts = {c.address for b in bundles for c in b.contracts if c.via == "receipt"}
    assert {traced.accounts["probe"], traced.accounts["endowed"]} <= receipts
    assert set(traced.tokens.values()) <= receipts
    assert not receipts & set(via_trace)

    def moves(label: str) -> list[tuple[str, str, int, str]]:
        tx = traced.tx[label]
        return [
            (m.sender, m.recipient, m.value, m.kind)
            for m in by_tx[tx].internal_transfers
            if m.transaction_hash == tx
        ]

    acc = traced.accounts
    probe = acc["probe"]
    assert moves("split") == [(probe, acc["carol"], 3, "CALL"), (probe, acc["bob"], 4, "CALL")]
    assert moves("spawn") == [
        (probe, acc["child_create"], 5, "CREATE"),
        (probe, acc["child_create2"], 5, "CREATE2"),
    ]
    # The reverted call (8 wei, its child creation and its payment) left nothing.
    assert moves("try_and_pay") == [(probe, acc["carol"], 2, "CALL")]
    assert not [c for c in by_tx[traced.tx["try_and_pay"]].contracts if c.via == "trace"]
    assert moves("spawn_and_kill") == [
        (probe, acc["killed"], 7, "CREATE"),
        (acc["killed"], acc["bob"], 7, "SELFDESTRUCT"),
    ]
    assert moves("boom") == [(acc["child_create"], acc["carol"], 5, "SELFDESTRUCT")]
    assert moves("failed") == moves("batch_failed") == []


class NoTraces(httpx.AsyncBaseTransport):
    """Forwards to the node but answers debug_traceBlockByNumber with method not found."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.refused = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(await request.aread())
        calls = body if isinstance(body, list) else [body]
        if not any(c["method"] == "debug_traceBlockByNumber" for c in calls):
            return await self.inner.handle_async_request(request)
        self.refused += 1
        answer = [
            {"jsonrpc": "2.0", "id": c["id"], "error": {"code": -32601, "message": "no"}}
            for c in calls
        ]
        return httpx.Response(200, json=answer if isinstance(body, list) else answer[0])


async def test_a_node_without_traces_gives_untraced_bundles_without_native_rows(
    traced: TracedChain, bundles: list[BlockBundle]
) -> None:
    transport = NoTraces()
    async with RpcSource([traced.url], max_batch=9, transport=transport) as source:
        plain = await source.fetch_bundles(traced.start + 1, traced.head)
        assert transport.refused == 1  # asked for one block first
        again = await source.fetch_bundles(traced.start + 1, traced.start + 3)
    assert source.has_traces is False
    assert transport.refused == 1  # detected once, never asked again
    assert len(again) == 3
    assert [b.block for b in plain] == [b.block for b in bundles]
    assert not any(b.traced or b.internal_transfers for b in plain)
    receipt_only = [c for b in bundles for c in b.contracts if c.via == "receipt"]
    assert [c for b in plain for c in b.contracts] == receipt_only
    assert not [c for b in plain for c in b.balance_changes if c.token == NATIVE]
    tokens = [c for b in bundles for c in b.balance_changes if c.token != NATIVE]
    assert [c for b in plain for c in b.balance_changes] == tokens
    async with RpcSource([traced.url], traces=False) as off:
        assert not any(b.traced for b in await off.fetch_bundles(traced.head, traced.head))
        assert off.has_traces is False


def _raw(url: str, number: int) -> tuple[dict[str, Any], list[Any], list[Any]]:
    block, receipts, traces = batch(
        url,
        [
            ("eth_getBlockByNumber", [hex(number), True]),
            ("eth_getBlockReceipts", [hex(number)]),
            ("debug_traceBlockByNumber", [hex(number), {"tracer": "callTracer"}]),
        ],
    )
    return block, receipts, traces


def test_corrupted_traces_are_refused_naming_block_transaction_and_field(
    traced: TracedChain,
) -> None:
    number = traced.blocks["spawn_and_kill"]
    block, receipts, traces = _raw(traced.url, number)
    assert parse.bundle(CHAIN_ID, block, receipts, traces).traced
    tx = traces[0]["txHash"]

    def refused(change: Any, *words: str) -> None:
        bad = copy.deepcopy(traces)
        change(bad)
        with pytest.raises(ChainError) as caught:
            parse.bundle(CHAIN_ID, block, receipts, bad)
        message = str(caught.value)
        for w in (f"block {number}", *words):
            assert w in message, message

    refused(lambda t: t.append(copy.deepcopy(t[0])), "2 traces for 1 transactions")
    refused(lambda t: t[0].update(txHash="0x" + "ab" * 32), tx, "txHash")
    refused(lambda t: t[0].update(error="tracer crashed"), tx, "error")
    refused(lambda t: t[0].pop("result"), tx, "result")
    refused(lambda t: t[0]["result"]["calls"][1].update(type="JUMP"), tx, "calls[1]", "type")
    refused(
        lambda t: t[0]["result"]["calls"][1]["calls"][0].update(to="0x1234"),
        tx,
        "calls[1].calls[0]",
        "to",
    )
    refused(lambda t: t[0]["result"]["calls"][0].update(value=7), tx, "calls[0]", "value")
    refused(lambda t: t[0]["result"]["calls"][0].pop("to"), tx, "calls[0]", "to: is missing")
    refused(lambda t: t[0]["result"].update(calls={}), tx, "calls")
    refused(lambda t: t[0]["result"].update(value="0x1"), tx, "value")
    refused(lambda t: t[0]["result"].update({"from": "0x" + "11" * 20}), tx, "from")
    refused(lambda t: t[0]["result"].update(error="execution reverted"), tx, "error")
    refused(lambda t: t[0]["result"].update(type="DELEGATECALL"), tx, "type")


def test_balance_rules_for_withdrawals_blobs_old_blocks_and_untraced_blocks(
    traced: TracedChain, bundles: list[BlockBundle]
) -> None:
    b = next(b for b in bundles if len(b.transactions) > 3)
    tx, receipt = b.transactions[-1], b.receipts[-1]
    base = b.block.base_fee_per_gas
    assert base is not None
    changes = {(c.address, c.token): c.delta for c in b.balance_changes}

    # Withdrawals are in gwei; the address is credited in wei.
    block, receipts, traces = _raw(traced.url, b.block.number)
    block["withdrawals"] = [
        {"index": "0x5", "validatorIndex": "0x9", "address": "0x" + "42" * 20, "amount": "0x3"}
    ]
    withdrawn = parse.bundle(CHAIN_ID, block, receipts, traces)
    assert withdrawn.withdrawals == (
        Withdrawal(CHAIN_ID, b.block.number, 5, 9, "0x" + "42" * 20, 3 * 10**9),
    )
    with_w = {c.address: c.delta for c in withdrawn.balance_changes}
    assert with_w["0x" + "42" * 20] == 3 * 10**9
    block["withdrawals"][0]["amount"] = 3
    with pytest.raises(ChainError, match=r"withdrawals\[0\]: amount"):
        parse.bundle(CHAIN_ID, block, receipts, traces)

    # Blob gas is burnt on top of the execution fee.
    blob = replace(receipt, blob_gas_used=131072, blob_gas_price=3)
    with_blob = balance_changes(replace(b, receipts=(*b.receipts[:-1], blob)))
    sender = {c.address: c.delta for c in with_blob if c.token == NATIVE}[tx.sender]
    assert sender == changes[(tx.sender, NATIVE)] - 131072 * 3

    # Before London (no base fee) the miner receives the whole fee.
    old = replace(b, block=replace(b.block, base_fee_per_gas=None))
    miner = {c.address: c.delta for c in balance_changes(old) if c.token == NATIVE}
    assert miner[b.block.miner] == sum(r.gas_used * r.effective_gas_price for r in b.receipts)

    # Untraced: no native row at all; tokens unchanged.
    untraced = balance_changes(replace(b, traced=False))
    assert untraced == tuple(c for c in b.balance_changes if c.token != NATIVE)

    # A token moved to oneself nets to nothing; the zero address never gets a row.
    t = traced.tokens["TestToken"]
    me = traced.accounts["alice"]
    moves = (
        TokenTransfer(
            CHAIN_ID,
            1,
            "0x" + "00" * 32,
            "0x" + "01" * 32,
            0,
            0,
            TokenStandard.ERC20,
            t,
            me,
            me,
            None,
            5,
        ),
        TokenTransfer(
            CHAIN_ID,
            1,
            "0x" + "00" * 32,
            "0x" + "01" * 32,
            1,
            0,
            TokenStandard.ERC20,
            t,
            ZERO,
            me,
            None,
            9,
        ),
    )
    only = balance_changes(replace(b, traced=False, transfers=moves))
    assert [(c.address, c.token, c.token_id, c.delta) for c in only] == [(me, t, None, 9)]

    # An effective gas price below the base fee is refused.
    cheap = replace(receipt, effective_gas_price=base - 1)
    with pytest.raises(ChainError, match="effectiveGasPrice"):
        balance_changes(replace(b, receipts=(*b.receipts[:-1], cheap)))
    assert NATIVE == NATIVE_TOKEN


@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.services),
        pytest.param("mysql", marks=pytest.mark.services),
    ],
)
async def test_balance_rows_are_stored_once_and_reverted(
    backend: str, tmp_path: Path, bundles: list[BlockBundle]
) -> None:
    expected = {
        (c.block_number, c.address, c.token, "" if c.token_id is None else str(c.token_id)): (
            c.block_hash,
            str(c.delta),
        )
        for b in bundles
        for c in b.balance_changes
    }
    assert any(int(v[1]) < 0 for v in expected.values())
    assert max(len(v[1]) for v in expected.values()) > 18  # beyond 64 bits: fees in wei
    async with fresh_database(backend, tmp_path) as url, started_store(url) as store:
        rows = IndexStore(store)
        async with store.transaction() as session:
            written = await rows.write(session, bundles)
        assert written.rows.balance_changes == len(expected)
        async with store.transaction() as session:
            again = await rows.write(session, bundles)
        assert again.rows.balance_changes == 0
        assert await stored(store) == expected
        assert (await rows.counts(CHAIN_ID)).balance_changes == len(expected)

        middle = bundles[len(bundles) // 2].block.number
        async with store.transaction() as session:
            await rows.revert_above(session, CHAIN_ID, middle)
        assert await stored(store) == {k: v for k, v in expected.items() if k[0] <= middle}


async def stored(store: SqlStore) -> dict[tuple[int, str, str, str], tuple[str, str]]:
    t = idx_balance_changes
    async with store.transaction() as session:
        result = await session.execute(
            select(
                t.c.block_number, t.c.address, t.c.token, t.c.token_id, t.c.block_hash, t.c.delta
            ).where(t.c.chain_id == CHAIN_ID)
        )
        return {(int(n), a, tk, i): (h, d) for n, a, tk, i, h, d in result.all()}
