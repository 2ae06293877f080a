"""Token transfers from logs: the standards told apart, and impostor logs skipped and counted.

Pure: logs are built here (eth-abi encodes the data). The real-chain comparison is in
test_parse.py (``test_transfers_are_what_the_chain_did``).
"""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode

from ludex.indexer.model import Log, TokenStandard
from ludex.indexer.parse import bundle
from ludex.indexer.tokens import (
    TRANSFER_BATCH_TOPIC,
    TRANSFER_SINGLE_TOPIC,
    TRANSFER_TOPIC,
    decode_transfers,
    token_transfers,
)

TOKEN = "0x" + "aa" * 20
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20
OPERATOR = "0x" + "0e" * 20
ZERO = "0x" + "00" * 20
BLOCK_HASH = "0x" + "bb" * 32
TX_HASH = "0x" + "cc" * 32


def topic(address_or_int: str | int) -> str:
    if isinstance(address_or_int, int):
        return "0x" + address_or_int.to_bytes(32, "big").hex()
    return "0x" + "00" * 12 + address_or_int[2:]


def log(topics: list[str], data: bytes = b"", index: int = 0) -> Log:
    return Log(1, 10, BLOCK_HASH, TX_HASH, 0, index, TOKEN, tuple(topics), data)


def erc20(sender: str, recipient: str, value: int) -> Log:
    return log([TRANSFER_TOPIC, topic(sender), topic(recipient)], encode(["uint256"], [value]))


def test_erc20_and_erc721_are_told_apart_by_topic_count() -> None:
    fungible = decode_transfers(erc20(ALICE, BOB, 2**200))
    nft = decode_transfers(log([TRANSFER_TOPIC, topic(ALICE), topic(BOB), topic(2**255 + 7)]))
    assert fungible is not None
    assert nft is not None
    [f], [n] = fungible, nft
    assert (f.standard, f.sender, f.recipient, f.token_id, f.amount) == (
        TokenStandard.ERC20,
        ALICE,
        BOB,
        None,
        2**200,
    )
    assert (n.standard, n.sender, n.recipient, n.token_id, n.amount) == (
        TokenStandard.ERC721,
        ALICE,
        BOB,
        2**255 + 7,
        1,
    )
    assert f.token == n.token == TOKEN
    assert f.operator is None
    assert f.batch_index == 0


def test_mints_and_burns_are_transfers_from_and_to_zero() -> None:
    found = token_transfers([erc20(ZERO, ALICE, 5), erc20(ALICE, ZERO, 2)])
    assert [(t.sender, t.recipient, t.amount) for t in found.transfers] == [
        (ZERO, ALICE, 5),
        (ALICE, ZERO, 2),
    ]
    assert found.skipped == 0


def test_erc1155_single_and_batch() -> None:
    head = [topic(OPERATOR), topic(ZERO), topic(BOB)]
    single = log([TRANSFER_SINGLE_TOPIC, *head], encode(["uint256", "uint256"], [9, 40]), 3)
    batch = log(
        [TRANSFER_BATCH_TOPIC, *head],
        encode(["uint256[]", "uint256[]"], [[1, 2, 3], [10, 20, 30]]),
        4,
    )
    empty = log([TRANSFER_BATCH_TOPIC, *head], encode(["uint256[]", "uint256[]"], [[], []]), 5)
    found = token_transfers([single, batch, empty])
    assert found.skipped == 0
    assert [
        (t.log_index, t.batch_index, t.standard, t.operator, t.token_id, t.amount)
        for t in found.transfers
    ] == [
        (3, 0, TokenStandard.ERC1155, OPERATOR, 9, 40),
        (4, 0, TokenStandard.ERC1155, OPERATOR, 1, 10),
        (4, 1, TokenStandard.ERC1155, OPERATOR, 2, 20),
        (4, 2, TokenStandard.ERC1155, OPERATOR, 3, 30),
    ]
    assert {(t.sender, t.recipient) for t in found.transfers} == {(ZERO, BOB)}


DIRTY = "0x" + "ff" * 12 + ALICE[2:]
HEAD_1155 = [topic(OPERATOR), topic(ALICE), topic(BOB)]
IMPOSTORS: dict[str, Log] = {
    "erc20 short data": log([TRANSFER_TOPIC, topic(ALICE), topic(BOB)], b"\x01" * 16),
    "erc20 long data": log([TRANSFER_TOPIC, topic(ALICE), topic(BOB)], b"\x01" * 64),
    "transfer with one topic": log(
        [TRANSFER_TOPIC], encode(["address", "address", "uint256"], [ALICE, BOB, 1])
    ),
    "transfer with two topics": log([TRANSFER_TOPIC, topic(ALICE)], b"\x00" * 32),
    "erc721 with data": log([TRANSFER_TOPIC, topic(ALICE), topic(BOB), topic(1)], b"\x00" * 32),
    "dirty address padding": log([TRANSFER_TOPIC, DIRTY, topic(BOB)], b"\x00" * 32),
    "single short data": log([TRANSFER_SINGLE_TOPIC, *HEAD_1155], b"\x00" * 32),
    "single three topics": log([TRANSFER_SINGLE_TOPIC, *HEAD_1155[:2]], b"\x00" * 64),
    "batch length mismatch": log(
        [TRANSFER_BATCH_TOPIC, *HEAD_1155],
        encode(["uint256[]", "uint256[]"], [[1, 2], [5]]),
    ),
    "batch bad pointer": log(
        [TRANSFER_BATCH_TOPIC, *HEAD_1155], (2**64).to_bytes(32, "big") + b"\x00" * 64
    ),
    "batch huge length": log(
        [TRANSFER_BATCH_TOPIC, *HEAD_1155],
        encode(["uint256", "uint256"], [64, 96]) + (2**200).to_bytes(32, "big") + b"\x00" * 32,
    ),
    "batch empty data": log([TRANSFER_BATCH_TOPIC, *HEAD_1155]),
}


@pytest.mark.parametrize("name", sorted(IMPOSTORS))
def test_a_log_that_claims_a_standard_but_does_not_decode_is_skipped(name: str) -> None:
    good = erc20(ALICE, BOB, 1)
    assert decode_transfers(IMPOSTORS[name]) is None
    found = token_transfers([good, IMPOSTORS[name], good])
    assert (len(found.transfers), found.skipped) == (2, 1)


def test_other_logs_are_neither_transfers_nor_skipped() -> None:
    approval = "0x8c5be1e5ebec7d5bd14f71427d1e84f3dd0314c0f7b2291e5b200ac8c7c3b925"
    found = token_transfers([log([approval, topic(ALICE), topic(BOB)], b"\x00" * 32), log([])])
    assert found.transfers == ()
    assert found.skipped == 0


def _raw_log(index: int, topics: list[str], data: bytes) -> dict[str, Any]:
    return {
        "address": TOKEN,
        "topics": topics,
        "data": "0x" + data.hex(),
        "blockHash": BLOCK_HASH,
        "blockNumber": "0xa",
        "transactionHash": TX_HASH,
        "transactionIndex": "0x0",
        "logIndex": hex(index),
        "removed": False,
    }


def test_bundle_counts_skipped_token_logs_and_keeps_the_good_ones() -> None:
    sender = "0x" + "5e" * 20
    raw_block = {
        "number": "0xa",
        "hash": BLOCK_HASH,
        "parentHash": "0x" + "99" * 32,
        "timestamp": "0x64",
        "miner": ZERO,
        "gasUsed": "0x5208",
        "gasLimit": "0x1c9c380",
        "transactions": [
            {
                "hash": TX_HASH,
                "blockHash": BLOCK_HASH,
                "blockNumber": "0xa",
                "transactionIndex": "0x0",
                "from": sender,
                "to": TOKEN,
                "value": "0x0",
                "nonce": "0x0",
                "gas": "0x5208",
                "gasPrice": "0x1",
                "input": "0x",
            }
        ],
    }
    receipts = [
        {
            "transactionHash": TX_HASH,
            "transactionIndex": "0x0",
            "blockHash": BLOCK_HASH,
            "blockNumber": "0xa",
            "from": sender,
            "status": "0x1",
            "gasUsed": "0x5208",
            "contractAddress": None,
            "logs": [
                _raw_log(0, [TRANSFER_TOPIC, topic(ALICE), topic(BOB)], b"\x01" * 16),
                _raw_log(1, [TRANSFER_TOPIC, topic(ALICE), topic(BOB)], encode(["uint256"], [3])),
            ],
        }
    ]
    got = bundle(1, raw_block, receipts)  # pre-London, no type, no effectiveGasPrice
    assert got.skipped_token_logs == 1
    assert [(t.log_index, t.amount) for t in got.transfers] == [(1, 3)]
    assert got.block.base_fee_per_gas is None
    assert (got.transactions[0].type, got.receipts[0].effective_gas_price) == (0, 1)
