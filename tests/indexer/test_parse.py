"""bundle(): a generated anvil chain read back field by field, and malformed answers refused.

The chain comes from ``parse_chain.generate`` on an anvil of this module's own. Every
block's ``eth_getBlockByNumber(n, true)`` and ``eth_getBlockReceipts(n)`` answers go
through :func:`bundle`, and each record is compared with the raw answer it came from
(an independent reading: ``int(x, 16)`` and ``.lower()``), the transfers with what the
generator did. Then one block is corrupted in many ways, each refused with a message
that names the block and the field.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ludex.errors import ChainError
from ludex.indexer.model import BlockBundle
from ludex.indexer.parse import bundle
from tests.chain.vault_env import anvil_node
from tests.indexer.parse_chain import Generated, generate, rpc

Raw = tuple[dict[str, Any], list[dict[str, Any]]]


@pytest.fixture(scope="module")
def generated() -> Iterator[Generated]:
    with anvil_node() as url:
        yield asyncio.run(generate(url))


@pytest.fixture(scope="module")
def bundles(generated: Generated) -> dict[int, BlockBundle]:
    return {n: bundle(generated.chain_id, *raw) for n, raw in generated.raw.items()}


def q(value: str | None) -> int | None:
    return None if value is None else int(value, 16)


def test_every_block_matches_the_node(
    generated: Generated, bundles: dict[int, BlockBundle]
) -> None:
    assert generated.head + 1 == len(generated.raw) == 20  # genesis and 19 blocks
    chain_id = generated.chain_id
    for number, (raw_block, raw_receipts) in generated.raw.items():
        got = bundles[number]
        block = got.block
        assert (block.chain_id, block.number, block.hash, block.parent_hash) == (
            chain_id,
            number,
            raw_block["hash"].lower(),
            raw_block["parentHash"].lower(),
        )
        assert block.timestamp == q(raw_block["timestamp"])
        assert block.miner == raw_block["miner"].lower()
        assert block.gas_used == q(raw_block["gasUsed"])
        assert block.gas_limit == q(raw_block["gasLimit"])
        assert block.base_fee_per_gas == q(raw_block["baseFeePerGas"]) is not None
        assert block.transaction_count == len(raw_block["transactions"]) == len(got.transactions)

        assert len(got.receipts) == len(raw_receipts)
        raw_logs = [entry for r in raw_receipts for entry in r["logs"]]
        assert len(got.logs) == len(raw_logs)
        for index, (tx, raw) in enumerate(
            zip(got.transactions, raw_block["transactions"], strict=True)
        ):
            assert (tx.chain_id, tx.hash, tx.block_number, tx.block_hash, tx.index) == (
                chain_id,
                raw["hash"].lower(),
                number,
                block.hash,
                index,
            )
            assert tx.sender == raw["from"].lower()
            assert tx.to == (raw["to"].lower() if raw["to"] else None)
            assert (tx.value, tx.nonce, tx.gas, tx.type) == (
                q(raw["value"]),
                q(raw["nonce"]),
                q(raw["gas"]),
                q(raw["type"]),
            )
            assert tx.gas_price == q(raw.get("gasPrice"))
            assert tx.max_fee_per_gas == q(raw.get("maxFeePerGas"))
            assert tx.max_priority_fee_per_gas == q(raw.get("maxPriorityFeePerGas"))
            assert tx.input == bytes.fromhex(raw["input"][2:])
        for index, (receipt, raw) in enumerate(zip(got.receipts, raw_receipts, strict=True)):
            assert (receipt.transaction_hash, receipt.index, receipt.block_hash) == (
                raw["transactionHash"].lower(),
                index,
                raw["blockHash"].lower(),
            )
            assert receipt.block_number == q(raw["blockNumber"]) == number
            assert receipt.status == q(raw["status"]) == 1
            assert receipt.gas_used == q(raw["gasUsed"])
            assert receipt.effective_gas_price == q(raw["effectiveGasPrice"])
            address = raw["contractAddress"]
            assert receipt.contract_address == (address.lower() if address else None)
        for log, raw in zip(got.logs, raw_logs, strict=True):
            assert (log.chain_id, log.block_number, log.block_hash) == (
                chain_id,
                number,
                block.hash,
            )
            assert log.transaction_hash == raw["transactionHash"].lower()
            assert log.transaction_index == q(raw["transactionIndex"])
            assert log.log_index == q(raw["logIndex"])
            assert log.address == raw["address"].lower()
            assert log.topics == tuple(t.lower() for t in raw["topics"])
            assert log.data == bytes.fromhex(raw["data"][2:])
        assert got.skipped_token_logs == 0


def test_transfers_are_what_the_chain_did(
    generated: Generated, bundles: dict[int, BlockBundle]
) -> None:
    found = [
        (t.standard.value, t.token, t.operator, t.sender, t.recipient, t.token_id, t.amount)
        for n in sorted(bundles)
        for t in bundles[n].transfers
    ]
    assert found == generated.transfers
    batch = bundles[generated.blocks["multi_batch"]].transfers
    assert [t.batch_index for t in batch] == [0, 1]
    assert len({t.log_index for t in batch}) == 1
    for n, got in bundles.items():
        for transfer in got.transfers:
            log = next(log for log in got.logs if log.log_index == transfer.log_index)
            assert (transfer.block_number, transfer.block_hash) == (n, got.block.hash)
            assert transfer.transaction_hash == log.transaction_hash
            assert transfer.token == log.address


def test_contract_creations_come_from_receipts(
    generated: Generated, bundles: dict[int, BlockBundle]
) -> None:
    found = {
        (c.address, c.creator, c.transaction_hash, c.block_number, c.via)
        for got in bundles.values()
        for c in got.contracts
    }
    expected = {
        (
            address,
            generated.creators[name],
            generated.tx[f"{label}_deploy"],
            generated.blocks[f"{label}_deploy"],
            "receipt",
        )
        for name, address, label in (
            ("TestToken", generated.contracts["TestToken"], "token"),
            ("TestNFT", generated.contracts["TestNFT"], "nft"),
            ("TestMulti", generated.contracts["TestMulti"], "multi"),
            ("Ludex", generated.contracts["Ludex"], "ludex"),
        )
    }
    assert found == expected


def test_transaction_types(generated: Generated, bundles: dict[int, BlockBundle]) -> None:
    def tx(label: str) -> Any:
        got = bundles[generated.blocks[label]]
        return next(t for t in got.transactions if t.hash == generated.tx[label])

    legacy, access, dynamic = tx("legacy"), tx("eip2930"), tx("native")
    assert (legacy.type, legacy.gas_price, legacy.max_fee_per_gas) == (0, 3 * 10**9, None)
    assert (access.type, access.gas_price, access.max_fee_per_gas) == (1, 3 * 10**9, None)
    assert dynamic.type == 2
    assert dynamic.max_fee_per_gas is not None
    assert dynamic.max_priority_fee_per_gas is not None
    assert tx("token_deploy").to is None


def test_a_block_of_several_transactions(
    generated: Generated, bundles: dict[int, BlockBundle]
) -> None:
    got = bundles[generated.blocks["multi_a"]]
    assert [t.hash for t in got.transactions] == [generated.tx[f"multi_{x}"] for x in "abcd"]
    assert [log.log_index for log in got.logs] == list(range(len(got.logs))) != []
    assert [log.transaction_index for log in got.logs] == [0, 1, 2]
    assert len(got.transfers) == 3


def _typed(generated: Generated, kind: str, extra: dict[str, Any]) -> Raw:
    """The several-transaction block with its first transaction dressed as another type."""
    raw_block, raw_receipts = copy.deepcopy(generated.raw[generated.blocks["multi_a"]])
    raw_block["transactions"][0].update(type=kind, **extra)
    raw_receipts[0]["type"] = kind
    return raw_block, raw_receipts


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("0x3", {"maxFeePerBlobGas": "0x1", "blobVersionedHashes": ["0x01" + "00" * 31]}),
        ("0x4", {"authorizationList": [{"chainId": "0x7a69", "address": "0x" + "11" * 20}]}),
    ],
)
def test_blob_and_set_code_transactions_parse(
    generated: Generated, kind: str, extra: dict[str, Any]
) -> None:
    got = bundle(generated.chain_id, *_typed(generated, kind, extra))
    assert got.transactions[0].type == int(kind, 16)
    assert got.transactions[0].max_fee_per_gas is not None


def test_pre_london_block_on_a_berlin_node() -> None:
    with anvil_node("--hardfork", "berlin") as url:
        sender = rpc(url, "eth_accounts", [])[0]
        tx_hash = rpc(
            url,
            "eth_sendTransaction",
            [{"from": sender, "to": "0x" + "22" * 20, "value": "0x5", "gasPrice": "0x3b9aca00"}],
        )
        number = int(rpc(url, "eth_getTransactionReceipt", [tx_hash])["blockNumber"], 16)
        raw_block = rpc(url, "eth_getBlockByNumber", [hex(number), True])
        raw_receipts = rpc(url, "eth_getBlockReceipts", [hex(number)])
        chain_id = int(rpc(url, "eth_chainId", []), 16)
    assert "baseFeePerGas" not in raw_block
    got = bundle(chain_id, raw_block, raw_receipts)
    assert got.block.base_fee_per_gas is None
    assert got.transactions[0].hash == tx_hash.lower()
    assert got.transactions[0].gas_price == 10**9
    assert got.receipts[0].effective_gas_price == 10**9


def test_effective_gas_price_is_derived_when_the_node_omits_it(generated: Generated) -> None:
    raw_block, raw_receipts = copy.deepcopy(generated.raw[generated.blocks["multi_a"]])
    expected = [int(r.pop("effectiveGasPrice"), 16) for r in raw_receipts]
    got = bundle(generated.chain_id, raw_block, raw_receipts)
    assert [r.effective_gas_price for r in got.receipts] == expected


def _set(path: tuple[Any, ...], value: Any) -> Callable[[Raw], None]:
    def corrupt(raw: Raw) -> None:
        target: Any = raw
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return corrupt


def _delete(path: tuple[Any, ...]) -> Callable[[Raw], None]:
    def corrupt(raw: Raw) -> None:
        target: Any = raw
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return corrupt


def _swap(which: int) -> Callable[[Raw], None]:
    def corrupt(raw: Raw) -> None:
        items = raw[0]["transactions"] if which == 0 else raw[1]
        items[0], items[1] = items[1], items[0]

    return corrupt


def _as_hashes(raw: Raw) -> None:
    raw[0]["transactions"] = [t["hash"] for t in raw[0]["transactions"]]


def _drop_receipt(raw: Raw) -> None:
    raw[1].pop()


def _second_log_reuses_index(raw: Raw) -> None:
    raw[1][1]["logs"][0]["logIndex"] = raw[1][0]["logs"][0]["logIndex"]


OTHER_HASH = "0x" + "ab" * 32
OTHER_ADDRESS = "0x" + "cd" * 20
CORRUPTIONS: dict[str, tuple[Callable[[Raw], None], str]] = {
    "block hash short": (_set((0, "hash"), "0x1234"), r"hash: expected a 32-byte 0x-hex hash"),
    "block number missing": (_delete((0, "number")), r"block \(no number\): number: is missing"),
    "gasUsed decimal": (_set((0, "gasUsed"), "21000"), r"gasUsed: expected a 0x-hex quantity"),
    "gasLimit underscore": (_set((0, "gasLimit"), "0x_1"), r"gasLimit: expected a 0x-hex"),
    "timestamp int": (_set((0, "timestamp"), 1700000000), r"timestamp: expected a 0x-hex"),
    "miner 19 bytes": (_set((0, "miner"), "0x" + "00" * 19), r"miner: expected a 20-byte"),
    "transactions as hashes": (_as_hashes, r"transactions\[0\] is a hash, not a transaction"),
    "transactions null": (_set((0, "transactions"), None), r"transactions: is null"),
    "tx block hash": (
        _set((0, "transactions", 1, "blockHash"), OTHER_HASH),
        r"transaction 1 \(0x[0-9a-f]{64}\): blockHash: .* differs from the block's hash",
    ),
    "tx block number": (
        _set((0, "transactions", 0, "blockNumber"), "0x1"),
        r"transaction 0 .*: blockNumber: 1 differs from the block's number",
    ),
    "tx order": (_swap(0), r"transaction 0 .*: transactionIndex: 1 differs from the position"),
    "tx chain id": (_set((0, "transactions", 0, "chainId"), "0x1"), r"chainId: 1 differs"),
    "tx from null": (
        _set((0, "transactions", 2, "from"), None),
        r"transaction 2 .*: from: is null",
    ),
    "tx input odd": (
        _set((0, "transactions", 0, "input"), "0xabc"),
        r"input: expected 0x-hex data",
    ),
    "receipt missing": (_drop_receipt, r"receipts: 3 receipts for 4 transactions"),
    "receipts not a list": (lambda raw: None, r"receipts: expected a list"),
    "receipt order": (
        _swap(1),
        r"receipt 0 .*: transactionHash: .* differs from the transaction's",
    ),
    "receipt block hash": (
        _set((1, 2, "blockHash"), OTHER_HASH),
        r"receipt 2 .*: blockHash: .* differs from the block's hash",
    ),
    "receipt from": (_set((1, 0, "from"), OTHER_ADDRESS), r"receipt 0 .*: from: .* differs"),
    "receipt status": (_set((1, 0, "status"), "0x2"), r"status: expected 0x0 or 0x1"),
    "receipt contract on a call": (
        _set((1, 0, "contractAddress"), OTHER_ADDRESS),
        r"contractAddress: is set but the transaction calls 0x",
    ),
    "log block hash": (
        _set((1, 1, "logs", 0, "blockHash"), OTHER_HASH),
        r"log 1 \(receipt 1\): blockHash: .* differs from the block's hash",
    ),
    "log block number": (
        _set((1, 0, "logs", 0, "blockNumber"), "0x999"),
        r"log 0 \(receipt 0\): blockNumber: 2457 differs",
    ),
    "log tx hash": (
        _set((1, 2, "logs", 0, "transactionHash"), OTHER_HASH),
        r"log 2 \(receipt 2\): transactionHash: .* differs from the receipt's tx hash",
    ),
    "log tx index": (
        _set((1, 1, "logs", 0, "transactionIndex"), "0x0"),
        r"log 1 \(receipt 1\): transactionIndex: 0 differs",
    ),
    "log index repeated": (_second_log_reuses_index, r"logIndex: 0 is not above .* index 0"),
    "log removed": (_set((1, 0, "logs", 0, "removed"), True), r"removed: the log is marked"),
    "log topic short": (_set((1, 0, "logs", 0, "topics", 1), "0x00"), r"topics\[1\]: expected"),
    "log five topics": (_set((1, 0, "logs", 0, "topics"), [OTHER_HASH] * 5), r"5 topics"),
    "log data not hex": (_set((1, 0, "logs", 0, "data"), "0xzz"), r"data: expected 0x-hex"),
    "log address": (_set((1, 0, "logs", 0, "address"), "0x1234"), r"address: expected a 20"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_corrupted_answers_are_refused(generated: Generated, name: str) -> None:
    corrupt, message = CORRUPTIONS[name]
    number = generated.blocks["multi_a"]
    raw: Raw = copy.deepcopy(generated.raw[number])
    bundle(generated.chain_id, *raw)  # the original is fine
    corrupt(raw)
    receipts: Any = {"not": "a list"} if name == "receipts not a list" else raw[1]
    with pytest.raises(ChainError, match=message) as caught:
        bundle(generated.chain_id, raw[0], receipts)
    text = str(caught.value)
    assert text.startswith("block "), text
    if name != "block number missing":
        assert text.startswith(f"block {number}"), text


def test_a_block_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ChainError, match="block: expected a JSON object, got NoneType"):
        bundle(1, None, [])  # type: ignore[arg-type]
