"""Token transfers from logs: ERC-20, ERC-721 and ERC-1155 (single and batch).

Recognised by the event signature in topic 0 and the number of topics:

- ``Transfer(address,address,uint256)`` with 3 topics is ERC-20 (the value in data);
  with 4 topics it is ERC-721 (the token id in topic 3, amount 1);
- ``TransferSingle(operator,from,to,id,value)`` is ERC-1155, one transfer;
- ``TransferBatch(operator,from,to,ids[],values[])`` is ERC-1155, one transfer per id
  (``batch_index`` 0..n-1).

Mints and burns are transfers from and to the zero address. Any contract can emit a
log with these signatures, so a log that claims one but does not decode (wrong topic
count, wrong data length, dirty address padding, ids and values of different lengths)
is skipped and counted, never an error: one odd contract must not stop the indexer.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from ludex.indexer.model import Log, TokenStandard, TokenTransfer

TRANSFER_TOPIC: Final = "0x" + keccak(text="Transfer(address,address,uint256)").hex()
TRANSFER_SINGLE_TOPIC: Final = (
    "0x" + keccak(text="TransferSingle(address,address,address,uint256,uint256)").hex()
)
TRANSFER_BATCH_TOPIC: Final = (
    "0x" + keccak(text="TransferBatch(address,address,address,uint256[],uint256[])").hex()
)
TOKEN_TOPICS: Final = frozenset({TRANSFER_TOPIC, TRANSFER_SINGLE_TOPIC, TRANSFER_BATCH_TOPIC})

WORD: Final = 32


class _Malformed(Exception):
    """A log claims a token event's signature but is not shaped like one."""


@dataclass(frozen=True, slots=True)
class TokenTransfers:
    """The transfers found in some logs, and how many token-looking logs were skipped."""

    transfers: tuple[TokenTransfer, ...]
    skipped: int


_CLEAN_PADDING: Final = "0x" + "0" * 24


def _address(hex_topic: str) -> str:
    """The address in a topic (parse.py checked it is 32 bytes of lower-case hex): its
    first 12 bytes must be zero, as the ABI decoder requires."""
    if not hex_topic.startswith(_CLEAN_PADDING):
        raise _Malformed
    return "0x" + hex_topic[26:]


def _uint(hex_topic: str) -> int:
    return int(hex_topic, 16)


def _decode(types: Sequence[str], data: bytes) -> tuple[Any, ...]:
    try:
        return tuple(decode(list(types), data))
    except (DecodingError, ValueError, OverflowError):
        raise _Malformed from None


def _transfer(log: Log, standard: TokenStandard, **values: Any) -> TokenTransfer:
    return TokenTransfer(
        chain_id=log.chain_id,
        block_number=log.block_number,
        block_hash=log.block_hash,
        transaction_hash=log.transaction_hash,
        log_index=log.log_index,
        token=log.address,
        standard=standard,
        **values,
    )


def _decode_log(log: Log) -> list[TokenTransfer]:
    topic0, count = log.topics[0], len(log.topics)
    if topic0 == TRANSFER_TOPIC:
        if count == 3 and len(log.data) == WORD:
            return [
                _transfer(
                    log,
                    TokenStandard.ERC20,
                    batch_index=0,
                    sender=_address(log.topics[1]),
                    recipient=_address(log.topics[2]),
                    token_id=None,
                    amount=int.from_bytes(log.data, "big"),
                )
            ]
        if count == 4 and not log.data:
            return [
                _transfer(
                    log,
                    TokenStandard.ERC721,
                    batch_index=0,
                    sender=_address(log.topics[1]),
                    recipient=_address(log.topics[2]),
                    token_id=_uint(log.topics[3]),
                    amount=1,
                )
            ]
        raise _Malformed
    if count != 4:
        raise _Malformed
    operator, sender, recipient = (_address(t) for t in log.topics[1:4])
    if topic0 == TRANSFER_SINGLE_TOPIC:
        if len(log.data) != 2 * WORD:
            raise _Malformed
        token_id, amount = _decode(["uint256", "uint256"], log.data)
        pairs = [(token_id, amount)]
    else:
        ids, amounts = _decode(["uint256[]", "uint256[]"], log.data)
        if len(ids) != len(amounts):
            raise _Malformed
        pairs = list(zip(ids, amounts, strict=True))
    return [
        _transfer(
            log,
            TokenStandard.ERC1155,
            batch_index=position,
            sender=sender,
            recipient=recipient,
            token_id=int(token_id),
            amount=int(amount),
            operator=operator,
        )
        for position, (token_id, amount) in enumerate(pairs)
    ]


def decode_transfers(log: Log) -> list[TokenTransfer] | None:
    """The transfers of one log: [] for a log that is not a token event, None if malformed."""
    if not log.topics or log.topics[0] not in TOKEN_TOPICS:
        return []
    try:
        return _decode_log(log)
    except _Malformed:
        return None


def token_transfers(logs: Iterable[Log]) -> TokenTransfers:
    """All token transfers in ``logs``, in log order, with the count of skipped logs."""
    found: list[TokenTransfer] = []
    skipped = 0
    for log in logs:
        transfers = decode_transfers(log)
        if transfers is None:
            skipped += 1
        else:
            found.extend(transfers)
    return TokenTransfers(tuple(found), skipped)
