"""Token metadata: the name, symbol and decimals of every token the indexer sees.

For the tokens first seen in a range's transfers, :class:`TokenMetadataReader` reads
``name()``, ``symbol()`` and (ERC-20 only: ERC-721 and ERC-1155 have none) ``decimals()``
with ``eth_call`` at the range's last block, all in one JSON-RPC batch. Any contract may
emit a Transfer, so a token is never trusted: a call that reverts (or a node error
answer for it) or an answer that does not decode gives ``None`` for that field only,
never a failed range. Strings decode as ABI ``string``; a 32-byte answer is read as a
``bytes32`` (old tokens such as MKR) with its trailing zero bytes stripped. Answers are
kept in a per-process cache, so an address is read once (:meth:`forget` drops a chain's
entries after a reorg, where a token may not exist on the new branch).

The decoders are pure. The reader only sends ``eth_call``; it never writes: the
pipeline stores the rows (``idx_tokens``, :mod:`ludex.indexer.store`) in the range's
transaction. Transport failures (the node unreachable, a malformed JSON-RPC answer) are
not the token's fault and propagate, so the range is retried.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from eth_abi.abi import decode as abi_decode

from ludex.adapters.sql.tables import TOKEN_NAME_LENGTH, TOKEN_SYMBOL_LENGTH
from ludex.errors import ChainRpcError
from ludex.indexer.model import BlockBundle, TokenStandard

SELECTORS: Final = {"name": "0x06fdde03", "symbol": "0x95d89b41", "decimals": "0x313ce567"}
FIELDS: Final[Mapping[TokenStandard, tuple[str, ...]]] = {
    TokenStandard.ERC20: ("name", "symbol", "decimals"),
    TokenStandard.ERC721: ("name", "symbol"),
    TokenStandard.ERC1155: ("name", "symbol"),
}
NAME_LENGTH: Final = TOKEN_NAME_LENGTH
SYMBOL_LENGTH: Final = TOKEN_SYMBOL_LENGTH
"""Longer answers are cut to these lengths (the ``idx_tokens`` columns)."""


@dataclass(frozen=True, slots=True)
class SeenToken:
    """A token's first transfer in a range: its standard and block."""

    address: str
    standard: TokenStandard
    first_block: int


@dataclass(frozen=True, slots=True)
class TokenMetadata:
    """One ``idx_tokens`` row; a field the token did not answer properly is None."""

    chain_id: int
    address: str
    standard: TokenStandard
    name: str | None
    symbol: str | None
    decimals: int | None
    first_block: int


Fields = tuple[str | None, str | None, int | None]


def first_seen(bundles: Iterable[BlockBundle]) -> dict[str, SeenToken]:
    """Every token with a transfer in ``bundles`` (in chain order), at its first transfer."""
    seen: dict[str, SeenToken] = {}
    for bundle in bundles:
        for transfer in bundle.transfers:
            if transfer.token not in seen:
                seen[transfer.token] = SeenToken(
                    transfer.token, transfer.standard, transfer.block_number
                )
    return seen


def _bytes(raw: object) -> bytes | None:
    if not isinstance(raw, str) or not raw.startswith("0x") or len(raw) % 2:
        return None
    try:
        return bytes.fromhex(raw[2:])
    except ValueError:
        return None


def decode_text(raw: object, limit: int = NAME_LENGTH) -> str | None:
    """An ``eth_call`` answer to ``name()`` / ``symbol()``: an ABI string, or a bytes32
    with trailing zero bytes stripped; None when it is neither (or not UTF-8)."""
    data = _bytes(raw)
    if data is None or not data:
        return None
    try:
        if len(data) == 32:
            text = data.rstrip(b"\x00").decode("utf-8")
        else:
            (text,) = abi_decode(["string"], data)
    except Exception:  # eth-abi raises several types on bad data; any of them means "no answer"
        return None
    if not isinstance(text, str):
        return None
    return text.replace("\x00", "")[:limit]  # NUL is not storable in PostgreSQL text


def decode_decimals(raw: object) -> int | None:
    """An ``eth_call`` answer to ``decimals()``: a uint of at most 255; None otherwise."""
    data = _bytes(raw)
    if data is None or len(data) != 32:
        return None
    value = int.from_bytes(data, "big")
    return value if value <= 255 else None


def decode_fields(answers: Mapping[str, object]) -> Fields:
    """(name, symbol, decimals) from the raw answers by field name (missing: None)."""
    return (
        decode_text(answers.get("name"), NAME_LENGTH),
        decode_text(answers.get("symbol"), SYMBOL_LENGTH),
        decode_decimals(answers.get("decimals")),
    )


def _eth_call(to: str, data: str, block: int) -> tuple[str, list[Any]]:
    return ("eth_call", [{"to": to, "data": data}, hex(block)])


@runtime_checkable
class EthCaller(Protocol):
    """What the reader needs of a node client (``RpcSource`` has both)."""

    async def call(self, method: str, params: list[Any]) -> Any: ...

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]: ...


class TokenMetadataReader:
    """Reads and caches token metadata through ``client`` (see the module docstring)."""

    def __init__(self, client: EthCaller, *, cache_size: int = 100_000) -> None:
        self.client = client
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[int, str], Fields] = OrderedDict()
        self.calls = 0
        """How many eth_call this reader asked for (a batch that failed counts again)."""

    def forget(self, chain_id: int) -> None:
        """Drop the cached answers of ``chain_id`` (after a reorg)."""
        for key in [k for k in self._cache if k[0] == chain_id]:
            del self._cache[key]

    async def read(
        self, chain_id: int, tokens: Iterable[SeenToken], block: int
    ) -> list[TokenMetadata]:
        """The metadata of ``tokens`` as of ``block``; cached addresses are not asked again."""
        tokens = list(tokens)
        known: dict[str, Fields] = {}
        todo = []
        for t in tokens:
            cached = self._cache.get((chain_id, t.address))
            if cached is None:
                todo.append(t)
            else:
                known[t.address] = cached
        if todo:
            calls = [
                (t.address, field, _eth_call(t.address, SELECTORS[field], block))
                for t in todo
                for field in FIELDS[t.standard]
            ]
            answers = await self._answers([c for _, _, c in calls])
            by_token: dict[str, dict[str, object]] = {t.address: {} for t in todo}
            for (address, field, _), answer in zip(calls, answers, strict=True):
                by_token[address][field] = answer
            for t in todo:
                known[t.address] = decode_fields(by_token[t.address])
                self._remember((chain_id, t.address), known[t.address])
        return [
            TokenMetadata(chain_id, t.address, t.standard, *known[t.address], t.first_block)
            for t in tokens
        ]

    async def _answers(self, calls: Sequence[tuple[str, list[Any]]]) -> list[object]:
        """Every call's result, None for a call the node answered with an error. One batch
        first; when any call in it fails (the batch raises), each call on its own."""
        self.calls += len(calls)
        try:
            return list(await self.client.batch(calls))
        except ChainRpcError:
            pass
        self.calls += len(calls)
        return list(await asyncio.gather(*(self._one(method, params) for method, params in calls)))

    async def _one(self, method: str, params: list[Any]) -> object:
        try:
            result: object = await self.client.call(method, params)
        except ChainRpcError:  # a revert, or the node's refusal of this one call
            return None
        return result

    def _remember(self, key: tuple[int, str], fields: Fields) -> None:
        self._cache[key] = fields
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
