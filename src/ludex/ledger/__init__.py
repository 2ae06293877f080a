"""The double-entry ledger: integer minor units, one currency per ledger.

Rules (pure, :mod:`ludex.ledger.model`): every transfer debits one account and
credits another of the same ledger; a balance never goes below zero unless its
account allows it; transfers are immutable, applied exactly once per client id,
linked ones all or none, two-phase ones reserved then posted or voided.

Storage (:mod:`ludex.ledger.repository`): every function takes the caller's
``AsyncSession`` so ledger writes commit with the caller's own rows and outbox
events::

    async with store.transaction() as session:
        [bet] = await ledger.transfer(session, [TransferSpec(
            id="bet:prov:tx-1", debit="player:42", credit="house:CHIPS",
            amount=500, ledger="CHIPS", code="bet")])
        await add_to_outbox(session, ...)

Balance sign: ``balance = posted credits - posted debits``; money flows from the
debit account to the credit account (a deposit debits EXTERNAL and credits
PLAYER; a bet debits PLAYER and credits HOUSE or a TABLE_ESCROW).

This package must never open or commit a transaction of its own.
"""

from __future__ import annotations

from ludex.ledger.model import (
    CHIPS,
    MAX_AMOUNT,
    Account,
    AccountKind,
    AccountSpec,
    Balance,
    Book,
    Transfer,
    TransferSpec,
    TransferState,
    replay,
    token_ledger,
    validate_ledger,
)
from ludex.ledger.repository import (
    all_transfers,
    balance,
    balances,
    create_accounts,
    expire_pending,
    get_accounts,
    get_transfer,
    ledger_balances,
    post_pending,
    transfer,
    transfers_of,
    void_pending,
)

__all__ = [
    "CHIPS",
    "MAX_AMOUNT",
    "Account",
    "AccountKind",
    "AccountSpec",
    "Balance",
    "Book",
    "Transfer",
    "TransferSpec",
    "TransferState",
    "all_transfers",
    "balance",
    "balances",
    "create_accounts",
    "expire_pending",
    "get_accounts",
    "get_transfer",
    "ledger_balances",
    "post_pending",
    "replay",
    "token_ledger",
    "transfer",
    "transfers_of",
    "validate_ledger",
    "void_pending",
]
