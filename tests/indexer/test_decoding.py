"""Decoded events through the ABI registry: ``chain.event_decoded`` from the pipeline
and the ``--abi`` option of ``ludex index``, on a dedicated anvil."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from ludex.adapters.chain.jsonrpc import JsonRpcChain, parse_quantity
from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.outbox import fetch_unpublished
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import deploy
from ludex.events import ChainEventDecoded, decode
from ludex.indexer.abi_registry import AbiRegistry
from ludex.indexer.bus_events import ALL_EVENTS, EVENT_DECODED, json_safe
from ludex.indexer.metrics import ABI_CACHE_HIT_RATE
from ludex.indexer.pipeline import Indexer
from ludex.indexer.source import RpcSource
from tests.chain.vault_env import ETHER, funded

ZERO = "0x" + "00" * 20


async def decoded(store: SqlStore) -> list[tuple[str, ChainEventDecoded]]:
    async with store.transaction() as session:
        rows = await fetch_unpublished(session, 100_000)
    out = []
    for r in rows:
        if r.event_type == EVENT_DECODED:
            envelope = decode(r.payload)
            assert isinstance(envelope.payload, ChainEventDecoded)
            out.append((envelope.key, envelope.payload))
    return out


async def head(chain: JsonRpcChain) -> int:
    return parse_quantity(await chain.call("eth_blockNumber", []), "head")


def test_json_safe_keeps_small_ints_and_stringifies_big_ones() -> None:
    value = {"a": 2**53, "b": 2**53 + 1, "c": b"\x01\xff", "d": (1, -(2**60)), "e": True}
    assert json_safe(value) == {
        "a": 2**53,
        "b": str(2**53 + 1),
        "c": "0x01ff",
        "d": [1, str(-(2**60))],
        "e": True,
    }


async def test_backfill_with_the_ludex_abi_emits_decoded_events(
    chain: JsonRpcChain, store: SqlStore, node_url: str
) -> None:
    owner, alice = await funded(chain), await funded(chain)
    ludex, _ = await deploy(owner, load_artifact("Ludex"), owner.address)
    token, _ = await deploy(alice, load_artifact("TestToken"), "Test", "TST")
    await token.transact(alice, "mint", alice.address, 1000)
    await token.transact(alice, "approve", ludex.address, 100)
    deposit_native = await ludex.transact(alice, "deposit", value=3 * ETHER)
    await ludex.transact(alice, "depositToken", token.address, 100)
    registry = AbiRegistry.default()
    async with RpcSource([node_url]) as source:
        indexer = Indexer(
            store, source, chain_id=31337, batch_blocks=4, abi=registry, events={EVENT_DECODED}
        )
        await indexer.backfill(0, await head(chain))
    events = await decoded(store)
    assert indexer.stats.decoded == len(events) > 0
    assert {key for key, _ in events} <= {ludex.address.lower(), token.address.lower()}
    deposits = [(k, e) for k, e in events if e.name == "Deposited"]
    assert [e.args for _, e in deposits] == [
        {"player": alice.address.lower(), "token": ZERO, "amount": str(3 * ETHER)},
        {"player": alice.address.lower(), "token": token.address.lower(), "amount": 100},
    ]
    key, first = deposits[0]
    assert key == ludex.address.lower() == first.address
    assert first.abi == "Ludex"
    assert first.chain_id == 31337
    assert first.tx_hash == deposit_native.tx_hash.lower()
    assert first.block_number == deposit_native.block_number
    transfers = [e for _, e in events if e.name == "Transfer"]
    assert transfers
    assert transfers[0].args["from"] == ZERO  # the mint, ERC-20 shaped
    assert transfers[0].args["value"] == 1000
    # only the events asked for: no chain.block etc.
    async with store.transaction() as session:
        kinds = {r.event_type for r in await fetch_unpublished(session, 100_000)}
    assert kinds == {EVENT_DECODED}
    assert 0.0 <= ABI_CACHE_HIT_RATE._value.get() <= 1.0


async def test_without_a_registry_nothing_is_decoded(
    chain: JsonRpcChain, store: SqlStore, node_url: str
) -> None:
    alice = await funded(chain)
    token, _ = await deploy(alice, load_artifact("TestToken"), "Test", "TST")
    await token.transact(alice, "mint", alice.address, 5)
    async with RpcSource([node_url]) as source:
        indexer = Indexer(store, source, chain_id=31337, events=ALL_EVENTS)
        await indexer.backfill(0, await head(chain))
    assert await decoded(store) == []


async def test_the_index_command_decodes_with_a_user_abi_file(
    tmp_path: Path, node_url: str, chain: JsonRpcChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ludex.cli import app

    alice = await funded(chain)
    token, _ = await deploy(alice, load_artifact("TestToken"), "Test", "TST")
    bob = Account.create().address
    await token.transact(alice, "mint", alice.address, 2**60)
    await token.transact(alice, "transfer", bob, 2**60 - 7)
    # a user ABI: Transfer with its own parameter names, bound to the token's address
    # (a bound ABI is tried first, so its names win over the built-in ERC-20's)
    user_abi: list[dict[str, Any]] = [
        {
            "type": "event",
            "name": "Transfer",
            "anonymous": False,
            "inputs": [
                {"name": "src", "type": "address", "indexed": True},
                {"name": "dst", "type": "address", "indexed": True},
                {"name": "wad", "type": "uint256", "indexed": False},
            ],
        }
    ]
    path = tmp_path / "mytoken.json"
    path.write_text(json.dumps({"abi": user_abi}))
    monkeypatch.setenv("LUDEX_STORE_URL", f"sqlite:///{tmp_path}/cli.db")
    args = [
        "index",
        "--rpc",
        node_url,
        "--from",
        "0",
        "--no-progress",
        "--abi",
        str(path),
        "--abi-address",
        f"mytoken={token.address}",
    ]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["decoded_events"] >= 2
    assert 0.0 <= summary["abi_cache_hit_rate"] <= 1.0
    from ludex.adapters.sql import create_store

    s = create_store(f"sqlite:///{tmp_path}/cli.db")
    await s.start()
    try:
        events = await decoded(s)
    finally:
        await s.close()
    transfers = [e for _, e in events if e.address == token.address.lower()]
    assert {e.abi for e in transfers} == {"mytoken"}
    assert [e.args["wad"] for e in transfers] == [str(2**60), str(2**60 - 7)]
    assert transfers[1].args == {
        "src": alice.address.lower(),
        "dst": bob.lower(),
        "wad": str(2**60 - 7),
    }


async def test_a_bad_abi_file_is_refused_with_exit_code_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from ludex.cli import app

    path = tmp_path / "bad.json"
    path.write_text('{"no": "abi"}')
    monkeypatch.setenv("LUDEX_STORE_URL", f"sqlite:///{tmp_path}/cli.db")
    args = ["index", "--rpc", "http://127.0.0.1:1", "--abi", str(path)]
    result = await asyncio.to_thread(CliRunner().invoke, app, args)
    assert result.exit_code == 2
    assert "abi" in result.output.lower()
