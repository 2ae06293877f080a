"""Net balance changes per address, asset and block, from a block's records.

``balance_changes(bundle)`` sums, per ``(address, token, token_id)``, every movement the
block's records show, and returns the non-zero sums as
:class:`~ludex.indexer.model.BalanceChange` records, sorted by address, token and id.

Native currency (``token`` = :data:`~ludex.indexer.model.NATIVE`), only when the block
was traced (``bundle.traced``): without the traces the internal transfers are unknown, so
no native row is computed at all rather than a wrong one.

* fees: the sender pays ``gasUsed * effectiveGasPrice``, plus ``blobGasUsed *
  blobGasPrice`` when the receipt has both (burnt); the block's miner receives
  ``gasUsed * (effectiveGasPrice - baseFee)``; the base fee is burnt (before London,
  without a base fee, the miner receives the whole fee);
* the transaction's value, from the sender to its recipient (the created contract for a
  creation), when its status is 1;
* the internal transfers of the traces (calls with value, creation endowments,
  self-destructs), which only exist for frames that did not revert;
* withdrawals (EIP-4895), credited to their address.

Not counted: block and uncle rewards of proof-of-work chains (and any other change made
outside transactions, such as a dev node's ``anvil_setBalance``); ether a self-destruct
burns (a contract created and destroyed in the same transaction that names itself as
beneficiary, or that receives ether after its self-destruct in that transaction).

Tokens, from the token transfers (events): ERC-20 the amount per token (``token_id``
None), ERC-721 one per token id, ERC-1155 the amount per id. Mints and burns change the
balance of one side only: the zero address gets no row. A token whose balances do not
follow its events (fee-on-transfer, rebasing) is reported as its events say. The zero
address is an ordinary account for the native currency (a dev node's miner often is).

Pure: no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Final

from ludex.errors import ChainError
from ludex.indexer.model import NATIVE, BalanceChange, BlockBundle

ZERO_ADDRESS: Final = "0x" + "00" * 20

Key = tuple[str, str, int | None]  # (address, token, token id)


def _native(bundle: BlockBundle, deltas: dict[Key, int]) -> None:
    block = bundle.block
    base_fee = block.base_fee_per_gas or 0
    where = f"block {block.number} ({block.hash})"
    for tx, receipt in zip(bundle.transactions, bundle.receipts, strict=True):
        if receipt.effective_gas_price < base_fee:
            raise ChainError(
                f"{where}: receipt {tx.index} ({tx.hash}): effectiveGasPrice: "
                f"{receipt.effective_gas_price} is below the block's base fee {base_fee}"
            )
        fee = receipt.gas_used * receipt.effective_gas_price
        if receipt.blob_gas_used is not None and receipt.blob_gas_price is not None:
            fee += receipt.blob_gas_used * receipt.blob_gas_price
        deltas[(tx.sender, NATIVE, None)] -= fee
        deltas[(block.miner, NATIVE, None)] += receipt.gas_used * (
            receipt.effective_gas_price - base_fee
        )
        if receipt.status == 1 and tx.value:
            recipient = tx.to if tx.to is not None else receipt.contract_address
            if recipient is None:
                raise ChainError(
                    f"{where}: receipt {tx.index} ({tx.hash}): contractAddress: is missing "
                    f"for a successful creation that sends {tx.value} wei"
                )
            deltas[(tx.sender, NATIVE, None)] -= tx.value
            deltas[(recipient, NATIVE, None)] += tx.value
    for move in bundle.internal_transfers:
        deltas[(move.sender, NATIVE, None)] -= move.value
        deltas[(move.recipient, NATIVE, None)] += move.value
    for withdrawal in bundle.withdrawals:
        deltas[(withdrawal.address, NATIVE, None)] += withdrawal.amount


def balance_changes(bundle: BlockBundle) -> tuple[BalanceChange, ...]:
    """The block's non-zero net changes (see the module docstring)."""
    deltas: dict[Key, int] = defaultdict(int)
    if bundle.traced:
        _native(bundle, deltas)
    for t in bundle.transfers:
        if t.sender != ZERO_ADDRESS:
            deltas[(t.sender, t.token, t.token_id)] -= t.amount
        if t.recipient != ZERO_ADDRESS:
            deltas[(t.recipient, t.token, t.token_id)] += t.amount
    block = bundle.block
    return tuple(
        BalanceChange(
            chain_id=block.chain_id,
            block_number=block.number,
            block_hash=block.hash,
            address=address,
            token=token,
            token_id=token_id,
            delta=delta,
        )
        for (address, token, token_id), delta in sorted(
            deltas.items(),
            key=lambda item: (item[0][0], item[0][1], -1 if item[0][2] is None else item[0][2]),
        )
        if delta != 0
    )
