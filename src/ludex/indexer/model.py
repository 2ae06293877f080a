"""What the indexer extracts from a chain: plain, validated, immutable records.

Pure: no I/O. Every record carries its ``chain_id`` so several chains share the same
stores. Hashes and addresses are lower-case ``0x`` hex strings (addresses also have a
checksum form where they are shown to people); quantities are Python ints (they may
exceed 64 bits: values in wei, token amounts). ``parse.py`` builds these from JSON-RPC
answers and refuses anything malformed or inconsistent.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


@dataclass(frozen=True, slots=True)
class Block:
    chain_id: int
    number: int
    hash: str
    parent_hash: str
    timestamp: int
    miner: str
    gas_used: int
    gas_limit: int
    base_fee_per_gas: int | None
    transaction_count: int


@dataclass(frozen=True, slots=True)
class Transaction:
    chain_id: int
    hash: str
    block_number: int
    block_hash: str
    index: int
    sender: str
    to: str | None
    value: int
    nonce: int
    gas: int
    gas_price: int | None
    max_fee_per_gas: int | None
    max_priority_fee_per_gas: int | None
    type: int
    input: bytes


@dataclass(frozen=True, slots=True)
class Receipt:
    chain_id: int
    transaction_hash: str
    block_number: int
    block_hash: str
    index: int
    status: int
    gas_used: int
    effective_gas_price: int
    contract_address: str | None
    blob_gas_used: int | None = None  # blob transactions (EIP-4844) only
    blob_gas_price: int | None = None


@dataclass(frozen=True, slots=True)
class Log:
    chain_id: int
    block_number: int
    block_hash: str
    transaction_hash: str
    transaction_index: int
    log_index: int
    address: str
    topics: tuple[str, ...]
    data: bytes


class TokenStandard(StrEnum):
    ERC20 = "erc20"
    ERC721 = "erc721"
    ERC1155 = "erc1155"


@dataclass(frozen=True, slots=True)
class TokenTransfer:
    """One token movement; an ERC-1155 batch gives one per id (``batch_index`` set)."""

    chain_id: int
    block_number: int
    block_hash: str
    transaction_hash: str
    log_index: int
    batch_index: int
    standard: TokenStandard
    token: str
    sender: str
    recipient: str
    token_id: int | None
    amount: int
    operator: str | None = None


@dataclass(frozen=True, slots=True)
class ContractCreation:
    chain_id: int
    block_number: int
    block_hash: str
    transaction_hash: str
    address: str
    creator: str
    via: str  # "receipt" (a contract-creating transaction) or "trace" (an internal create)


@dataclass(frozen=True, slots=True)
class InternalTransfer:
    """Native value moved by a call frame below a transaction's top level that did not
    revert: a CALL with value, a CREATE / CREATE2 endowment or a SELFDESTRUCT."""

    chain_id: int
    block_number: int
    block_hash: str
    transaction_hash: str
    sender: str
    recipient: str
    value: int
    kind: str  # the frame's type: "CALL", "CREATE", "CREATE2" or "SELFDESTRUCT"


@dataclass(frozen=True, slots=True)
class Withdrawal:
    """A consensus-layer withdrawal (EIP-4895) credited in the block; ``amount`` in wei."""

    chain_id: int
    block_number: int
    index: int
    validator_index: int
    address: str
    amount: int


@dataclass(frozen=True, slots=True)
class BalanceChange:
    """The net change of one address's balance of one asset in one block (never zero).

    ``token`` is :data:`NATIVE` for the chain's currency, else the token contract;
    ``token_id`` is the ERC-721 / ERC-1155 id (None for native and ERC-20)."""

    chain_id: int
    block_number: int
    block_hash: str
    address: str
    token: str
    token_id: int | None
    delta: int


NATIVE: Final = "native"
"""``BalanceChange.token`` for the chain's own currency (ether); the same text as the
store's ``NATIVE_TOKEN``."""


@dataclass(frozen=True, slots=True)
class BlockBundle:
    """Everything the indexer extracts from one block."""

    block: Block
    transactions: tuple[Transaction, ...]
    receipts: tuple[Receipt, ...]
    logs: tuple[Log, ...]
    transfers: tuple[TokenTransfer, ...]
    contracts: tuple[ContractCreation, ...]
    skipped_token_logs: int = 0  # logs with a token event's signature that did not decode
    traced: bool = False
    """Whether the block's call traces were read: internal creations are in ``contracts``
    and native balance changes in ``balance_changes`` only then."""
    internal_transfers: tuple[InternalTransfer, ...] = ()
    withdrawals: tuple[Withdrawal, ...] = ()
    balance_changes: tuple[BalanceChange, ...] = ()
