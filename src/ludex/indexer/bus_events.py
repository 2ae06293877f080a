"""The bus events of indexed blocks: one per block, transaction, log, token transfer
and (with an ABI registry) decoded event.

Pure: builds :class:`~ludex.events.Event` envelopes from
:class:`~ludex.indexer.model.BlockBundle` records; the pipeline adds them to the outbox
in the same transaction as the rows. Keys (the bus partitions by key, so each
address's events stay in order): the chain id for ``chain.block``, the sender for
``chain.transaction``, the emitting contract for ``chain.log``, the token for
``chain.token_transfer``, the emitting contract for ``chain.event_decoded``. This
module never writes anything itself.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from typing import Any, Final

from ludex.errors import ConfigError
from ludex.events import (
    ChainBlock,
    ChainEventDecoded,
    ChainLog,
    ChainTransaction,
    Envelope,
    TokenTransfer,
    new_event,
)
from ludex.indexer.abi_registry import AbiRegistry, jsonable
from ludex.indexer.model import BlockBundle

BLOCK: Final = ChainBlock.event_type
TRANSACTION: Final = ChainTransaction.event_type
LOG: Final = ChainLog.event_type
TOKEN_TRANSFER: Final = TokenTransfer.event_type
EVENT_DECODED: Final = ChainEventDecoded.event_type
ALL_EVENTS: Final = frozenset({BLOCK, TRANSACTION, LOG, TOKEN_TRANSFER, EVENT_DECODED})
"""The record events the pipeline can emit (``chain.block_reverted`` is always emitted;
``chain.event_decoded`` only with an ABI registry)."""
MAX_SAFE_INT: Final = 2**53


def check_kinds(kinds: Collection[str]) -> frozenset[str]:
    """``kinds`` as a frozenset; an unknown event type raises :class:`ConfigError`."""
    unknown = sorted(set(kinds) - ALL_EVENTS)
    if unknown:
        raise ConfigError(
            f"unknown indexer events {unknown}; choose among {sorted(ALL_EVENTS)} "
            "(chain.block_reverted is always emitted)"
        )
    return frozenset(kinds)


def record_events(
    bundles: Sequence[BlockBundle], kinds: Collection[str], producer: str
) -> Iterator[Envelope]:
    """The events of ``bundles`` whose type is in ``kinds``, in chain order per block."""
    for bundle in bundles:
        b = bundle.block
        if BLOCK in kinds:
            yield new_event(
                ChainBlock(
                    chain_id=b.chain_id,
                    number=b.number,
                    hash=b.hash,
                    parent_hash=b.parent_hash,
                    timestamp=b.timestamp,
                    transaction_count=b.transaction_count,
                ),
                key=str(b.chain_id),
                producer=producer,
            )
        if TRANSACTION in kinds:
            status = {r.transaction_hash: r.status for r in bundle.receipts}
            for tx in bundle.transactions:
                yield new_event(
                    ChainTransaction(
                        chain_id=tx.chain_id,
                        block_number=tx.block_number,
                        hash=tx.hash,
                        from_address=tx.sender,
                        to_address=tx.to,
                        value=tx.value,
                        status=status.get(tx.hash, 0),
                    ),
                    key=tx.sender,
                    producer=producer,
                )
        if LOG in kinds:
            for lg in bundle.logs:
                yield new_event(
                    ChainLog(
                        chain_id=lg.chain_id,
                        block_number=lg.block_number,
                        block_hash=lg.block_hash,
                        tx_hash=lg.transaction_hash,
                        log_index=lg.log_index,
                        address=lg.address,
                        topics=list(lg.topics),
                        data="0x" + lg.data.hex(),
                    ),
                    key=lg.address,
                    producer=producer,
                )
        if TOKEN_TRANSFER in kinds:
            for t in bundle.transfers:
                yield new_event(
                    TokenTransfer(
                        chain_id=t.chain_id,
                        standard=t.standard.value,
                        token=t.token,
                        from_address=t.sender,
                        to_address=t.recipient,
                        value=t.amount,
                        token_id=t.token_id,
                        block_number=t.block_number,
                        tx_hash=t.transaction_hash,
                        log_index=t.log_index,
                        batch_index=t.batch_index,
                    ),
                    key=t.token,
                    producer=producer,
                )


def json_safe(value: Any) -> Any:
    """Decoded arguments as JSON that any consumer reads exactly: bytes as 0x hex,
    tuples as lists, integers beyond 2**53 (a JavaScript double) as decimal strings."""
    value = jsonable(value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value) if abs(value) > MAX_SAFE_INT else value
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return value


def decoded_events(
    bundles: Sequence[BlockBundle], registry: AbiRegistry, producer: str
) -> Iterator[Envelope]:
    """One ``chain.event_decoded`` per log of ``bundles`` the registry decodes, keyed by
    the emitting contract."""
    for bundle in bundles:
        for lg in bundle.logs:
            decoded = registry.decode_log(lg)
            if decoded is None:
                continue
            yield new_event(
                ChainEventDecoded(
                    chain_id=lg.chain_id,
                    block_number=lg.block_number,
                    tx_hash=lg.transaction_hash,
                    log_index=lg.log_index,
                    address=lg.address,
                    name=decoded.event,
                    args=json_safe(decoded.args),
                    abi=decoded.abi,
                ),
                key=lg.address,
                producer=producer,
            )
