"""The ludex exception tree.

Every error ludex raises on purpose derives from :class:`LudexError`; errors from
third-party libraries are translated at the adapter that meets them, so callers
never need to import a driver to catch a failure::

    LudexError
    ├── ConfigError            a setting is missing or malformed (raised at start-up)
    ├── EventError             an event cannot be accepted
    │   ├── UnknownEventType   the type is not in the catalog
    │   └── MalformedEvent     the envelope or payload does not match its schema
    ├── BackendError           a backend failed or cannot be reached
    │   └── BackendUnavailable the backend is down or refused the connection
    ├── KeyValueError          KeyValue port misuse (bad lease, bad arguments)
    │   └── LockLost           a lease expired or was taken by another owner
    ├── StoreError             operational store failure (migration, integrity)
    ├── ChainError             a chain node failed or answered malformed data
    │   ├── ChainRpcError      the node answered a JSON-RPC error (carries code and data)
    │   └── ContractReverted   a contract call reverted (carries the decoded error)
    ├── LedgerError            the double-entry ledger refused something
    │   ├── InvalidAccount     an account spec breaks a rule (id, ledger name)
    │   ├── AccountConflict    an account id exists with a different spec
    │   ├── AccountNotFound    a transfer or query names an unknown account
    │   ├── InvalidTransfer    a transfer spec breaks a rule (amount, id, timeout, ...)
    │   ├── LedgerMismatch     debit and credit (or spec and accounts) are on different ledgers
    │   ├── InsufficientFunds  the debit would overdraw an account (carries id and available)
    │   ├── BalanceOverflow    a balance counter would pass 2**63 - 1
    │   ├── TransferIdConflict a transfer id was used before with different content
    │   ├── PendingNotFound    no pending transfer with that id
    │   ├── PendingExpired     the pending transfer's timeout passed; it can only be voided
    │   └── PendingResolved    the pending transfer was already posted or voided
    ├── WageringError          the wagering service refused or failed something
    │   ├── WalletRefusal      a provider request was refused (carries the status code)
    │   └── ProviderSecretError a provider secret cannot be decrypted (wrong key)
    └── PokerError             the poker domain refused something
        ├── CardError          a card or card string is malformed
        ├── IllegalAction      an action is not legal now (the message says why)
        ├── HandHistoryError   a PHH hand history is malformed or cannot be replayed
        └── FairnessError      a shuffle record does not verify (the message says where)

Messages say what was wrong and what to do; they never contain secrets.
"""

from __future__ import annotations


class LudexError(Exception):
    """Root of every error ludex raises on purpose."""


class ConfigError(LudexError):
    """A setting is missing or malformed; the message names the field."""


class EventError(LudexError):
    """An event could not be accepted."""


class UnknownEventType(EventError):
    """The event type is not in the catalog."""


class MalformedEvent(EventError):
    """The envelope or payload does not match its schema."""


class BackendError(LudexError):
    """A backend failed while doing its job."""


class BackendUnavailable(BackendError):
    """A backend cannot be reached."""


class KeyValueError(LudexError):
    """The KeyValue port was used wrongly."""


class LockLost(KeyValueError):
    """The lease expired or another owner holds the lock now."""


class StoreError(LudexError):
    """The operational store failed (migration, integrity, connection)."""


class ChainError(LudexError):
    """A chain node answered with an error or something malformed."""


class ChainRpcError(ChainError):
    """A JSON-RPC error answer: its code, message and data (a revert's return data)."""

    def __init__(self, message: str, *, code: int | None = None, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class ContractReverted(ChainError):
    """A contract call or transaction reverted; ``error`` is the decoded custom error
    (``Error`` for a revert string, ``Panic`` for a panic code), ``args`` its values."""

    def __init__(self, error: str, args: dict[str, object], *, tx_hash: str | None = None) -> None:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        super().__init__(f"reverted: {error}({shown})" + (f" in {tx_hash}" if tx_hash else ""))
        self.error = error
        self.args_ = args
        self.tx_hash = tx_hash


class PokerError(LudexError):
    """The poker domain refused something."""


class CardError(PokerError):
    """A card or a card string is malformed."""


class IllegalAction(PokerError):
    """An action is not legal in the current state; the message says why."""


class HandHistoryError(PokerError):
    """A PHH hand history is malformed or cannot be replayed."""


class FairnessError(PokerError):
    """A shuffle record does not verify; the message says which card or link differs."""


class WageringError(LudexError):
    """The wagering service refused or failed something."""


class WalletRefusal(WageringError):
    """A provider request was refused; ``status`` is the documented status code.

    ``details`` holds the extra response fields (``balance``, ``limit``, ...).
    """

    def __init__(self, status: str, message: str, **details: object) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.details = details


class ProviderSecretError(WageringError):
    """A stored provider secret cannot be decrypted: LUDEX_SECRETS_KEY differs from the
    key it was encrypted with. Restore the key or re-issue the secret."""


class LedgerError(LudexError):
    """The double-entry ledger refused something; nothing was written."""


class InvalidAccount(LedgerError):
    """An account spec breaks a rule (id, ledger name); the message says which."""


class AccountConflict(LedgerError):
    """An account id exists already with a different spec (ledger, kind, allow_negative)."""


class AccountNotFound(LedgerError):
    """A transfer or a query names an account that does not exist."""

    def __init__(self, account: str) -> None:
        super().__init__(f"ledger account {account!r} does not exist; create it first")
        self.account = account


class InvalidTransfer(LedgerError):
    """A transfer spec breaks a rule (amount, id, code, timeout); the message says which."""


class LedgerMismatch(LedgerError):
    """Debit and credit accounts (or the spec's ledger) are on different ledgers."""


class InsufficientFunds(LedgerError):
    """The debit would take an account below zero; ``available`` is what it has now."""

    def __init__(self, account: str, *, ledger: str, available: int, amount: int) -> None:
        super().__init__(
            f"ledger account {account!r} has {available} {ledger} available, {amount} needed"
        )
        self.account = account
        self.ledger = ledger
        self.available = available
        self.amount = amount


class BalanceOverflow(LedgerError):
    """A balance counter would pass 2**63 - 1, the most a ledger account can hold."""


class TransferIdConflict(LedgerError):
    """The transfer id was used before with different content; choose a new id."""

    def __init__(self, transfer_id: str, detail: str) -> None:
        super().__init__(
            f"transfer id {transfer_id!r} was used before with different content ({detail})"
        )
        self.transfer_id = transfer_id


class PendingNotFound(LedgerError):
    """There is no pending transfer with that id."""


class PendingExpired(LedgerError):
    """The pending transfer's timeout passed: it can no longer be posted, only voided."""


class PendingResolved(LedgerError):
    """The pending transfer was already posted or voided (under another id)."""
