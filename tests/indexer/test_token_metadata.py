"""Token metadata: the decoders on hand-made answers, the reader on a fake node (reverts,
bytes32, garbage, the cache), and the pipeline on anvil nodes of this module's own (a
generated chain backfilled into ``idx_tokens``; a reorg that orphans a token)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from eth_abi.abi import encode
from sqlalchemy import select

from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.tables import idx_tokens
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import deploy
from ludex.errors import BackendUnavailable, ChainRpcError
from ludex.indexer.model import TokenStandard
from ludex.indexer.pipeline import Indexer
from ludex.indexer.source import RpcSource
from ludex.indexer.token_metadata import (
    SELECTORS,
    SYMBOL_LENGTH,
    SeenToken,
    TokenMetadata,
    TokenMetadataReader,
    decode_decimals,
    decode_text,
)
from tests.chain.vault_env import funded
from tests.indexer.parse_chain import generate

CHAIN_ID = 31337


def hexed(data: bytes) -> str:
    return "0x" + data.hex()


def abi_string(text: str) -> str:
    return hexed(encode(["string"], [text]))


def bytes32(text: str) -> str:
    return hexed(text.encode().ljust(32, b"\x00"))


def uint(value: int) -> str:
    return hexed(value.to_bytes(32, "big"))


# --- decoders ----------------------------------------------------------------------


def test_decode_text_reads_abi_strings_and_bytes32() -> None:
    assert decode_text(abi_string("Maker")) == "Maker"
    assert decode_text(abi_string("")) == ""
    assert decode_text(abi_string("Ünïcödé ✓")) == "Ünïcödé ✓"
    assert decode_text(bytes32("MKR")) == "MKR"  # old tokens: bytes32, zero-padded
    assert decode_text(abi_string("a\x00b")) == "ab"  # NUL cannot be stored in PostgreSQL
    assert decode_text(abi_string("X" * 1000), SYMBOL_LENGTH) == "X" * SYMBOL_LENGTH


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "0x",  # no code at the address, or a fallback that returns nothing
        "0x1",  # odd length
        "0xzz",
        "not hex",
        17,
        hexed(b"\xff" * 32),  # a bytes32 that is not UTF-8
        hexed(b"\x01" * 33),  # neither a bytes32 nor an ABI string
        uint(32) + uint(1000)[2:],  # a string whose length runs past the data
        uint(5000) + uint(3)[2:] + "41" * 32,  # an offset outside the data
    ],
)
def test_decode_text_gives_none_for_anything_else(raw: object) -> None:
    assert decode_text(raw) is None


def test_decode_decimals() -> None:
    assert decode_decimals(uint(18)) == 18
    assert decode_decimals(uint(0)) == 0
    assert decode_decimals(uint(255)) == 255
    assert decode_decimals(uint(256)) is None
    assert decode_decimals(uint(2**255)) is None
    assert decode_decimals("0x12") is None
    assert decode_decimals("0x") is None
    assert decode_decimals(None) is None


# --- the reader on a fake node ------------------------------------------------------

REVERTING = "0x" + "aa" * 20
OLD = "0x" + "bb" * 20
NFT = "0x" + "cc" * 20
GARBAGE = "0x" + "dd" * 20
REVERT = ChainRpcError("eth_call: node error: execution reverted", code=3, data="0x")


class FakeNode:
    """Answers eth_call from a table; like RpcSource, a batch raises when any call fails."""

    def __init__(self, answers: dict[tuple[str, str], object]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str, str]] = []  # (to, selector, block)
        self.down = False

    async def call(self, method: str, params: list[Any]) -> Any:
        assert method == "eth_call"
        if self.down:
            raise BackendUnavailable("node unreachable")
        to, data, block = params[0]["to"], params[0]["data"], params[1]
        self.asked.append((to, data, block))
        answer = self.answers.get((to, data), REVERT)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        return [await self.call(method, params) for method, params in calls]


@pytest.fixture
def node() -> FakeNode:
    name, symbol, decimals = SELECTORS["name"], SELECTORS["symbol"], SELECTORS["decimals"]
    return FakeNode(
        {
            (OLD, name): bytes32("Maker"),
            (OLD, symbol): bytes32("MKR"),
            (OLD, decimals): uint(18),
            (NFT, name): abi_string("Kitties"),
            (NFT, symbol): abi_string("CK"),
            (GARBAGE, name): "0x",
            (GARBAGE, symbol): hexed(b"\xfe" * 40),
            (GARBAGE, decimals): uint(10**30),
            # REVERTING: every call reverts (the fake's default)
        }
    )


async def test_reverts_bytes32_and_garbage_give_fields_or_nulls(node: FakeNode) -> None:
    reader = TokenMetadataReader(node)
    tokens = [
        SeenToken(REVERTING, TokenStandard.ERC20, 5),
        SeenToken(OLD, TokenStandard.ERC20, 6),
        SeenToken(NFT, TokenStandard.ERC721, 7),
        SeenToken(GARBAGE, TokenStandard.ERC20, 8),
    ]
    got = await reader.read(CHAIN_ID, tokens, 9)
    assert got == [
        TokenMetadata(CHAIN_ID, REVERTING, TokenStandard.ERC20, None, None, None, 5),
        TokenMetadata(CHAIN_ID, OLD, TokenStandard.ERC20, "Maker", "MKR", 18, 6),
        TokenMetadata(CHAIN_ID, NFT, TokenStandard.ERC721, "Kitties", "CK", None, 7),
        TokenMetadata(CHAIN_ID, GARBAGE, TokenStandard.ERC20, None, None, None, 8),
    ]
    assert (NFT, SELECTORS["decimals"], "0x9") not in node.asked  # ERC-721: no decimals()
    assert {block for _, _, block in node.asked} == {"0x9"}  # at the range's last block

    # Cached: asked once per process, whatever the first block says.
    asked = len(node.asked)
    again = await reader.read(CHAIN_ID, [SeenToken(OLD, TokenStandard.ERC20, 40)], 41)
    assert again == [TokenMetadata(CHAIN_ID, OLD, TokenStandard.ERC20, "Maker", "MKR", 18, 40)]
    assert len(node.asked) == asked
    # Another chain is another token; forget() drops one chain's answers.
    await reader.read(CHAIN_ID + 1, [SeenToken(OLD, TokenStandard.ERC20, 1)], 1)
    assert len(node.asked) == asked + 3
    reader.forget(CHAIN_ID)
    await reader.read(CHAIN_ID, [SeenToken(OLD, TokenStandard.ERC20, 1)], 1)
    await reader.read(CHAIN_ID + 1, [SeenToken(OLD, TokenStandard.ERC20, 1)], 1)
    assert len(node.asked) == asked + 6


async def test_a_node_that_is_down_fails_the_read_instead_of_storing_nulls(
    node: FakeNode,
) -> None:
    node.down = True
    with pytest.raises(BackendUnavailable):
        await TokenMetadataReader(node).read(CHAIN_ID, [SeenToken(OLD, TokenStandard.ERC20, 1)], 1)


# --- the pipeline on anvil ----------------------------------------------------------


async def stored_tokens(store: SqlStore) -> dict[str, tuple[Any, ...]]:
    async with store.transaction() as session:
        rows = (await session.execute(select(idx_tokens))).all()
    return {
        r.address: (r.chain_id, r.standard, r.name, r.symbol, r.decimals, r.first_block)
        for r in rows
    }


async def test_backfill_stores_the_metadata_of_every_token(
    node_url: str, store: SqlStore, source: RpcSource
) -> None:
    chain = await generate(node_url)
    indexer = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=5)
    await indexer.backfill(0, chain.head)
    token, nft, multi = (chain.contracts[k] for k in ("TestToken", "TestNFT", "TestMulti"))
    assert await stored_tokens(store) == {
        token: (CHAIN_ID, "erc20", "Test", "TST", 18, chain.blocks["token_mint"]),
        nft: (CHAIN_ID, "erc721", "Nft", "NFT", None, chain.blocks["nft_mint"]),
        # TestMulti has no name() or symbol(): its calls revert on the node.
        multi: (CHAIN_ID, "erc1155", None, None, None, chain.blocks["multi_mint"]),
    }
    assert indexer.tokens is not None
    assert indexer.tokens.calls >= 3 + 2 + 2

    # Again, with a fresh process: the stored tokens are not read again, nothing changes.
    again = Indexer(store, source, chain_id=CHAIN_ID, batch_blocks=5)
    await again.backfill(0, chain.head, resume=False)
    assert again.tokens is not None
    assert again.tokens.calls == 0
    assert len(await stored_tokens(store)) == 3

    # A real revert (Ludex has no name()) and an address without code: NULLs, no error.
    seen = [
        SeenToken(chain.contracts["Ludex"], TokenStandard.ERC20, 1),
        SeenToken("0x" + "01" * 20, TokenStandard.ERC20, 1),
    ]
    got = await TokenMetadataReader(source).read(CHAIN_ID, seen, chain.head)
    assert [(t.name, t.symbol, t.decimals) for t in got] == [(None, None, None)] * 2


async def test_disabled_metadata_stores_no_token(
    node_url: str, store: SqlStore, source: RpcSource
) -> None:
    chain = JsonRpcChain(node_url)
    await chain.start()
    try:
        owner = await funded(chain)
        token, _ = await deploy(owner, load_artifact("TestToken"), "Test", "TST")
        await token.transact(owner, "mint", owner.address, 5)
    finally:
        await chain.close()
    indexer = Indexer(store, source, chain_id=CHAIN_ID, token_metadata=False)
    assert indexer.tokens is None
    await indexer.backfill(0, await source.head())
    assert await stored_tokens(store) == {}


async def test_a_reorg_removes_tokens_first_seen_on_the_orphaned_branch(
    node_url: str, store: SqlStore, source: RpcSource
) -> None:
    chain = JsonRpcChain(node_url)
    await chain.start()
    try:
        owner, deployer = await funded(chain), await funded(chain)
        kept, _ = await deploy(owner, load_artifact("TestToken"), "Kept", "KPT")
        await kept.transact(owner, "mint", owner.address, 5)
        indexer = Indexer(store, source, chain_id=CHAIN_ID)
        await indexer.step(start=0)
        base = await source.head()
        snapshot = await chain.call("evm_snapshot", [])

        # The old branch: a token deployed and minted, indexed.
        orphan, _ = await deploy(deployer, load_artifact("TestToken"), "Orphan", "ORP")
        await orphan.transact(deployer, "mint", deployer.address, 7)
        await indexer.step()
        stored = await stored_tokens(store)
        assert stored[orphan.address.lower()][2:4] == ("Orphan", "ORP")

        # The new branch, longer: the same deployer and nonce, so the same address,
        # holds another token.
        assert await chain.call("evm_revert", [snapshot]) is True
        fresh, _ = await deploy(deployer, load_artifact("TestToken"), "Fresh", "FRS")
        assert fresh.address == orphan.address
        await chain.call("anvil_mine", [hex(2)])
        await indexer.step()
        assert [r.ancestor for r in indexer.stats.reorgs] == [base]
        assert await stored_tokens(store) == {
            kept.address.lower(): stored[kept.address.lower()]
        }  # the orphaned token's row is gone; no transfer of the new one yet

        # Its first transfer: read again (not from the cache of the orphaned branch).
        await fresh.transact(deployer, "mint", deployer.address, 9)
        await indexer.step()
        now = await stored_tokens(store)
        assert now[fresh.address.lower()][2:5] == ("Fresh", "FRS", 18)
        assert now[fresh.address.lower()][5] > base
    finally:
        await chain.close()
