"""JSON-RPC answers to indexer records, validated at the edge.

``bundle(chain_id, raw_block, raw_receipts, raw_traces)`` is the one entry point the
pipeline uses: ``raw_block`` is an ``eth_getBlockByNumber(n, true)`` answer (full
transactions), ``raw_receipts`` the block's receipts (``eth_getBlockReceipts`` or one
``eth_getTransactionReceipt`` per transaction, in transaction order) and ``raw_traces``
the block's ``debug_traceBlockByNumber`` callTracer answer, or None when the node has
none (:mod:`ludex.indexer.traces`; the bundle is then not ``traced``). The balance
changes are computed last (:mod:`ludex.indexer.balances`).

Every field is checked for its type and format (0x-hex quantities, 32-byte hashes,
20-byte addresses, even-length data) and the answer for consistency: each transaction
and receipt belongs to this block, receipts come one per transaction in order, each
log belongs to its receipt, log indexes are unique and increasing. Anything else raises
:class:`ludex.errors.ChainError` naming the block, the field and what was wrong, so the
pipeline retries instead of storing it. Hashes and addresses come out lower-case.

Pure: no I/O, no clock; the same answers always give the same bundle.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Final

from ludex.errors import ChainError
from ludex.indexer.balances import balance_changes
from ludex.indexer.fields import QUANTITY, Fields
from ludex.indexer.model import (
    Block,
    BlockBundle,
    ContractCreation,
    InternalTransfer,
    Log,
    Receipt,
    Transaction,
    Withdrawal,
)
from ludex.indexer.tokens import token_transfers
from ludex.indexer.traces import block_traces

GWEI: Final = 10**9


def _block(chain_id: int, fields: Fields, count: int) -> Block:
    return Block(
        chain_id=chain_id,
        number=fields.quantity("number"),
        hash=fields.hash("hash"),
        parent_hash=fields.hash("parentHash"),
        timestamp=fields.quantity("timestamp"),
        miner=fields.address("miner"),
        gas_used=fields.quantity("gasUsed"),
        gas_limit=fields.quantity("gasLimit"),
        base_fee_per_gas=fields.optional_quantity("baseFeePerGas"),
        transaction_count=count,
    )


def _transaction(chain_id: int, block: Block, index: int, raw: Any, where: str) -> Transaction:
    if isinstance(raw, str):
        raise ChainError(
            f"{where}: transactions[{index}] is a hash, not a transaction object; "
            "fetch the block with eth_getBlockByNumber(n, true)"
        )
    tx = Fields(raw, f"{where}: transactions[{index}]")
    tx_hash = tx.hash("hash")
    tx.where = f"{where}: transaction {index} ({tx_hash})"
    tx.same("blockHash", tx.hash("blockHash"), block.hash, "block's hash")
    tx.same("blockNumber", tx.quantity("blockNumber"), block.number, "block's number")
    tx.same("transactionIndex", tx.quantity("transactionIndex"), index, "position in the block")
    tx_chain = tx.optional_quantity("chainId")
    if tx_chain is not None:
        tx.same("chainId", tx_chain, chain_id, "indexed chain's id")
    kind = tx.optional_quantity("type")
    return Transaction(
        chain_id=chain_id,
        hash=tx_hash,
        block_number=block.number,
        block_hash=block.hash,
        index=index,
        sender=tx.address("from"),
        to=tx.optional_address("to"),
        value=tx.quantity("value"),
        nonce=tx.quantity("nonce"),
        gas=tx.quantity("gas"),
        gas_price=tx.optional_quantity("gasPrice"),
        max_fee_per_gas=tx.optional_quantity("maxFeePerGas"),
        max_priority_fee_per_gas=tx.optional_quantity("maxPriorityFeePerGas"),
        type=0 if kind is None else kind,  # nodes from before EIP-2718 send no type
        input=tx.data("input"),
    )


def _effective_gas_price(fields: Fields, tx: Transaction, block: Block) -> int:
    """The receipt's price, or what it must be for nodes from before it was reported."""
    price = fields.optional_quantity("effectiveGasPrice")
    if price is not None:
        return price
    if tx.max_fee_per_gas is not None and block.base_fee_per_gas is not None:
        tip = tx.max_priority_fee_per_gas or 0
        return min(tx.max_fee_per_gas, block.base_fee_per_gas + tip)
    if tx.gas_price is not None:
        return tx.gas_price
    raise fields.fail("effectiveGasPrice", "is missing and the transaction has no gasPrice")


def _receipt(
    chain_id: int, block: Block, tx: Transaction, raw: Any, where: str, last_log: int
) -> tuple[Receipt, list[Log]]:
    fields = Fields(raw, f"{where}: receipt {tx.index} ({tx.hash})")
    fields.same("transactionHash", fields.hash("transactionHash"), tx.hash, "transaction's hash")
    fields.same("blockHash", fields.hash("blockHash"), block.hash, "block's hash")
    fields.same("blockNumber", fields.quantity("blockNumber"), block.number, "block's number")
    fields.same("transactionIndex", fields.quantity("transactionIndex"), tx.index, "tx's index")
    if fields.raw.get("from") is not None:
        fields.same("from", fields.address("from"), tx.sender, "transaction's sender")
    status = fields.quantity("status")
    if status not in (0, 1):
        raise fields.fail("status", f"expected 0x0 or 0x1, got {fields.raw['status']!r}")
    contract = fields.optional_address("contractAddress")
    if contract is not None and tx.to is not None:
        raise fields.fail("contractAddress", f"is set but the transaction calls {tx.to}")
    receipt = Receipt(
        chain_id=chain_id,
        transaction_hash=tx.hash,
        block_number=block.number,
        block_hash=block.hash,
        index=tx.index,
        status=status,
        gas_used=fields.quantity("gasUsed"),
        effective_gas_price=_effective_gas_price(fields, tx, block),
        contract_address=contract,
        blob_gas_used=fields.optional_quantity("blobGasUsed"),
        blob_gas_price=fields.optional_quantity("blobGasPrice"),
    )
    logs = []
    for position, raw_log in enumerate(fields.list("logs")):
        entry = Fields(raw_log, f"{fields.where}: logs[{position}]")
        log_index = entry.quantity("logIndex")
        entry.where = f"{where}: log {log_index} (receipt {tx.index})"
        if log_index <= last_log:
            raise entry.fail(
                "logIndex", f"{log_index} is not above the previous log's index {last_log}"
            )
        last_log = log_index
        entry.same("blockHash", entry.hash("blockHash"), block.hash, "block's hash")
        entry.same("blockNumber", entry.quantity("blockNumber"), block.number, "block's number")
        entry.same("transactionHash", entry.hash("transactionHash"), tx.hash, "receipt's tx hash")
        entry.same(
            "transactionIndex", entry.quantity("transactionIndex"), tx.index, "receipt's index"
        )
        if entry.raw.get("removed") not in (None, False):
            raise entry.fail("removed", "the log is marked removed (a reorg); fetch the block anew")
        topics = entry.list("topics")
        if len(topics) > 4:
            raise entry.fail("topics", f"{len(topics)} topics; the EVM emits at most 4")
        logs.append(
            Log(
                chain_id=chain_id,
                block_number=block.number,
                block_hash=block.hash,
                transaction_hash=tx.hash,
                transaction_index=tx.index,
                log_index=log_index,
                address=entry.address("address"),
                topics=tuple(entry.hash_value(f"topics[{i}]", t) for i, t in enumerate(topics)),
                data=entry.data("data"),
            )
        )
    return receipt, logs


def _withdrawals(chain_id: int, block: Block, head: Fields, where: str) -> tuple[Withdrawal, ...]:
    """The block's withdrawals (EIP-4895; none before Shanghai), amounts in wei."""
    if head.raw.get("withdrawals") is None:
        return ()
    out = []
    for position, raw in enumerate(head.list("withdrawals")):
        fields = Fields(raw, f"{where}: withdrawals[{position}]")
        out.append(
            Withdrawal(
                chain_id=chain_id,
                block_number=block.number,
                index=fields.quantity("index"),
                validator_index=fields.quantity("validatorIndex"),
                address=fields.address("address"),
                amount=fields.quantity("amount") * GWEI,
            )
        )
    return tuple(out)


def bundle(
    chain_id: int,
    raw_block: Mapping[str, Any],
    raw_receipts: Sequence[Mapping[str, Any]],
    raw_traces: Any = None,
) -> BlockBundle:
    """The records of one block, or :class:`ChainError` saying what is wrong with it.
    ``raw_traces`` None: the node gave no traces (no internal creations, no native
    balance changes)."""
    head = Fields(raw_block, "block")
    if isinstance(raw_block, Mapping):
        number = raw_block.get("number")
        if isinstance(number, str) and QUANTITY.fullmatch(number):
            head.where = f"block {int(number, 16)}"
        else:
            head.where = "block (no number)" if number is None else f"block {number!r}"
    raw_transactions = head.list("transactions")
    block = _block(chain_id, head, len(raw_transactions))
    where = f"block {block.number} ({block.hash})"
    transactions = tuple(
        _transaction(chain_id, block, index, raw, where)
        for index, raw in enumerate(raw_transactions)
    )
    if not isinstance(raw_receipts, Sequence) or isinstance(raw_receipts, str | bytes):
        raise ChainError(f"{where}: receipts: expected a list, got {type(raw_receipts).__name__}")
    if len(raw_receipts) != len(transactions):
        raise ChainError(
            f"{where}: receipts: {len(raw_receipts)} receipts for {len(transactions)} transactions"
        )
    receipts: list[Receipt] = []
    logs: list[Log] = []
    last_log = -1
    for tx, raw in zip(transactions, raw_receipts, strict=True):
        receipt, tx_logs = _receipt(chain_id, block, tx, raw, where, last_log)
        receipts.append(receipt)
        logs.extend(tx_logs)
        if tx_logs:
            last_log = tx_logs[-1].log_index
    contracts: tuple[ContractCreation, ...] = tuple(
        ContractCreation(
            chain_id=chain_id,
            block_number=block.number,
            block_hash=block.hash,
            transaction_hash=tx.hash,
            address=receipt.contract_address,
            creator=tx.sender,
            via="receipt",
        )
        for tx, receipt in zip(transactions, receipts, strict=True)
        if receipt.contract_address is not None
    )
    internal: tuple[InternalTransfer, ...] = ()
    if raw_traces is not None:
        traced = block_traces(block, transactions, receipts, raw_traces)
        internal = traced.transfers
        known = {c.address for c in contracts}
        extra = []
        for creation in traced.creations:  # an address can be created twice (selfdestruct)
            if creation.address not in known:
                known.add(creation.address)
                extra.append(creation)
        contracts += tuple(extra)
    tokens = token_transfers(logs)
    records = BlockBundle(
        block=block,
        transactions=transactions,
        receipts=tuple(receipts),
        logs=tuple(logs),
        transfers=tokens.transfers,
        contracts=contracts,
        skipped_token_logs=tokens.skipped,
        traced=raw_traces is not None,
        internal_transfers=internal,
        withdrawals=_withdrawals(chain_id, block, head, where),
    )
    return replace(records, balance_changes=balance_changes(records))
