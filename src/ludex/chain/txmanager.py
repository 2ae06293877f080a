"""The operator's transactions: nonces, fees, replacement, re-broadcast, confirmation.

:class:`TxManager` sends EIP-1559 transactions from one account (a
:class:`~ludex.ports.signer.Signer`) and follows each one until it is final. Its state
lives in the operational store (``chain_nonces``, ``chain_transactions``,
``chain_tx_attempts``), so a restart loses nothing:

* **Nonces.** ``chain_nonces`` holds the next nonce per (chain, sender). On start it is
  reconciled with the node: the largest of ours, ``eth_getTransactionCount(sender,
  "pending")`` and our highest recorded nonce + 1. A nonce is taken with a
  compare-and-set on that row in the same transaction that records the transaction, and
  ``(chain, sender, nonce)`` is unique: a nonce is never used for two transactions.
* **Record, then broadcast.** Every signed version of a transaction (an *attempt*: its
  hash, fees and raw bytes) is committed before it is sent, so a crash after the
  broadcast loses nothing: on restart the attempt is found on chain or sent again.
* **Fees.** Max fee = 2 * the latest base fee + the tip (``eth_maxPriorityFeePerGas``).
  A transaction not mined ``replace_after_s`` seconds (or ``replace_after_blocks``
  blocks) after its last broadcast is replaced: same nonce, both fees raised by
  ``fee_bump`` (13 %: the 12.5 % nodes require, plus a margin) and at least today's
  policy, never above ``max_fee_cap``. Every attempt's hash is watched; whichever is
  mined wins.
* **Dropped.** When no attempt has a receipt and the node knows none of them, the newest
  is broadcast again (the same bytes, the same hash); if the node refuses it because the
  base fee has risen above its max fee, it is replaced at once.
* **Confirmation.** A receipt counts once its block is canonical (``eth_getBlockByNumber``
  of its number has its hash) and has ``confirmations`` blocks on top. Confirmed
  transactions are still watched for ``reorg_window`` blocks; if a reorg takes one out,
  it goes back to pending and is re-sent (its nonce is free again). If its nonce was
  used by a transaction that is not ours, it becomes ``lost`` and its owner decides.
* **RPC errors.** Every node call goes through :class:`RetryingChain`: exponential
  backoff (tenacity) on errors that can pass (unreachable node, HTTP 5xx/429, rate
  limits); a node's answer about the transaction itself (a revert, "nonce too low") is
  not retried but understood.

Statuses of a transaction: ``recorded`` (signed and stored) → ``sent`` (a node accepted
it) → ``mined`` → ``confirmed`` → ``final`` (deeper than the watch window); or
``reverted`` (mined with status 0: reported at once, no longer watched) or ``lost``.
The owner passes a ``listener(session, record, change)`` called inside the very
transaction that stores each change (``sent``, ``rebroadcast``, ``replaced``, ``mined``,
``remined`` (in another block), ``confirmed``, ``reverted``, ``reorged``, ``lost``), so
it can record its own state and events atomically with ours.

One TxManager per sending account at a time. This module never sees a private key (it
asks the Signer) and never logs raw transactions.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, cast

import structlog
from eth_utils.crypto import keccak
from prometheus_client import Counter
from sqlalchemy import CursorResult, and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from ludex.adapters.chain.jsonrpc import parse_quantity
from ludex.adapters.sql.tables import chain_nonces, chain_transactions, chain_tx_attempts
from ludex.errors import BackendUnavailable, ChainError, ChainRpcError, ContractReverted
from ludex.ports.chain import ChainClient
from ludex.ports.signer import Signer
from ludex.ports.store import OperationalStore

log = structlog.get_logger(__name__)

TX_CHANGES = Counter(
    "ludex_chain_tx_changes_total",
    "Changes of the operator's transactions (sent, replaced, rebroadcast, mined, confirmed, "
    "reorged, reverted, lost, final)",
    ["change"],
)

RECORDED: Final = "recorded"
SENT: Final = "sent"
MINED: Final = "mined"
CONFIRMED: Final = "confirmed"
FINAL: Final = "final"
REVERTED: Final = "reverted"
LOST: Final = "lost"
WATCHED: Final = (RECORDED, SENT, MINED, CONFIRMED)
"""Statuses :meth:`TxManager.poll` looks at; the others are terminal."""

TRANSIENT_RPC_CODES: Final = frozenset({-32005, -32002, -32603, 429})
"""JSON-RPC error codes that mean "try again later" (limit exceeded, resource
unavailable, internal error) when they carry no revert data."""


def is_transient(exc: BaseException) -> bool:
    """Whether a failed node call is worth repeating unchanged."""
    if isinstance(exc, BackendUnavailable):
        return True
    if isinstance(exc, ContractReverted):
        return False
    if isinstance(exc, ChainRpcError):
        return exc.code in TRANSIENT_RPC_CODES and exc.data is None
    # Any other ChainError from the client: HTTP 5xx/429, a malformed or mismatched answer.
    return isinstance(exc, ChainError)


class RetryingChain:
    """A ChainClient whose calls are retried with exponential backoff on transient errors."""

    def __init__(
        self,
        chain: ChainClient,
        *,
        attempts: int = 6,
        initial: float = 0.1,
        maximum: float = 5.0,
    ) -> None:
        self.inner = chain
        self.attempts = attempts
        self.initial = initial
        self.maximum = maximum

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def ping(self) -> None:
        await self.inner.ping()

    async def chain_id(self) -> int:
        return parse_quantity(await self.call("eth_chainId", []), "eth_chainId")

    async def block_number(self) -> int:
        return parse_quantity(await self.call("eth_blockNumber", []), "eth_blockNumber")

    async def call(self, method: str, params: list[Any]) -> Any:
        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.warning(
                "chain.rpc_retry",
                method=method,
                attempt=state.attempt_number,
                retry_in=round(state.upcoming_sleep, 3),
                error=str(error),
            )

        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.initial, max=self.maximum),
            retry=retry_if_exception(is_transient),
            before_sleep=before_sleep,
            reraise=True,
        ):
            with attempt:
                return await self.inner.call(method, params)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One transaction (one nonce) as the store holds it."""

    id: int
    chain_id: int
    sender: str
    nonce: int
    purpose: str
    status: str
    tx_hash: str
    """The mined attempt's hash once mined, else the newest attempt's."""
    hashes: tuple[str, ...]
    """Every attempt, oldest first."""
    block_number: int | None = None
    block_hash: str | None = None


@dataclass(frozen=True, slots=True)
class _Attempt:
    tx_hash: str
    max_fee: int
    priority_fee: int
    raw: bytes
    sent_at: datetime | None
    sent_block: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class _Tx:
    id: int
    nonce: int
    purpose: str
    to: str | None
    data: bytes
    value: int
    gas: int
    status: str
    tx_hash: str | None
    block_number: int | None
    block_hash: str | None
    attempts: tuple[_Attempt, ...]  # oldest first


@dataclass(frozen=True, slots=True)
class _Receipt:
    tx_hash: str
    block_number: int
    block_hash: str
    status: int

    @classmethod
    def parse(cls, raw: Any) -> _Receipt:
        if not isinstance(raw, Mapping):
            raise ChainError(f"receipt: expected an object, got {type(raw).__name__}")
        try:
            return cls(
                tx_hash=str(raw["transactionHash"]).lower(),
                block_number=parse_quantity(raw["blockNumber"], "blockNumber"),
                block_hash=str(raw["blockHash"]).lower(),
                status=parse_quantity(raw["status"], "status"),
            )
        except (KeyError, TypeError) as exc:
            raise ChainError(f"receipt: missing or malformed field {exc}") from None


Listener = Callable[[AsyncSession, TxRecord, str], Awaitable[None]]
Hook = Callable[[TxRecord], Awaitable[None]]


def bumped(value: int, fraction: float) -> int:
    """``value`` raised by ``fraction``, rounded up, and by at least 1."""
    return max(value + 1, math.ceil(value * (1 + fraction)))


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _broadcast_outcome(exc: ChainRpcError) -> str | None:
    """What a refused eth_sendRawTransaction means, or None if it is a real error."""
    message = str(exc).lower()
    if "already known" in message or "already imported" in message:
        return "known"
    if "nonce too low" in message or "nonce is too low" in message:
        return "nonce_used"
    if "underpriced" in message:
        return "underpriced"
    if "base fee" in message or "fee too low" in message or "fee cap" in message:
        return "fee_too_low"
    return None


class TxManager:
    """Sends and follows the transactions of one account; state in the operational store."""

    def __init__(
        self,
        store: OperationalStore,
        chain: ChainClient,
        signer: Signer,
        *,
        confirmations: int = 3,
        listener: Listener | None = None,
        replace_after_s: float = 30.0,
        replace_after_blocks: int | None = None,
        fee_bump: float = 0.13,
        max_fee_cap: int | None = None,
        reorg_window: int = 64,
        lost_after: int = 3,
        retry_attempts: int = 6,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        after_record: Hook | None = None,
        after_broadcast: Hook | None = None,
    ) -> None:
        if fee_bump < 0.125:
            raise ValueError("fee_bump must be at least 0.125 (nodes refuse smaller bumps)")
        self.store = store
        self.chain = (
            chain
            if isinstance(chain, RetryingChain)
            else RetryingChain(
                chain, attempts=retry_attempts, initial=retry_initial, maximum=retry_max
            )
        )
        self.signer = signer
        self.sender = signer.address
        self.confirmations = confirmations
        self.listener = listener
        self.replace_after_s = replace_after_s
        self.replace_after_blocks = replace_after_blocks
        self.fee_bump = fee_bump
        self.max_fee_cap = max_fee_cap
        self.reorg_window = max(reorg_window, confirmations)
        self.lost_after = lost_after
        # Test hooks: run right after a transaction is recorded / broadcast, before the broadcast
        # is recorded (crash injection at the two points that matter).
        self.after_record = after_record
        self.after_broadcast = after_broadcast
        self._chain_id: int | None = None
        self._strikes: dict[int, int] = {}

    def __repr__(self) -> str:
        return f"TxManager({self.sender})"

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            raise ChainError("TxManager.start() has not run")
        return self._chain_id

    # --- start: the nonce ------------------------------------------------------------

    async def start(self) -> int:
        """Read the chain id and reconcile the stored nonce with the node; the next nonce."""
        self._chain_id = await self.chain.chain_id()
        node = await self._nonce("pending")
        async with self.store.transaction() as session:
            stored = await self._stored_nonce(session, lock=True)
            highest = await session.scalar(
                select(chain_transactions.c.nonce)
                .where(self._mine())
                .order_by(chain_transactions.c.nonce.desc())
                .limit(1)
            )
            used = -1 if highest is None else int(highest)
            wanted = max(node, used + 1, stored if stored is not None else 0)
            now = datetime.now(UTC)
            if stored is None:
                await session.execute(
                    insert(chain_nonces).values(
                        chain_id=self.chain_id,
                        address=self.sender,
                        next_nonce=wanted,
                        updated_at=now,
                    )
                )
            elif wanted != stored:
                await session.execute(
                    update(chain_nonces)
                    .where(self._nonce_row())
                    .values(next_nonce=wanted, updated_at=now)
                )
        log.info(
            "txmanager.started",
            sender=self.sender,
            chain_id=self.chain_id,
            stored_nonce=stored,
            node_nonce=node,
            next_nonce=wanted,
        )
        return wanted

    async def next_nonce(self) -> int:
        async with self.store.transaction() as session:
            stored = await self._stored_nonce(session)
        if stored is None:
            raise ChainError("TxManager.start() has not run: no nonce row")
        return stored

    def _nonce_row(self) -> Any:
        return and_(chain_nonces.c.chain_id == self.chain_id, chain_nonces.c.address == self.sender)

    def _mine(self) -> Any:
        return and_(
            chain_transactions.c.chain_id == self.chain_id,
            chain_transactions.c.sender == self.sender,
        )

    async def _stored_nonce(self, session: AsyncSession, *, lock: bool = False) -> int | None:
        query = select(chain_nonces.c.next_nonce).where(self._nonce_row())
        if lock:
            query = query.with_for_update()
        value = await session.scalar(query)
        return None if value is None else int(value)

    async def _nonce(self, block: str) -> int:
        return parse_quantity(
            await self.chain.call("eth_getTransactionCount", [self.sender, block]),
            "eth_getTransactionCount",
        )

    # --- fees and gas ----------------------------------------------------------------

    async def fees(self) -> tuple[int, int]:
        """(max fee, tip) per gas: twice the latest base fee plus the node's tip."""
        block = await self.chain.call("eth_getBlockByNumber", ["latest", False])
        if not isinstance(block, Mapping) or "baseFeePerGas" not in block:
            raise ChainError("eth_getBlockByNumber: the latest block has no baseFeePerGas")
        base = parse_quantity(block["baseFeePerGas"], "baseFeePerGas")
        tip = parse_quantity(
            await self.chain.call("eth_maxPriorityFeePerGas", []), "eth_maxPriorityFeePerGas"
        )
        return 2 * base + tip, tip

    async def estimate_gas(self, to: str | None, data: bytes, *, value: int = 0) -> int:
        """``eth_estimateGas`` from our account; a revert raises ChainRpcError with its data."""
        request: dict[str, Any] = {"from": self.sender, "data": _hex(data)}
        if to is not None:
            request["to"] = to
        if value:
            request["value"] = hex(value)
        return parse_quantity(
            await self.chain.call("eth_estimateGas", [request]), "eth_estimateGas"
        )

    # --- sending ---------------------------------------------------------------------

    async def send(
        self,
        purpose: str,
        to: str | None,
        data: bytes,
        *,
        gas: int,
        value: int = 0,
        on_recorded: Callable[[AsyncSession, TxRecord], Awaitable[None]] | None = None,
    ) -> TxRecord:
        """Take the next nonce, sign, record, then broadcast; the recorded transaction.

        ``on_recorded(session, record)`` runs in the transaction that records it, so the
        caller can link its own state to the transaction atomically. A broadcast the node
        refuses for a reason other than a transient error is logged and left to
        :meth:`poll` (which re-sends or detects that the nonce was used).
        """
        if not purpose or len(purpose) > 128:
            raise ValueError("purpose must be 1 to 128 characters")
        max_fee, tip = await self.fees()
        record: TxRecord | None = None
        while record is None:
            nonce = await self.next_nonce()
            raw = await self._sign(nonce, to, data, value, gas, max_fee, tip)
            tx_hash = _hex(keccak(raw))
            record = await self._record_new(
                purpose, to, data, value, gas, nonce, tx_hash, max_fee, tip, raw, on_recorded
            )
        log.info(
            "txmanager.recorded",
            purpose=purpose,
            nonce=nonce,
            tx_hash=tx_hash,
            max_fee=max_fee,
            tip=tip,
            gas=gas,
        )
        if self.after_record is not None:
            await self.after_record(record)
        head = await self.chain.block_number()
        outcome = await self._broadcast(raw, tx_hash, purpose)
        if self.after_broadcast is not None:
            await self.after_broadcast(record)
        if outcome in {"accepted", "known"}:
            record = await self._mark_sent(record.id, tx_hash, head, change=SENT) or record
        return record

    async def _record_new(
        self,
        purpose: str,
        to: str | None,
        data: bytes,
        value: int,
        gas: int,
        nonce: int,
        tx_hash: str,
        max_fee: int,
        tip: int,
        raw: bytes,
        on_recorded: Callable[[AsyncSession, TxRecord], Awaitable[None]] | None,
    ) -> TxRecord | None:
        """Take ``nonce`` (compare-and-set) and record the transaction; None if it was taken."""
        now = datetime.now(UTC)
        async with self.store.transaction() as session:
            taken = await session.execute(
                update(chain_nonces)
                .where(self._nonce_row(), chain_nonces.c.next_nonce == nonce)
                .values(next_nonce=nonce + 1, updated_at=now)
            )
            if cast(CursorResult[Any], taken).rowcount != 1:
                return None  # taken between our read and now: sign again with the next one
            inserted = await session.execute(
                insert(chain_transactions).values(
                    chain_id=self.chain_id,
                    sender=self.sender,
                    nonce=nonce,
                    purpose=purpose,
                    to_address=to,
                    data=data,
                    value=str(value),
                    gas=gas,
                    status=RECORDED,
                    tx_hash=None,
                    block_number=None,
                    block_hash=None,
                    created_at=now,
                    updated_at=now,
                )
            )
            key = cast(CursorResult[Any], inserted).inserted_primary_key
            assert key is not None
            tx_id = int(key[0])
            await self._insert_attempt(session, tx_id, tx_hash, max_fee, tip, raw, now)
            record = TxRecord(
                tx_id, self.chain_id, self.sender, nonce, purpose, RECORDED, tx_hash, (tx_hash,)
            )
            if on_recorded is not None:
                await on_recorded(session, record)
        return record

    async def _sign(
        self,
        nonce: int,
        to: str | None,
        data: bytes,
        value: int,
        gas: int,
        max_fee: int,
        tip: int,
    ) -> bytes:
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": nonce,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
            "value": value,
            "data": data,
        }
        if to is not None:
            tx["to"] = to
        return await self.signer.sign_transaction(tx)

    async def _insert_attempt(
        self,
        session: AsyncSession,
        tx_id: int,
        tx_hash: str,
        max_fee: int,
        tip: int,
        raw: bytes,
        now: datetime,
    ) -> None:
        await session.execute(
            insert(chain_tx_attempts).values(
                tx_hash=tx_hash,
                transaction_id=tx_id,
                max_fee=max_fee,
                priority_fee=tip,
                raw=raw,
                sent_at=None,
                sent_block=None,
                created_at=now,
            )
        )

    async def _broadcast(self, raw: bytes, tx_hash: str, purpose: str) -> str:
        """What the node said: ``accepted``, ``known``, ``nonce_used``, ``underpriced``,
        ``fee_too_low`` or ``refused``."""
        try:
            answer = await self.chain.call("eth_sendRawTransaction", [_hex(raw)])
        except ChainRpcError as exc:
            outcome = _broadcast_outcome(exc)
            if outcome is None:
                log.error(
                    "txmanager.broadcast_refused", purpose=purpose, tx_hash=tx_hash, error=str(exc)
                )
                return "refused"
            log.info("txmanager.broadcast", purpose=purpose, tx_hash=tx_hash, outcome=outcome)
            return outcome
        if str(answer).lower() != tx_hash:
            log.warning(
                "txmanager.hash_mismatch", purpose=purpose, tx_hash=tx_hash, node=str(answer)
            )
        log.info("txmanager.broadcast", purpose=purpose, tx_hash=tx_hash, outcome="accepted")
        return "accepted"

    async def _mark_sent(
        self, tx_id: int, tx_hash: str, head: int, *, change: str
    ) -> TxRecord | None:
        now = datetime.now(UTC)
        async with self.store.transaction() as session:
            await session.execute(
                update(chain_tx_attempts)
                .where(chain_tx_attempts.c.tx_hash == tx_hash)
                .values(sent_at=now, sent_block=head)
            )
            tx = await self._load_one(session, tx_id, lock=True)
            if tx is None:
                return None
            if tx.status == RECORDED:
                await self._set_status(session, tx, SENT, now=now)
                tx = replace(tx, status=SENT)
            elif change == SENT:
                return self._record(tx)
            record = self._record(tx)
            if self.listener is not None:
                await self.listener(session, record, change)
        TX_CHANGES.labels(change=change).inc()
        return record

    # --- following -------------------------------------------------------------------

    async def poll(self) -> int:
        """Look at every unfinished transaction once; the number of changes recorded."""
        head = await self.chain.block_number()
        async with self.store.transaction() as session:
            watched = await self._load(session)
        changes = 0
        blocks: dict[int, str | None] = {}
        latest_nonce: int | None = None
        for tx in watched:
            try:
                if (
                    tx.status == CONFIRMED
                    and tx.block_number is not None
                    and await self._block_hash(tx.block_number, blocks) == tx.block_hash
                ):
                    if head - tx.block_number >= self.reorg_window:
                        changes += await self._transition(tx, FINAL, None, head)
                    continue
                found = await self._find_receipt(tx, blocks)
                if found is not None:
                    changes += await self._on_receipt(tx, found, head)
                    continue
                if tx.status in {MINED, CONFIRMED}:
                    log.warning(
                        "txmanager.reorged",
                        purpose=tx.purpose,
                        nonce=tx.nonce,
                        tx_hash=tx.tx_hash,
                        block=tx.block_number,
                    )
                    changes += await self._transition(tx, SENT, None, head, change="reorged")
                    tx = replace(tx, status=SENT, block_number=None, block_hash=None)
                if latest_nonce is None:
                    latest_nonce = await self._nonce("latest")
                changes += await self._pending(tx, head, latest_nonce)
            except ChainRpcError as exc:
                log.error(
                    "txmanager.poll_error", purpose=tx.purpose, nonce=tx.nonce, error=str(exc)
                )
        return changes

    async def _pending(self, tx: _Tx, head: int, latest_nonce: int) -> int:
        """No receipt: lost, dropped (send again), stuck (replace) or just waiting."""
        if latest_nonce > tx.nonce:
            # The nonce is used, by none of our attempts (or the node lags): count strikes.
            strikes = self._strikes.get(tx.id, 0) + 1
            self._strikes[tx.id] = strikes
            if strikes < self.lost_after:
                return 0
            self._strikes.pop(tx.id, None)
            log.error(
                "txmanager.nonce_lost", purpose=tx.purpose, nonce=tx.nonce, hashes=len(tx.attempts)
            )
            return await self._transition(tx, LOST, None, head, change=LOST)
        self._strikes.pop(tx.id, None)
        newest = tx.attempts[-1]
        known = False
        for attempt in reversed(tx.attempts):
            if await self.chain.call("eth_getTransactionByHash", [attempt.tx_hash]) is not None:
                known = True
                break
        if not known:
            log.warning(
                "txmanager.rebroadcast", purpose=tx.purpose, nonce=tx.nonce, tx_hash=newest.tx_hash
            )
            outcome = await self._broadcast(newest.raw, newest.tx_hash, tx.purpose)
            if outcome in {"accepted", "known"}:
                change = SENT if tx.status == RECORDED else "rebroadcast"
                return 1 if await self._mark_sent(tx.id, newest.tx_hash, head, change=change) else 0
            if outcome == "fee_too_low":  # priced out (the base fee rose): re-price now
                return await self._replace(tx, newest, head)
            return 0
        if self._stuck(tx, head):
            return await self._replace(tx, newest, head)
        return 0

    def _stuck(self, tx: _Tx, head: int) -> bool:
        """Waiting since the last accepted broadcast (or the last attempt, if the node
        refused it) for ``replace_after_s`` seconds or ``replace_after_blocks`` blocks."""
        sent = [a for a in tx.attempts if a.sent_at is not None]
        if not sent:
            return False
        since = max([a.sent_at for a in sent if a.sent_at] + [tx.attempts[-1].created_at])
        if (datetime.now(UTC) - since).total_seconds() >= self.replace_after_s:
            return True
        blocks = [a.sent_block for a in sent if a.sent_block is not None]
        return (
            self.replace_after_blocks is not None
            and bool(blocks)
            and head - max(blocks) >= self.replace_after_blocks
        )

    async def _replace(self, tx: _Tx, newest: _Attempt, head: int) -> int:
        policy_fee, policy_tip = await self.fees()
        tip = max(bumped(newest.priority_fee, self.fee_bump), policy_tip)
        max_fee = max(bumped(newest.max_fee, self.fee_bump), policy_fee - policy_tip + tip)
        if self.max_fee_cap is not None and max_fee > self.max_fee_cap:
            log.warning(
                "txmanager.fee_cap_reached",
                purpose=tx.purpose,
                nonce=tx.nonce,
                wanted=max_fee,
                cap=self.max_fee_cap,
            )
            return 0
        raw = await self._sign(tx.nonce, tx.to, tx.data, tx.value, tx.gas, max_fee, tip)
        tx_hash = _hex(keccak(raw))
        now = datetime.now(UTC)
        async with self.store.transaction() as session:
            await self._insert_attempt(session, tx.id, tx_hash, max_fee, tip, raw, now)
        log.warning(
            "txmanager.replacing",
            purpose=tx.purpose,
            nonce=tx.nonce,
            old_hash=newest.tx_hash,
            tx_hash=tx_hash,
            max_fee=max_fee,
            tip=tip,
        )
        outcome = await self._broadcast(raw, tx_hash, tx.purpose)
        if outcome in {"accepted", "known"}:
            await self._mark_sent(tx.id, tx_hash, head, change="replaced")
        return 1

    async def _find_receipt(self, tx: _Tx, blocks: dict[int, str | None]) -> _Receipt | None:
        """The canonical receipt of one of the attempts (newest first), if any."""
        for attempt in reversed(tx.attempts):
            raw = await self.chain.call("eth_getTransactionReceipt", [attempt.tx_hash])
            if raw is None:
                continue
            receipt = _Receipt.parse(raw)
            if await self._block_hash(receipt.block_number, blocks) == receipt.block_hash:
                return receipt
        return None

    async def _block_hash(self, number: int, blocks: dict[int, str | None]) -> str | None:
        if number not in blocks:
            block = await self.chain.call("eth_getBlockByNumber", [hex(number), False])
            blocks[number] = (
                str(block["hash"]).lower()
                if isinstance(block, Mapping) and block.get("hash")
                else None
            )
        return blocks[number]

    async def _on_receipt(self, tx: _Tx, receipt: _Receipt, head: int) -> int:
        deep = head - receipt.block_number >= self.confirmations
        # A revert spends the nonce whatever happens next: reported at once, so the owner
        # re-plans before anything is built on the assumption that it succeeded.
        status = REVERTED if receipt.status != 1 else CONFIRMED if deep else MINED
        same_block = tx.block_hash == receipt.block_hash and tx.tx_hash == receipt.tx_hash
        if tx.status == status and same_block:
            return 0
        change = status
        if tx.status == CONFIRMED and status == MINED:
            change = "reorged"  # confirmed in a block that is gone; mined again, not deep yet
        elif tx.status == MINED and status == MINED:
            change = "remined"
        return await self._transition(tx, status, receipt, head, change=change)

    async def _transition(
        self,
        tx: _Tx,
        status: str,
        receipt: _Receipt | None,
        head: int,
        *,
        change: str | None = None,
    ) -> int:
        now = datetime.now(UTC)
        async with self.store.transaction() as session:
            current = await self._load_one(session, tx.id, lock=True)
            if current is None or (current.status != tx.status):
                return 0  # changed under us; the next poll sees the new state
            values: dict[str, Any] = {"status": status, "updated_at": now}
            if receipt is not None:
                values |= {
                    "tx_hash": receipt.tx_hash,
                    "block_number": receipt.block_number,
                    "block_hash": receipt.block_hash,
                }
            elif status in {SENT, LOST}:
                values |= {"tx_hash": None, "block_number": None, "block_hash": None}
            await session.execute(
                update(chain_transactions).where(chain_transactions.c.id == tx.id).values(**values)
            )
            updated = await self._load_one(session, tx.id)
            assert updated is not None
            record = self._record(updated)
            if self.listener is not None and change != FINAL and status != FINAL:
                await self.listener(session, record, change or status)
        TX_CHANGES.labels(change=change or status).inc()
        log.info(
            "txmanager.status",
            purpose=tx.purpose,
            nonce=tx.nonce,
            status=status,
            change=change or status,
            tx_hash=record.tx_hash,
            block=record.block_number,
            head=head,
        )
        return 1

    async def _set_status(
        self, session: AsyncSession, tx: _Tx, status: str, *, now: datetime
    ) -> None:
        await session.execute(
            update(chain_transactions)
            .where(chain_transactions.c.id == tx.id)
            .values(status=status, updated_at=now)
        )

    # --- reading ---------------------------------------------------------------------

    async def transactions(self, purpose: str | None = None) -> list[TxRecord]:
        """Every transaction of this sender (of one purpose), by nonce."""
        async with self.store.transaction() as session:
            rows = await self._load(session, purpose=purpose, statuses=None)
        return [self._record(tx) for tx in rows]

    async def get(self, tx_id: int) -> TxRecord | None:
        async with self.store.transaction() as session:
            tx = await self._load_one(session, tx_id)
        return None if tx is None else self._record(tx)

    def _record(self, tx: _Tx) -> TxRecord:
        hashes = tuple(a.tx_hash for a in tx.attempts)
        return TxRecord(
            id=tx.id,
            chain_id=self.chain_id,
            sender=self.sender,
            nonce=tx.nonce,
            purpose=tx.purpose,
            status=tx.status,
            tx_hash=tx.tx_hash or hashes[-1],
            hashes=hashes,
            block_number=tx.block_number,
            block_hash=tx.block_hash,
        )

    async def _load(
        self,
        session: AsyncSession,
        *,
        purpose: str | None = None,
        statuses: Sequence[str] | None = WATCHED,
    ) -> list[_Tx]:
        query = select(chain_transactions).where(self._mine()).order_by(chain_transactions.c.nonce)
        if statuses is not None:
            query = query.where(chain_transactions.c.status.in_(statuses))
        if purpose is not None:
            query = query.where(chain_transactions.c.purpose == purpose)
        rows = (await session.execute(query)).mappings().all()
        if not rows:
            return []
        ids = [int(r["id"]) for r in rows]
        attempts = await self._attempts(session, ids)
        return [self._tx(row, attempts.get(int(row["id"]), ())) for row in rows]

    async def _load_one(
        self, session: AsyncSession, tx_id: int, *, lock: bool = False
    ) -> _Tx | None:
        query = select(chain_transactions).where(chain_transactions.c.id == tx_id)
        if lock:
            query = query.with_for_update()
        row = (await session.execute(query)).mappings().first()
        if row is None:
            return None
        attempts = await self._attempts(session, [tx_id])
        return self._tx(row, attempts.get(tx_id, ()))

    async def _attempts(
        self, session: AsyncSession, ids: Sequence[int]
    ) -> dict[int, tuple[_Attempt, ...]]:
        rows = (
            await session.execute(
                select(chain_tx_attempts)
                .where(chain_tx_attempts.c.transaction_id.in_(ids))
                .order_by(chain_tx_attempts.c.max_fee, chain_tx_attempts.c.created_at)
            )
        ).mappings()
        out: dict[int, list[_Attempt]] = {}
        for row in rows:
            out.setdefault(int(row["transaction_id"]), []).append(
                _Attempt(
                    tx_hash=str(row["tx_hash"]),
                    max_fee=int(row["max_fee"]),
                    priority_fee=int(row["priority_fee"]),
                    raw=bytes(row["raw"]),
                    sent_at=row["sent_at"],
                    sent_block=None if row["sent_block"] is None else int(row["sent_block"]),
                    created_at=row["created_at"],
                )
            )
        return {k: tuple(v) for k, v in out.items()}

    @staticmethod
    def _tx(row: Any, attempts: tuple[_Attempt, ...]) -> _Tx:
        return _Tx(
            id=int(row["id"]),
            nonce=int(row["nonce"]),
            purpose=str(row["purpose"]),
            to=row["to_address"],
            data=bytes(row["data"]),
            value=int(row["value"]),
            gas=int(row["gas"]),
            status=str(row["status"]),
            tx_hash=row["tx_hash"],
            block_number=None if row["block_number"] is None else int(row["block_number"]),
            block_hash=row["block_hash"],
            attempts=attempts,
        )
