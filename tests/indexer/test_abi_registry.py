"""The ABI registry on real logs and calls: Ludex events and calls, token standards told
apart, user ABI files (good and malformed), address binding, and the decoding cache."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.crypto import keccak

from ludex.chain.artifacts import available_artifacts, load_artifact
from ludex.errors import ChainError
from ludex.indexer.abi_registry import AbiRegistry, jsonable
from ludex.indexer.model import BlockBundle, Log
from ludex.indexer.parse import bundle
from tests.chain.vault_env import ETHER, anvil_node
from tests.indexer.parse_chain import ZERO, Generated, generate


@pytest.fixture(scope="module")
def generated() -> Iterator[Generated]:
    with anvil_node() as url:
        yield asyncio.run(generate(url))


@pytest.fixture(scope="module")
def bundles(generated: Generated) -> dict[int, BlockBundle]:
    return {n: bundle(generated.chain_id, *raw) for n, raw in generated.raw.items()}


def _logs(generated: Generated, bundles: dict[int, BlockBundle], label: str) -> list[Log]:
    got = bundles[generated.blocks[label]]
    return [log for log in got.logs if log.transaction_hash == generated.tx[label]]


def _input(generated: Generated, bundles: dict[int, BlockBundle], label: str) -> tuple[str, bytes]:
    got = bundles[generated.blocks[label]]
    tx = next(t for t in got.transactions if t.hash == generated.tx[label])
    assert tx.to is not None
    return tx.to, tx.input


def test_default_registry_knows_the_standards_and_the_project() -> None:
    registry = AbiRegistry.default()
    assert registry.names[:3] == ["erc20", "erc721", "erc1155"]
    assert set(registry.names[3:]) == set(available_artifacts())
    assert {"Ludex", "TestToken", "TestNFT", "TestMulti"} <= set(registry.names)


def test_ludex_events_and_calls(generated: Generated, bundles: dict[int, BlockBundle]) -> None:
    registry = AbiRegistry.default()
    [deposited] = [registry.decode_log(log) for log in _logs(generated, bundles, "deposit")]
    assert deposited is not None
    assert (deposited.abi, deposited.event) == ("Ludex", "Deposited")
    assert deposited.signature == "Deposited(address,address,uint256)"
    assert deposited.args["token"] == ZERO
    assert deposited.args["amount"] == 2 * ETHER
    assert deposited.address == generated.contracts["Ludex"]
    player = deposited.args["player"]

    events = [registry.decode_log(log) for log in _logs(generated, bundles, "deposit_token")]
    assert [(e.abi, e.event) for e in events if e] == [
        ("erc20", "Transfer"),
        ("Ludex", "Deposited"),
    ]
    assert events[1] is not None
    assert events[1].args == {
        "player": player,
        "token": generated.contracts["TestToken"],
        "amount": 100,
    }

    to, data = _input(generated, bundles, "deposit")
    call = registry.decode_call(to, data)
    assert call is not None
    assert (call.abi, call.function, call.args) == ("Ludex", "deposit", {})
    assert call.selector == "0x" + keccak(text="deposit()")[:4].hex()
    to, data = _input(generated, bundles, "deposit_token")
    call = registry.decode_call(to, data)
    assert call is not None
    assert call.function == "depositToken"
    assert list(call.args.values()) == [generated.contracts["TestToken"], 100]


def test_token_standards_by_indexed_count(
    generated: Generated, bundles: dict[int, BlockBundle]
) -> None:
    registry = AbiRegistry.default()
    [fungible] = _logs(generated, bundles, "token_transfer")
    [nft] = _logs(generated, bundles, "nft_transfer")
    [batch] = _logs(generated, bundles, "multi_batch")
    a, b, c = (registry.decode_log(x) for x in (fungible, nft, batch))
    assert a is not None
    assert (a.abi, set(a.args)) == ("erc20", {"from", "to", "value"})
    assert a.args["value"] == 300
    assert b is not None
    assert (b.abi, b.args["tokenId"]) == ("erc721", 7)
    assert c is not None
    assert (c.event, c.args["ids"], c.args["values"]) == (
        "TransferBatch",
        (2, 3),
        (1, 2),
    )
    # Bound to its own ABI, the token's logs name it.
    registry.bind(generated.contracts["TestToken"].upper().replace("0X", "0x"), "TestToken")
    bound = registry.decode_log(fungible)
    assert bound is not None
    assert bound.abi == "TestToken"


def test_overloaded_functions_decode_by_selector() -> None:
    registry = AbiRegistry.default()
    nft = "0x" + "12" * 20
    alice, bob = "0x" + "a1" * 20, "0x" + "b0" * 20
    three = keccak(text="safeTransferFrom(address,address,uint256)")[:4]
    four = keccak(text="safeTransferFrom(address,address,uint256,bytes)")[:4]
    first = registry.decode_call(
        nft, three + encode(["address", "address", "uint256"], [alice, bob, 5])
    )
    second = registry.decode_call(
        nft, four + encode(["address", "address", "uint256", "bytes"], [alice, bob, 5, b"hi"])
    )
    assert first is not None
    assert first.args == {"from": alice, "to": bob, "tokenId": 5}
    assert second is not None
    assert second.args["data"] == b"hi"
    assert jsonable(second.args)["data"] == "0x6869"
    assert registry.decode_call(nft, b"\x00\x00\x00\x00" + b"\x00" * 32) is None
    assert registry.decode_call(nft, three[:3]) is None
    assert registry.decode_call(None, three) is None
    assert registry.decode_call(nft, three + b"\x01") is None  # the selector, no valid arguments


def test_a_user_abi_file_bound_to_an_address_comes_first(
    generated: Generated, bundles: dict[int, BlockBundle], tmp_path: Path
) -> None:
    renamed = {
        "type": "event",
        "name": "Deposited",
        "anonymous": False,
        "inputs": [
            {"name": "who", "type": "address", "indexed": True},
            {"name": "asset", "type": "address", "indexed": True},
            {"name": "wei", "type": "uint256", "indexed": False},
        ],
    }
    artifact = tmp_path / "Vault.json"
    artifact.write_text(json.dumps({"contractName": "Vault", "abi": [renamed]}))
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps([renamed]))
    [log] = _logs(generated, bundles, "deposit")

    registry = AbiRegistry.default()
    assert registry.add_file(bare) == "bare"  # unbound: Ludex was added first and wins
    first = registry.decode_log(log)
    assert first is not None
    assert first.abi == "Ludex"
    name = registry.add_file(artifact, addresses=[generated.contracts["Ludex"]])
    decoded = registry.decode_log(log)
    assert decoded is not None
    assert (name, decoded.abi) == ("Vault", "Vault")
    assert decoded.args == {"who": first.args["player"], "asset": ZERO, "wei": 2 * ETHER}

    only_user = AbiRegistry()
    only_user.add_file(artifact, name="mine")
    assert (only_user.decode_log(log) or pytest.fail("not decoded")).abi == "mine"
    [fungible] = _logs(generated, bundles, "token_transfer")
    assert only_user.decode_log(fungible) is None


BAD_FILES: dict[str, tuple[str, str]] = {
    "not json": ("{abi: [", "not valid JSON"),
    "object without abi": ('{"contractName": "X"}', 'without an "abi" key'),
    "abi not a list": ('{"abi": {"type": "event"}}', "the ABI is a dict, not a list"),
    "item not an object": ("[1]", "item 0 is not an object"),
    "event without name": ('[{"type": "event", "inputs": []}]', "item 0 \\(event\\) has no name"),
    "unknown type": (
        '[{"type": "function", "name": "f", "inputs": [{"name": "x", "type": "uint257"}]}]',
        "function f: input 0 has an unknown type 'uint257'",
    ),
    "input without type": (
        '[{"type": "event", "name": "E", "inputs": [{"name": "x"}]}]',
        "event E: input 0 has no type",
    ),
    "four indexed": (
        json.dumps(
            [
                {
                    "type": "event",
                    "name": "E",
                    "inputs": [
                        {"name": f"x{i}", "type": "uint8", "indexed": True} for i in range(4)
                    ],
                }
            ]
        ),
        "event E has 4 indexed inputs",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_malformed_abi_file_is_refused_clearly(name: str, tmp_path: Path) -> None:
    text, message = BAD_FILES[name]
    path = tmp_path / "user.json"
    path.write_text(text)
    registry = AbiRegistry()
    with pytest.raises(ChainError, match=message) as caught:
        registry.add_file(path)
    assert str(path) in str(caught.value)
    assert registry.names == []


def test_missing_file_and_bad_binding() -> None:
    registry = AbiRegistry()
    with pytest.raises(ChainError, match="cannot read it"):
        registry.add_file(Path("/nonexistent/abi.json"))
    with pytest.raises(ChainError, match="no ABI named 'nope'"):
        registry.bind("0x" + "11" * 20, "nope")
    with pytest.raises(ChainError, match="is not a 20-byte"):
        registry.add("x", [], addresses=["0x1234"])


def test_repeated_decodes_hit_the_cache(
    generated: Generated, bundles: dict[int, BlockBundle]
) -> None:
    registry = AbiRegistry.default()
    logs = [log for n in sorted(bundles) for log in bundles[n].logs]
    calls: list[tuple[Any, bytes]] = [
        (tx.to, tx.input) for n in sorted(bundles) for tx in bundles[n].transactions
    ]
    assert len(logs) >= 15
    assert len(calls) >= 20
    first = [registry.decode_log(log) for log in logs] + [registry.decode_call(*c) for c in calls]
    lookups = len(logs) + sum(1 for to, data in calls if to is not None and len(data) >= 4)
    assert (registry.hits, registry.misses) == (0, lookups)
    assert registry.hit_rate == 0.0
    second = [registry.decode_log(log) for log in logs] + [registry.decode_call(*c) for c in calls]
    assert second == first
    assert (registry.hits, registry.misses) == (lookups, lookups)
    assert registry.hit_rate == 0.5
    assert sum(1 for d in first if d is not None) >= len(logs)  # every log here is known

    # The same event at another log index is a hit, and says where it is.
    moved = Log(**{**{f: getattr(logs[0], f) for f in logs[0].__slots__}, "log_index": 999})
    again = registry.decode_log(moved)
    assert again is not None
    assert again.log_index == 999
    assert registry.hits == lookups + 1


def test_the_cache_is_bounded() -> None:
    registry = AbiRegistry(cache_size=2)
    registry.add("erc20", load_artifact("TestToken").abi)
    transfer = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
    words = ["0x" + "00" * 12 + f"{i:040x}" for i in range(3)]
    logs = [
        Log(
            1,
            1,
            "0x" + "bb" * 32,
            "0x" + "cc" * 32,
            0,
            i,
            "0x" + "aa" * 20,
            (transfer, words[i], words[0]),
            encode(["uint256"], [i]),
        )
        for i in range(3)
    ]
    for log in logs:
        registry.decode_log(log)
    registry.decode_log(logs[2])
    registry.decode_log(logs[0])  # evicted by the third: a miss
    assert (registry.hits, registry.misses) == (1, 4)
