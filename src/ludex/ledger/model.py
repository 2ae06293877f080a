"""The double-entry ledger's rules: accounts, transfers, balances and their arithmetic.

Every transfer debits one account and credits another of the same ledger (a
currency unit: ``CHIPS``, or an on-chain token ``TOKEN:<chain_id>:<0xaddress>``) by
a positive integer amount in minor units. An account keeps four counters: posted
debits and credits, and pending (reserved) debits and credits; its balance is
posted credits minus posted debits, and what it may still spend (``available``)
is the balance minus its pending debits. ``available`` never goes below zero
unless the account allows it (the counterparties: house, provider float, the
outside world). Such a counterparty may also be untracked
(``AccountSpec.track_balance=False``): the same numbers, but the store derives
them from the log instead of keeping counters on one hot row.

Two-phase transfers reserve first (``pending``), then are posted (all or part of
the amount) or voided; either resolution is recorded as a new transfer that names
the pending one (``pending_id``), so the log alone rebuilds every balance
(:func:`replay`).

The repository (:mod:`ludex.ledger.repository`) loads the locked accounts, asks
:func:`plan_transfers` / :func:`plan_resolution` for their new balances, and writes
them; the same functions drive the in-memory :class:`Book` the tests replay into.

Pure: no I/O, no clock (callers pass ``now``), no asyncio.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from ludex.errors import (
    AccountNotFound,
    BalanceOverflow,
    InsufficientFunds,
    InvalidAccount,
    InvalidTransfer,
    LedgerMismatch,
    PendingExpired,
    PendingNotFound,
    PendingResolved,
)

MAX_AMOUNT: Final = 2**63 - 1
"""The largest amount, and the largest value of any balance counter (a signed BIGINT)."""
MAX_ID_LENGTH: Final = 64
MAX_CODE_LENGTH: Final = 32
MAX_METADATA_CHARS: Final = 4096
MAX_TIMEOUT_S: Final = 2**31 - 1
CHIPS: Final = "CHIPS"
RESERVED_ID_PREFIX: Final = "ledger:"
"""Transfer ids the ledger writes itself (expiries); clients may not use the prefix."""

_ID = re.compile(r"[\x21-\x7e]{1,64}")  # printable ASCII, no spaces
_CODE = re.compile(r"[a-z0-9_.:\-]{1,32}")
_TOKEN = re.compile(r"TOKEN:(0|[1-9][0-9]{0,19}):0x[0-9a-f]{40}")


class AccountKind(StrEnum):
    """What an account is for (reporting and reconciliation; rules use allow_negative)."""

    PLAYER = "player"
    TABLE_ESCROW = "table_escrow"
    TREASURY = "treasury"
    PROVIDER_FLOAT = "provider_float"
    DEPOSITS_IN_FLIGHT = "deposits_in_flight"
    HOUSE = "house"
    EXTERNAL = "external"


class TransferState(StrEnum):
    """Where a transfer stands.

    * ``POSTED``: applied to posted balances (a single-phase transfer, or the record
      that posts a pending one).
    * ``PENDING``: a reservation, still open.
    * ``POSTED_FROM_PENDING``: a reservation that was posted (by a later record).
    * ``VOIDED``: a reservation that was voided or expired, and the record that voids it.
    """

    POSTED = "posted"
    PENDING = "pending"
    POSTED_FROM_PENDING = "posted_from_pending"
    VOIDED = "voided"


def token_ledger(chain_id: int, address: str) -> str:
    """The ledger name of an on-chain token: ``TOKEN:<chain_id>:<0xaddress lowercase>``."""
    name = f"TOKEN:{chain_id}:{address.lower()}"
    validate_ledger(name)
    return name


def validate_ledger(name: str) -> None:
    """Raise InvalidAccount unless ``name`` is ``CHIPS`` or ``TOKEN:<chain_id>:<0xaddr>``."""
    if name == CHIPS or _TOKEN.fullmatch(name):
        return
    raise InvalidAccount(
        f"ledger {name!r} is not a currency unit: use {CHIPS!r} or "
        "'TOKEN:<chain id>:<0x + 40 lowercase hex digits>' (see token_ledger())"
    )


def _validate_id(what: str, value: str, error: type[Exception]) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise error(
            f"{what} {value!r} is not valid: use 1 to {MAX_ID_LENGTH} printable ASCII "
            "characters without spaces"
        )


def _check_amount(what: str, amount: int) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise InvalidTransfer(f"{what} must be an int in minor units, got {amount!r}")
    if amount <= 0:
        raise InvalidTransfer(f"{what} must be positive, got {amount}")
    if amount > MAX_AMOUNT:
        raise InvalidTransfer(f"{what} {amount} exceeds the maximum {MAX_AMOUNT} (2**63 - 1)")


def validate_transfer_id(transfer_id: str) -> None:
    """Raise InvalidTransfer unless ``transfer_id`` may be chosen by a client."""
    _validate_id("transfer id", transfer_id, InvalidTransfer)
    if transfer_id.startswith(RESERVED_ID_PREFIX):
        raise InvalidTransfer(
            f"transfer id {transfer_id!r}: the prefix {RESERVED_ID_PREFIX!r} is reserved "
            "for ids the ledger writes itself"
        )


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """What an account is: its id, its ledger, its kind, whether it may go negative,
    and whether its balance is tracked.

    ``track_balance=False`` marks a counterparty many transfers share (provider
    float, house, the outside world): the store neither locks its row nor keeps
    its counters, and derives its balance from the transfer log on read, so it is
    never a hot row. Such an account can never refuse a transfer for lack of
    funds, hence it must allow a negative balance.
    """

    id: str
    ledger: str
    kind: AccountKind
    allow_negative: bool = False
    track_balance: bool = True

    def __post_init__(self) -> None:
        _validate_id("account id", self.id, InvalidAccount)
        validate_ledger(self.ledger)
        if not isinstance(self.allow_negative, bool) or not isinstance(self.track_balance, bool):
            raise InvalidAccount(f"account {self.id!r}: allow_negative and track_balance are bool")
        if not self.track_balance and not self.allow_negative:
            raise InvalidAccount(
                f"account {self.id!r}: an account whose balance is not tracked must allow a "
                "negative balance (it cannot refuse a transfer for lack of funds)"
            )
        try:
            object.__setattr__(self, "kind", AccountKind(self.kind))
        except ValueError:
            raise InvalidAccount(
                f"account {self.id!r}: kind {self.kind!r} is not one of "
                f"{', '.join(k.value for k in AccountKind)}"
            ) from None


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's four counters; all are non-negative, and at most MAX_AMOUNT for a
    tracked account (an untracked one's are sums over the log, stored nowhere)."""

    account: str
    ledger: str
    posted_debits: int = 0
    posted_credits: int = 0
    pending_debits: int = 0
    pending_credits: int = 0

    @property
    def balance(self) -> int:
        """Posted credits minus posted debits."""
        return self.posted_credits - self.posted_debits

    @property
    def available(self) -> int:
        """What the account may still spend: the balance minus its pending debits."""
        return self.balance - self.pending_debits


def _add(account: str, counter: str, value: int, delta: int, *, bounded: bool = True) -> int:
    result = value + delta
    if bounded and result > MAX_AMOUNT:
        raise BalanceOverflow(
            f"ledger account {account!r}: {counter} would reach {result}, past the "
            f"maximum {MAX_AMOUNT}; split the account's history into a new account"
        )
    if bounded and result < 0:  # pragma: no cover - a broken invariant, not a user error
        raise AssertionError(f"ledger account {account!r}: {counter} would go negative")
    return result


@dataclass(frozen=True, slots=True)
class Account:
    """An account as stored: its spec and its counters (an untracked account's are
    derived from the log when read; the repository plans its transfers on zeros and
    never writes them)."""

    spec: AccountSpec
    balance: Balance

    @classmethod
    def opened(cls, spec: AccountSpec) -> Account:
        return cls(spec, Balance(spec.id, spec.ledger))

    @property
    def id(self) -> str:
        return self.spec.id

    def moved(self, *, debit: int = 0, credit: int = 0, pending: bool) -> Account:
        """The account after debiting and/or crediting (posted or pending) amounts.

        An untracked account's counters are not checked: they are sums over the log
        (no stored column to overflow), and the repository plans on zeros that it
        never writes.
        """
        b, bounded = self.balance, self.spec.track_balance
        if pending:
            b = replace(
                b,
                pending_debits=_add(
                    b.account, "pending debits", b.pending_debits, debit, bounded=bounded
                ),
                pending_credits=_add(
                    b.account, "pending credits", b.pending_credits, credit, bounded=bounded
                ),
            )
        else:
            b = replace(
                b,
                posted_debits=_add(
                    b.account, "posted debits", b.posted_debits, debit, bounded=bounded
                ),
                posted_credits=_add(
                    b.account, "posted credits", b.posted_credits, credit, bounded=bounded
                ),
            )
        return Account(self.spec, b)


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """The canonical stored form of transfer metadata (sorted keys, compact JSON)."""
    return json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def decode_metadata(text: str) -> Mapping[str, str]:
    return MappingProxyType(json.loads(text))


_EMPTY: Final[Mapping[str, str]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TransferSpec:
    """A transfer a client asks for. ``id`` is the client's idempotency key."""

    id: str
    debit: str
    credit: str
    amount: int
    ledger: str
    code: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    pending: bool = False
    timeout_s: int | None = None

    def __post_init__(self) -> None:
        validate_transfer_id(self.id)
        _validate_id(f"transfer {self.id!r}: debit account", self.debit, InvalidTransfer)
        _validate_id(f"transfer {self.id!r}: credit account", self.credit, InvalidTransfer)
        if self.debit == self.credit:
            raise InvalidTransfer(
                f"transfer {self.id!r} debits and credits the same account {self.debit!r}"
            )
        _check_amount(f"transfer {self.id!r}: amount", self.amount)
        try:
            validate_ledger(self.ledger)
        except InvalidAccount as exc:
            raise InvalidTransfer(f"transfer {self.id!r}: {exc}") from None
        if not isinstance(self.code, str) or not _CODE.fullmatch(self.code):
            raise InvalidTransfer(
                f"transfer {self.id!r}: code {self.code!r} must be 1 to {MAX_CODE_LENGTH} "
                "characters of a-z, 0-9, '_', '.', ':', '-'"
            )
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()):
            raise InvalidTransfer(f"transfer {self.id!r}: metadata keys and values must be str")
        frozen = MappingProxyType(dict(self.metadata))
        if len(encode_metadata(frozen)) > MAX_METADATA_CHARS:
            raise InvalidTransfer(
                f"transfer {self.id!r}: metadata is longer than {MAX_METADATA_CHARS} "
                "characters encoded; keep references, not documents"
            )
        object.__setattr__(self, "metadata", frozen)
        if self.timeout_s is not None:
            if not self.pending:
                raise InvalidTransfer(
                    f"transfer {self.id!r}: timeout_s is for pending transfers only"
                )
            if (
                isinstance(self.timeout_s, bool)
                or not isinstance(self.timeout_s, int)
                or not 0 < self.timeout_s <= MAX_TIMEOUT_S
            ):
                raise InvalidTransfer(
                    f"transfer {self.id!r}: timeout_s must be 1 to {MAX_TIMEOUT_S} seconds, "
                    f"got {self.timeout_s!r}"
                )


@dataclass(frozen=True, slots=True)
class Transfer:
    """A stored transfer: immutable except ``state`` of a pending one (see TransferState).

    ``seq`` is the commit-serial sequence number (the order of the log);
    ``pending_id`` is set on the record that posts or voids a pending transfer;
    ``batch`` is the id of the first transfer of a linked batch (None when alone).
    """

    seq: int
    id: str
    debit: str
    credit: str
    amount: int
    ledger: str
    code: str
    metadata: Mapping[str, str]
    pending: bool
    timeout_s: int | None
    expires_at: datetime | None
    pending_id: str | None
    batch: str | None
    state: TransferState
    created_at: datetime


def content_difference(spec: TransferSpec, batch: str | None, stored: Transfer) -> str | None:
    """None when ``spec`` (in a batch headed by ``batch``) is what ``stored`` recorded,
    else which field differs (for TransferIdConflict)."""
    if stored.pending_id is not None:
        return "the id belongs to a post or void of a pending transfer"
    for name in ("debit", "credit", "amount", "ledger", "code", "pending", "timeout_s"):
        if getattr(spec, name) != getattr(stored, name):
            return f"{name}: {getattr(stored, name)!r} before, {getattr(spec, name)!r} now"
    if dict(spec.metadata) != dict(stored.metadata):
        return "metadata differs"
    if batch != stored.batch:
        return f"linked batch: {stored.batch!r} before, {batch!r} now"
    return None


def check_accounts(spec: TransferSpec, debit: AccountSpec, credit: AccountSpec) -> None:
    """Raise LedgerMismatch unless both accounts and the spec share one ledger."""
    if debit.ledger != credit.ledger:
        raise LedgerMismatch(
            f"transfer {spec.id!r}: debit account {debit.id!r} is on {debit.ledger}, "
            f"credit account {credit.id!r} on {credit.ledger}; a transfer stays in one ledger"
        )
    if spec.ledger != debit.ledger:
        raise LedgerMismatch(
            f"transfer {spec.id!r} is on {spec.ledger}, its accounts on {debit.ledger}"
        )


def _require_funds(account: Account, amount: int) -> None:
    if account.spec.allow_negative:
        return
    available = account.balance.available
    if available < amount:
        raise InsufficientFunds(
            account.id, ledger=account.spec.ledger, available=available, amount=amount
        )


def plan_transfers(
    specs: Sequence[TransferSpec], accounts: Mapping[str, Account]
) -> dict[str, Account]:
    """Apply ``specs`` in order to ``accounts``; return every account they changed.

    All or nothing: the first spec that breaks a rule raises and nothing is returned.
    ``accounts`` must hold every account the specs name (else AccountNotFound).
    """
    ids = [s.id for s in specs]
    if len(set(ids)) != len(ids):
        raise InvalidTransfer(f"a linked batch repeats a transfer id: {ids}")
    changed: dict[str, Account] = {}
    for spec in specs:
        debit = changed.get(spec.debit) or accounts.get(spec.debit)
        credit = changed.get(spec.credit) or accounts.get(spec.credit)
        if debit is None:
            raise AccountNotFound(spec.debit)
        if credit is None:
            raise AccountNotFound(spec.credit)
        check_accounts(spec, debit.spec, credit.spec)
        _require_funds(debit, spec.amount)
        changed[debit.id] = debit.moved(debit=spec.amount, pending=spec.pending)
        changed[credit.id] = credit.moved(credit=spec.amount, pending=spec.pending)
    return changed


def expiry(spec: TransferSpec, now: datetime) -> datetime | None:
    return now + timedelta(seconds=spec.timeout_s) if spec.timeout_s is not None else None


def check_pending(pending: Transfer | None, pending_id: str) -> Transfer:
    """The pending transfer, or PendingNotFound / PendingResolved."""
    if pending is None or not pending.pending or pending.pending_id is not None:
        raise PendingNotFound(f"no pending transfer with id {pending_id!r}")
    if pending.state is not TransferState.PENDING:
        raise PendingResolved(
            f"pending transfer {pending_id!r} is already {pending.state.value}; "
            "a reservation is posted or voided once"
        )
    return pending


def plan_resolution(
    pending: Transfer,
    accounts: Mapping[str, Account],
    *,
    post_amount: int | None,
    now: datetime,
) -> dict[str, Account]:
    """Post (``post_amount``, at most the reserved amount) or void (None) ``pending``.

    Posting after the timeout raises PendingExpired; voiding is always allowed.
    Returns the two changed accounts.
    """
    check_pending(pending, pending.id)
    debit, credit = accounts.get(pending.debit), accounts.get(pending.credit)
    if debit is None:
        raise AccountNotFound(pending.debit)
    if credit is None:
        raise AccountNotFound(pending.credit)
    if post_amount is not None:
        _check_amount(f"posting pending transfer {pending.id!r}: amount", post_amount)
        if post_amount > pending.amount:
            raise InvalidTransfer(
                f"pending transfer {pending.id!r} reserved {pending.amount}; "
                f"cannot post {post_amount}"
            )
        if pending.expires_at is not None and now >= pending.expires_at:
            raise PendingExpired(
                f"pending transfer {pending.id!r} expired at {pending.expires_at.isoformat()}; "
                "it can only be voided"
            )
    released_debit = _release(debit, debit=pending.amount)
    released_credit = _release(credit, credit=pending.amount)
    if post_amount is not None:
        released_debit = released_debit.moved(debit=post_amount, pending=False)
        released_credit = released_credit.moved(credit=post_amount, pending=False)
    return {debit.id: released_debit, credit.id: released_credit}


def _release(account: Account, *, debit: int = 0, credit: int = 0) -> Account:
    b = account.balance
    tracked = account.spec.track_balance  # untracked: planned on zeros, never written
    if tracked and (b.pending_debits < debit or b.pending_credits < credit):  # pragma: no cover
        raise AssertionError(f"ledger account {b.account!r}: pending counters below a reservation")
    return Account(
        account.spec,
        replace(
            b, pending_debits=b.pending_debits - debit, pending_credits=b.pending_credits - credit
        ),
    )


def batch_of(specs: Sequence[TransferSpec]) -> str | None:
    """The batch id of a linked batch (its first transfer's id), None for a single one."""
    return specs[0].id if len(specs) > 1 else None


def record_of(spec: TransferSpec, *, batch: str | None, now: datetime, seq: int = 0) -> Transfer:
    """The record a new transfer is stored as (``seq`` comes from the store)."""
    return Transfer(
        seq=seq,
        id=spec.id,
        debit=spec.debit,
        credit=spec.credit,
        amount=spec.amount,
        ledger=spec.ledger,
        code=spec.code,
        metadata=spec.metadata,
        pending=spec.pending,
        timeout_s=spec.timeout_s,
        expires_at=expiry(spec, now),
        pending_id=None,
        batch=batch,
        state=TransferState.PENDING if spec.pending else TransferState.POSTED,
        created_at=now,
    )


def resolution_of(
    pending: Transfer,
    *,
    id: str,
    post_amount: int | None,
    now: datetime,
    metadata: Mapping[str, str] = _EMPTY,
    seq: int = 0,
) -> Transfer:
    """The record that posts (``post_amount``) or voids (None) ``pending``."""
    posted = post_amount is not None
    return Transfer(
        seq=seq,
        id=id,
        debit=pending.debit,
        credit=pending.credit,
        amount=post_amount if post_amount is not None else pending.amount,
        ledger=pending.ledger,
        code=pending.code,
        metadata=MappingProxyType(dict(metadata)),
        pending=False,
        timeout_s=None,
        expires_at=None,
        pending_id=pending.id,
        batch=None,
        state=TransferState.POSTED if posted else TransferState.VOIDED,
        created_at=now,
    )


def resolved(pending: Transfer, *, posted: bool) -> Transfer:
    """The pending transfer's record after its resolution (only its state changes)."""
    state = TransferState.POSTED_FROM_PENDING if posted else TransferState.VOIDED
    return replace(pending, state=state)


def expiry_id(pending: Transfer) -> str:
    """The id of the record that voids an expired pending transfer (reserved prefix)."""
    return f"{RESERVED_ID_PREFIX}expire:{pending.seq}"


def replay(transfers: Iterable[Transfer]) -> dict[str, Balance]:
    """Rebuild every balance from the transfer log alone, in ``seq`` order.

    A transfer created pending counts as pending from its own record, whatever its
    state now; its resolution record (``pending_id``) releases the reservation and,
    when POSTED, posts its own amount.
    """
    balances: dict[str, Balance] = {}
    reserved: dict[str, Transfer] = {}

    def get(account: str, ledger: str) -> Balance:
        return balances.get(account) or Balance(account, ledger)

    for t in sorted(transfers, key=lambda t: t.seq):
        d, c = get(t.debit, t.ledger), get(t.credit, t.ledger)
        if t.pending_id is None and t.pending:
            reserved[t.id] = t
            d = replace(d, pending_debits=d.pending_debits + t.amount)
            c = replace(c, pending_credits=c.pending_credits + t.amount)
        elif t.pending_id is None:
            d = replace(d, posted_debits=d.posted_debits + t.amount)
            c = replace(c, posted_credits=c.posted_credits + t.amount)
        else:
            held = reserved.pop(t.pending_id).amount
            d = replace(d, pending_debits=d.pending_debits - held)
            c = replace(c, pending_credits=c.pending_credits - held)
            if t.state is TransferState.POSTED:
                d = replace(d, posted_debits=d.posted_debits + t.amount)
                c = replace(c, posted_credits=c.posted_credits + t.amount)
        balances[t.debit], balances[t.credit] = d, c
    return balances


class Book:
    """An in-memory ledger on the same rules: the reference the stored ledger must match.

    Used by the property tests (random transfers, then compare) and handy in tests
    of services; never a store of record.
    """

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.transfers: dict[str, Transfer] = {}
        self._seq = 0

    def open(self, *specs: AccountSpec) -> None:
        for spec in specs:
            self.accounts.setdefault(spec.id, Account.opened(spec))

    def balance(self, account: str) -> Balance:
        if account not in self.accounts:
            raise AccountNotFound(account)
        return self.accounts[account].balance

    def _record(self, transfer: Transfer) -> Transfer:
        self._seq += 1
        transfer = replace(transfer, seq=self._seq)
        self.transfers[transfer.id] = transfer
        return transfer

    def transfer(self, specs: Sequence[TransferSpec], now: datetime) -> list[Transfer]:
        """Apply a batch (linked when more than one) and return its records.

        Unlike the repository, it does not de-duplicate: a known id is refused.
        """
        for spec in specs:
            if spec.id in self.transfers:
                raise InvalidTransfer(f"Book: transfer id {spec.id!r} is taken")
        self.accounts.update(plan_transfers(specs, self.accounts))
        batch = batch_of(specs)
        return [self._record(record_of(s, batch=batch, now=now)) for s in specs]

    def resolve(
        self, pending_id: str, *, id: str, post_amount: int | None, now: datetime
    ) -> Transfer:
        """Post ``post_amount`` of a pending transfer, or void it when None."""
        pending = check_pending(self.transfers.get(pending_id), pending_id)
        self.accounts.update(
            plan_resolution(pending, self.accounts, post_amount=post_amount, now=now)
        )
        self.transfers[pending_id] = resolved(pending, posted=post_amount is not None)
        return self._record(resolution_of(pending, id=id, post_amount=post_amount, now=now))
