"""The mempool: pending transactions, and whether they were included, replaced or dropped.

Three parts, in this order:

* **Validation (pure: no I/O, no clock, no asyncio).** :func:`parse_pending` turns one
  pending transaction of the node (the fields of a transaction of
  ``eth_getBlockByNumber(n, true)`` with ``blockHash``, ``blockNumber`` and
  ``transactionIndex`` null) into a :class:`PendingTransaction`; :func:`parse_txpool`
  reads a ``txpool_content`` answer, :func:`parse_lookup` an ``eth_getTransactionByHash``
  answer (pending, in a block, or gone). A malformed answer raises
  :class:`~ludex.errors.ChainError` naming the transaction and the field: it is never
  stored. :func:`gone_fate` decides what became of a transaction the node no longer has.
* **Rows** of ``idx_pending_transactions`` (revision 0008) with their events
  (``chain.tx_pending`` / ``tx_included`` / ``tx_replaced`` / ``tx_dropped``, keyed by the
  sender) through the outbox in the caller's transaction. Every status change is a
  conditional single-row UPDATE and every new row an insert-or-ignore, and an event is
  written only when the row really changed, so two watchers (or a poll repeated) store
  each transaction once and emit each change once. :func:`mark_included` and
  :func:`unmark_above` are the hooks of the indexer pipeline (a range's transaction, a
  reorg's revert).
* **The watcher** (:class:`MempoolWatcher`) discovers pending transactions by a WebSocket
  ``eth_subscribe newPendingTransactions`` and by polling (``txpool_content`` where the
  node has it, else a pending-transaction filter), then reconciles the rows still
  ``pending`` against the node at every poll.

Fates: a transaction found in a block is ``included``; one the node no longer has whose
sender's nonce is used (``eth_getTransactionCount(sender, "latest")``) is ``replaced``
(``replaced_by``: the transaction of the same sender and nonce in ``idx_transactions``,
else an ``included`` row of this table, else NULL); one gone with its nonce unused for
``drop_after`` seconds (as seen by this watcher; while another pending row has the same
sender and nonce it waits: it was replaced by a transaction not mined yet) is
``dropped``. A dropped or replaced transaction seen in the mempool again returns to
``pending``; an included one only through :func:`unmark_above` (a reorg).

A pending EIP-1559 (or later) transaction has no gas price yet (nodes report either the
fee cap or the price at the current base fee): ``gas_price`` is kept only for the types
without a fee cap.

This module never commits a transaction it does not open, and never logs a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol, cast

import structlog
from prometheus_client import Counter, Gauge
from sqlalchemy import CursorResult, and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ludex.adapters.chain.jsonrpc import parse_quantity
from ludex.adapters.sql.outbox import add_to_outbox
from ludex.adapters.sql.store import SqlStore, insert_ignore
from ludex.adapters.sql.tables import idx_pending_transactions, idx_transactions
from ludex.errors import BackendUnavailable, ChainError, ChainRpcError, ConfigError, StoreError
from ludex.events import (
    ChainTxDropped,
    ChainTxIncluded,
    ChainTxPending,
    ChainTxReplaced,
    Envelope,
    new_event,
)
from ludex.indexer.fields import HASH, Fields
from ludex.indexer.source import RpcSource, SubscriptionRefused, subscribe, unsupported

log = structlog.get_logger(__name__)

PENDING: Final = "pending"
INCLUDED: Final = "included"
REPLACED: Final = "replaced"
DROPPED: Final = "dropped"

Discovery = Literal["auto", "txpool", "filter", "none"]

_CHUNK: Final = 500  # keys per IN (...) list

# --- metrics (recorded after each commit, never before) ------------------------------

PENDING_COUNT = Gauge(
    "ludex_indexer_mempool_pending",
    "Transactions stored with status pending, after each mempool poll",
    ["chain_id"],
)
SEEN = Counter(
    "ludex_indexer_mempool_seen_total",
    "Pending transactions stored for the first time",
    ["chain_id"],
)
FATES = Counter(
    "ludex_indexer_mempool_fates_total",
    "Status changes of stored pending transactions, by new status "
    "(included, replaced, dropped, returned: back to pending)",
    ["chain_id", "fate"],
)
REJECTED = Counter(
    "ludex_indexer_mempool_rejected_total",
    "Mempool polls that failed (a malformed node answer, an unreachable node or store)",
    ["chain_id"],
)


@dataclass(slots=True)
class Changes:
    """What one poll (or one hook call) changed; fed to the metrics after the commit."""

    seen: int = 0
    included: int = 0
    replaced: int = 0
    dropped: int = 0
    returned: int = 0

    def __iadd__(self, other: Changes) -> Changes:
        self.seen += other.seen
        self.included += other.included
        self.replaced += other.replaced
        self.dropped += other.dropped
        self.returned += other.returned
        return self


def observe(chain_id: int, changes: Changes) -> None:
    """Count committed changes (call it after the transaction that made them commits)."""
    label = str(chain_id)
    if changes.seen:
        SEEN.labels(label).inc(changes.seen)
    for fate in ("included", "replaced", "dropped", "returned"):
        value = getattr(changes, fate)
        if value:
            FATES.labels(label, fate).inc(value)


# --- validation (pure) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PendingTransaction:
    """A transaction in the mempool, as validated from the node's answer."""

    chain_id: int
    hash: str
    sender: str
    nonce: int
    to: str | None
    value: int
    gas: int
    gas_price: int | None
    max_fee_per_gas: int | None
    max_priority_fee_per_gas: int | None
    type: int


@dataclass(frozen=True, slots=True)
class Inclusion:
    """An ``eth_getTransactionByHash`` answer for a transaction already in a block."""

    hash: str
    sender: str
    block_number: int
    block_hash: str


Lookup = PendingTransaction | Inclusion | None
"""What the node says of a hash: pending, in a block, or unknown (gone)."""


def _transaction(chain_id: int, tx: Fields, tx_hash: str) -> PendingTransaction:
    """The fields a transaction has in or out of a block, validated."""
    tx_chain = tx.optional_quantity("chainId")
    if tx_chain is not None:
        tx.same("chainId", tx_chain, chain_id, "watched chain's id")
    kind = tx.optional_quantity("type")
    max_fee = tx.optional_quantity("maxFeePerGas")
    gas_price = tx.optional_quantity("gasPrice")
    tx.data("input")  # validated, not kept: the table holds no calldata
    return PendingTransaction(
        chain_id=chain_id,
        hash=tx_hash,
        sender=tx.address("from"),
        nonce=tx.quantity("nonce"),
        to=tx.optional_address("to"),
        value=tx.quantity("value"),
        gas=tx.quantity("gas"),
        gas_price=gas_price if max_fee is None else None,
        max_fee_per_gas=max_fee,
        max_priority_fee_per_gas=tx.optional_quantity("maxPriorityFeePerGas"),
        type=0 if kind is None else kind,  # nodes from before EIP-2718 send no type
    )


def parse_pending(chain_id: int, raw: Any, where: str | None = None) -> PendingTransaction:
    """One pending transaction object, or :class:`ChainError` naming the field."""
    tx = Fields(raw, where or "pending transaction")
    tx_hash = tx.hash("hash")
    tx.where = where or f"pending transaction {tx_hash}"
    for key in ("blockHash", "blockNumber", "transactionIndex"):
        if tx.raw.get(key) is not None:
            raise tx.fail(key, f"is {tx.raw[key]!r}: a pending transaction is in no block")
    return _transaction(chain_id, tx, tx_hash)


def parse_lookup(chain_id: int, tx_hash: str, raw: Any) -> Lookup:
    """An ``eth_getTransactionByHash(tx_hash)`` answer: pending, included, or None."""
    if raw is None:
        return None
    where = f"eth_getTransactionByHash({tx_hash})"
    tx = Fields(raw, where)
    tx.same("hash", tx.hash("hash"), tx_hash.lower(), "hash asked for")
    if all(tx.raw.get(k) is None for k in ("blockHash", "blockNumber", "transactionIndex")):
        return parse_pending(chain_id, raw, where)
    found = _transaction(chain_id, tx, tx_hash.lower())
    tx.quantity("transactionIndex")
    return Inclusion(
        hash=found.hash,
        sender=found.sender,
        block_number=tx.quantity("blockNumber"),
        block_hash=tx.hash("blockHash"),
    )


def parse_txpool(chain_id: int, raw: Any) -> list[PendingTransaction]:
    """Every transaction of a ``txpool_content`` answer (``pending`` and ``queued``)."""
    pool = Fields(raw, "txpool_content")
    out: list[PendingTransaction] = []
    for section in ("pending", "queued"):
        senders = pool.raw.get(section)
        if senders is None:
            continue
        if not isinstance(senders, Mapping):
            raise pool.fail(section, f"expected an object, got {type(senders).__name__}")
        for sender, by_nonce in senders.items():
            where = f"txpool_content: {section}[{sender!r}]"
            if not isinstance(by_nonce, Mapping):
                raise ChainError(f"{where}: expected an object, got {type(by_nonce).__name__}")
            for nonce, entry in by_nonce.items():
                tx = parse_pending(chain_id, entry, f"{where}[{nonce!r}]")
                if str(sender).lower() != tx.sender:
                    raise ChainError(f"{where}[{nonce!r}]: from: {tx.sender} is not the sender")
                if str(nonce) != str(tx.nonce):
                    raise ChainError(f"{where}[{nonce!r}]: nonce: {tx.nonce} is not the key")
                out.append(tx)
    return out


def parse_hashes(raw: Any, where: str) -> list[str]:
    """A list of transaction hashes (``eth_getFilterChanges`` of a pending filter)."""
    if not isinstance(raw, list):
        raise ChainError(f"{where}: expected a list of hashes, got {type(raw).__name__}")
    out = []
    for i, value in enumerate(raw):
        if not isinstance(value, str) or not HASH.fullmatch(value):
            raise ChainError(f"{where}: [{i}]: expected a 32-byte 0x-hex hash, got {value!r}")
        out.append(value.lower())
    return out


def gone_fate(
    nonce: int,
    next_nonce: int,
    missing_for: float,
    drop_after: float,
    *,
    sibling_pending: bool,
) -> Literal["replaced", "dropped"] | None:
    """The fate of a transaction the node no longer has: ``next_nonce`` is the sender's
    ``eth_getTransactionCount(latest)``, ``missing_for`` how long it has been gone;
    None while it may still come back (or its replacement is not mined yet)."""
    if nonce < next_nonce:
        return "replaced"
    if sibling_pending or missing_for < drop_after:
        return None
    return "dropped"


# --- rows and events -----------------------------------------------------------------


def _text(value: int | None) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def _row(tx: PendingTransaction, now: datetime) -> dict[str, Any]:
    return {
        "chain_id": tx.chain_id,
        "hash": tx.hash,
        "sender": tx.sender,
        "nonce": tx.nonce,
        "recipient": tx.to,
        "value": str(tx.value),
        "gas": tx.gas,
        "gas_price": _text(tx.gas_price),
        "max_fee_per_gas": _text(tx.max_fee_per_gas),
        "max_priority_fee_per_gas": _text(tx.max_priority_fee_per_gas),
        "tx_type": tx.type,
        "status": PENDING,
        "first_seen": now,
        "updated_at": now,
        "block_number": None,
        "replaced_by": None,
    }


def _from_row(row: Any) -> PendingTransaction:
    return PendingTransaction(
        chain_id=int(row["chain_id"]),
        hash=str(row["hash"]),
        sender=str(row["sender"]),
        nonce=int(row["nonce"]),
        to=None if row["recipient"] is None else str(row["recipient"]),
        value=int(row["value"]),
        gas=int(row["gas"]),
        gas_price=_int(row["gas_price"]),
        max_fee_per_gas=_int(row["max_fee_per_gas"]),
        max_priority_fee_per_gas=_int(row["max_priority_fee_per_gas"]),
        type=int(row["tx_type"]),
    )


def pending_event(tx: PendingTransaction, producer: str) -> Envelope:
    return new_event(
        ChainTxPending(
            chain_id=tx.chain_id,
            hash=tx.hash,
            from_address=tx.sender,
            to_address=tx.to,
            nonce=tx.nonce,
            value=tx.value,
            gas=tx.gas,
            gas_price=tx.gas_price,
            max_fee_per_gas=tx.max_fee_per_gas,
            max_priority_fee_per_gas=tx.max_priority_fee_per_gas,
            tx_type=tx.type,
        ),
        key=tx.sender,
        producer=producer,
    )


async def _changed(session: AsyncSession, statement: Any) -> bool:
    result = cast(CursorResult[Any], await session.execute(statement))
    return int(result.rowcount) == 1


def _chunks(items: Sequence[str]) -> Iterable[Sequence[str]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i : i + _CHUNK]


async def _rows_by_hash(session: AsyncSession, chain_id: int, hashes: Sequence[str]) -> list[Any]:
    t = idx_pending_transactions
    rows: list[Any] = []
    for chunk in _chunks(sorted(set(hashes))):
        rows.extend(
            (await session.execute(select(t).where(t.c.chain_id == chain_id, t.c.hash.in_(chunk))))
            .mappings()
            .all()
        )
    return rows


def _pk(chain_id: int, tx_hash: str) -> Any:
    t = idx_pending_transactions
    return and_(t.c.chain_id == chain_id, t.c.hash == tx_hash)


async def store_seen(
    session: AsyncSession,
    dialect: str,
    transactions: Sequence[PendingTransaction],
    *,
    producer: str,
) -> Changes:
    """Insert the transactions not stored yet (``chain.tx_pending`` each) and return the
    dropped or replaced ones to ``pending`` (``chain.tx_pending`` again)."""
    changes = Changes()
    if not transactions:
        return changes
    chain_id = transactions[0].chain_id
    t = idx_pending_transactions
    by_hash = {tx.hash: tx for tx in transactions}
    stored = {
        str(r["hash"]): str(r["status"])
        for r in await _rows_by_hash(session, chain_id, list(by_hash))
    }
    now = datetime.now(UTC)
    events: list[Envelope] = []
    statement = insert_ignore(dialect, t)
    for tx_hash, tx in sorted(by_hash.items()):  # one lock order for every writer
        status = stored.get(tx_hash)
        if status is None:
            # One row per statement: its row count says whether this writer inserted it
            # (another watcher may have, concurrently), so its event is written once.
            if await _changed(session, statement.values(_row(tx, now))):
                changes.seen += 1
                events.append(pending_event(tx, producer))
        elif status in (DROPPED, REPLACED):
            back = (
                update(t)
                .where(_pk(chain_id, tx_hash), t.c.status.in_((DROPPED, REPLACED)))
                .values(status=PENDING, block_number=None, replaced_by=None, updated_at=now)
            )
            if await _changed(session, back):
                changes.returned += 1
                events.append(pending_event(tx, producer))
    await add_to_outbox(session, *events)
    return changes


async def mark_included(
    session: AsyncSession,
    chain_id: int,
    included: Sequence[tuple[str, int]],
    *,
    producer: str = "indexer",
) -> Changes:
    """The pipeline's hook, in each range's transaction: every stored transaction among
    ``included`` ((hash, block number), typically every transaction of the range) is
    ``included`` in that block, whatever its status was; one ``chain.tx_included`` per
    row that changed. Hashes the mempool never saw are ignored."""
    changes = Changes()
    if not included:
        return changes
    t = idx_pending_transactions
    blocks = {h.lower(): n for h, n in included}
    now = datetime.now(UTC)
    events: list[Envelope] = []
    rows = sorted(await _rows_by_hash(session, chain_id, list(blocks)), key=lambda r: r["hash"])
    for row in rows:
        tx_hash, number = str(row["hash"]), blocks[str(row["hash"])]
        if row["status"] == INCLUDED and row["block_number"] == number:
            continue
        statement = (
            update(t)
            .where(
                _pk(chain_id, tx_hash),
                or_(t.c.status != INCLUDED, t.c.block_number.is_(None), t.c.block_number != number),
            )
            .values(status=INCLUDED, block_number=number, replaced_by=None, updated_at=now)
        )
        if await _changed(session, statement):
            changes.included += 1
            events.append(_included_event(chain_id, row, number, producer))
    await add_to_outbox(session, *events)
    return changes


def _included_event(chain_id: int, row: Any, number: int, producer: str) -> Envelope:
    return new_event(
        ChainTxIncluded(
            chain_id=chain_id,
            hash=str(row["hash"]),
            from_address=str(row["sender"]),
            nonce=int(row["nonce"]),
            block_number=number,
        ),
        key=str(row["sender"]),
        producer=producer,
    )


async def unmark_above(
    session: AsyncSession, chain_id: int, block_number: int, *, producer: str = "indexer"
) -> Changes:
    """The pipeline's hook, in a reorg's revert: transactions ``included`` above
    ``block_number`` (the common ancestor) return to ``pending``, and so do those
    ``replaced`` by one of them; one ``chain.tx_pending`` each."""
    t = idx_pending_transactions
    changes = Changes()
    now = datetime.now(UTC)
    rows = (
        (
            await session.execute(
                select(t)
                .where(
                    t.c.chain_id == chain_id,
                    t.c.status == INCLUDED,
                    t.c.block_number > block_number,
                )
                .order_by(t.c.hash)
            )
        )
        .mappings()
        .all()
    )
    events: list[Envelope] = []
    back: list[str] = []
    for row in rows:
        statement = (
            update(t)
            .where(
                _pk(chain_id, str(row["hash"])),
                t.c.status == INCLUDED,
                t.c.block_number > block_number,
            )
            .values(status=PENDING, block_number=None, updated_at=now)
        )
        if await _changed(session, statement):
            back.append(str(row["hash"]))
            events.append(pending_event(_from_row(row), producer))
    for chunk in _chunks(list(back)):
        replaced = (
            (
                await session.execute(
                    select(t)
                    .where(
                        t.c.chain_id == chain_id,
                        t.c.status == REPLACED,
                        t.c.replaced_by.in_(chunk),
                    )
                    .order_by(t.c.hash)
                )
            )
            .mappings()
            .all()
        )
        for row in replaced:
            statement = (
                update(t)
                .where(_pk(chain_id, str(row["hash"])), t.c.status == REPLACED)
                .values(status=PENDING, replaced_by=None, updated_at=now)
            )
            if await _changed(session, statement):
                back.append(str(row["hash"]))
                events.append(pending_event(_from_row(row), producer))
    changes.returned = len(back)
    await add_to_outbox(session, *events)
    return changes


async def pending_count(session: AsyncSession, chain_id: int) -> int:
    t = idx_pending_transactions
    value = await session.scalar(
        select(func.count()).select_from(t).where(t.c.chain_id == chain_id, t.c.status == PENDING)
    )
    return int(value or 0)


async def _replacement(
    session: AsyncSession, chain_id: int, sender: str, nonce: int, own: str
) -> str | None:
    """The included transaction of ``sender`` and ``nonce`` other than ``own``, if known."""
    tx = idx_transactions
    found = await session.scalar(
        select(tx.c.hash)
        .where(
            tx.c.chain_id == chain_id, tx.c.sender == sender, tx.c.nonce == nonce, tx.c.hash != own
        )
        .limit(1)
    )
    if found is None:
        t = idx_pending_transactions
        found = await session.scalar(
            select(t.c.hash)
            .where(
                t.c.chain_id == chain_id,
                t.c.sender == sender,
                t.c.nonce == nonce,
                t.c.status == INCLUDED,
                t.c.hash != own,
            )
            .limit(1)
        )
    return None if found is None else str(found)


# --- the watcher ---------------------------------------------------------------------


class MempoolSource(Protocol):
    """What the watcher needs of a node (``RpcSource`` has it)."""

    async def call(self, method: str, params: list[Any]) -> Any: ...

    async def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]: ...


@dataclass(frozen=True, slots=True)
class _Pending:
    hash: str
    sender: str
    nonce: int


@dataclass(slots=True)
class _Fate:
    row: _Pending
    status: str
    block_number: int | None = None


@dataclass(slots=True)
class WatcherStats:
    """Everything the watcher changed since it started (committed)."""

    changes: Changes = field(default_factory=Changes)
    polls: int = 0
    failed_polls: int = 0


class MempoolWatcher:
    """Discover pending transactions and follow their fate (see the module docstring).

    ``source``: node URLs (an ``RpcSource`` is opened and closed by :meth:`run`) or an
    object with ``call`` / ``batch`` (the caller opens and closes it). ``ws_url`` adds the
    ``newPendingTransactions`` subscription. ``discovery``: ``auto`` (``txpool_content``
    when the node has it, else a pending-transaction filter; detected once), ``txpool``,
    ``filter`` or ``none`` (only the subscription). ``drop_after``: seconds a transaction
    must stay gone, its nonce unused, before it is ``dropped``. ``max_reconcile``: pending
    rows checked per poll (in turns, by hash, when there are more).
    """

    def __init__(
        self,
        store: SqlStore,
        source: Sequence[str] | MempoolSource,
        chain_id: int,
        *,
        ws_url: str | None = None,
        poll_interval: float = 1.0,
        drop_after: float = 600.0,
        discovery: Discovery = "auto",
        max_reconcile: int = 5000,
        producer: str = "indexer.mempool",
    ) -> None:
        if discovery not in ("auto", "txpool", "filter", "none"):
            raise ConfigError(
                f"mempool discovery must be auto, txpool, filter or none, got {discovery!r}"
            )
        if poll_interval <= 0 or drop_after < 0 or max_reconcile < 1:
            raise ConfigError(
                "mempool: poll_interval must be > 0, drop_after >= 0 and max_reconcile >= 1"
            )
        self.store = store
        self.chain_id = chain_id
        self.ws_url = ws_url
        self.poll_interval = poll_interval
        self.drop_after = drop_after
        self.max_reconcile = max_reconcile
        self.producer = producer
        self._owned: RpcSource | None = None
        if isinstance(source, str):
            raise ConfigError("mempool: pass a list of RPC URLs, not one string")
        if isinstance(source, Sequence):
            self._owned = RpcSource(list(source))
            self.source: MempoolSource = self._owned
        else:
            self.source = source
        self.discovery: Discovery = discovery
        self.wake = asyncio.Event()
        """Set by the subscription when it heard new hashes."""
        self.stats = WatcherStats()
        self._filter: str | None = None
        self._heard: set[str] = set()
        self._missing_since: dict[str, float] = {}
        self._cursor = ""
        self._chain_checked = False

    # --- running ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Poll every ``poll_interval`` (and store what the subscription hears as soon as
        it hears it) until ``stop`` is set; a failed poll is logged and retried."""
        listener = None
        if self.ws_url is not None:
            listener = asyncio.create_task(self.listen(self.ws_url, stop))
        try:
            last_poll = -float("inf")
            while not stop.is_set():
                self.wake.clear()  # before reading what was heard: later hashes wake it again
                try:
                    if time.monotonic() - last_poll >= self.poll_interval:
                        last_poll = time.monotonic()
                        await self.poll()
                    else:
                        await self._check_chain()
                        await self._commit(await self._fetch_heard(), {})
                except (ChainError, BackendUnavailable, StoreError) as exc:
                    # StoreError: a deadlock or conflict with another writer; retried
                    self.stats.failed_polls += 1
                    REJECTED.labels(str(self.chain_id)).inc()
                    log.warning("mempool.poll_failed", error=f"{type(exc).__name__}: {exc}")
                wait = max(0.0, self.poll_interval - (time.monotonic() - last_poll))
                waits = [
                    asyncio.ensure_future(stop.wait()),
                    asyncio.ensure_future(self.wake.wait()),
                ]
                try:
                    await asyncio.wait(waits, timeout=wait, return_when="FIRST_COMPLETED")
                finally:
                    for w in waits:
                        w.cancel()
        finally:
            if listener is not None:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener
            if self._owned is not None:
                await self._owned.close()

    async def poll(self) -> Changes:
        """One discovery and one reconcile, committed in one transaction; returns what
        changed. A malformed node answer raises ChainError and stores nothing."""
        await self._check_chain()
        found = await self.discover()
        found.extend(await self._fetch_heard())
        fates = await self.reconcile(found)
        changes = await self._commit(found, fates)
        self.stats.polls += 1
        return changes

    async def _check_chain(self) -> None:
        if self._chain_checked:
            return
        node = parse_quantity(await self.source.call("eth_chainId", []), "eth_chainId")
        if node != self.chain_id:
            raise ConfigError(f"mempool: the node is chain {node}, not chain {self.chain_id}")
        self._chain_checked = True

    async def _commit(
        self, found: Sequence[PendingTransaction], fates: Mapping[str, _Fate]
    ) -> Changes:
        if not found and not fates:
            return Changes()
        async with self.store.transaction() as session:
            changes = await store_seen(session, self.store.dialect, found, producer=self.producer)
            changes += await self._apply(session, fates)
            count = await pending_count(session, self.chain_id)
        observe(self.chain_id, changes)
        PENDING_COUNT.labels(str(self.chain_id)).set(count)
        self.stats.changes += changes
        for tx_hash in fates:
            self._missing_since.pop(tx_hash, None)
        return changes

    # --- discovery -------------------------------------------------------------------------

    async def discover(self) -> list[PendingTransaction]:
        """The pending transactions ``txpool_content`` lists now; with a filter, its new
        hashes join those the subscription heard (fetched by the poll) and this is empty."""
        if self.discovery in ("auto", "txpool"):
            try:
                raw = await self.source.call("txpool_content", [])
            except ChainRpcError as exc:
                if self.discovery == "txpool" or not unsupported(exc):
                    raise
                log.info("mempool.no_txpool", error=str(exc))
                self.discovery = "filter"
            else:
                self.discovery = "txpool"
                return parse_txpool(self.chain_id, raw)
        if self.discovery == "filter":
            self._heard.update(await self._filter_changes())
        return []

    async def _filter_changes(self) -> list[str]:
        if self._filter is None:
            try:
                created = await self.source.call("eth_newPendingTransactionFilter", [])
            except ChainRpcError as exc:
                if not unsupported(exc):
                    raise
                log.warning("mempool.no_pending_filter", error=str(exc))
                self.discovery = "none"
                return []
            if not isinstance(created, str) or not created.startswith("0x"):
                raise ChainError(
                    f"eth_newPendingTransactionFilter: expected a filter id, got {created!r}"
                )
            self._filter = created
        try:
            raw = await self.source.call("eth_getFilterChanges", [self._filter])
        except ChainRpcError as exc:  # expired or lost (a node restart): a new one next poll
            log.info("mempool.filter_lost", error=str(exc))
            self._filter = None
            return []
        return parse_hashes(raw, "eth_getFilterChanges")

    async def _fetch_heard(self) -> list[PendingTransaction]:
        heard, self._heard = sorted(self._heard), set()
        try:
            return await self._by_hash(heard)
        except BackendUnavailable:
            self._heard.update(heard)  # the node was unreachable: ask again next time
            raise

    async def _by_hash(self, hashes: Sequence[str]) -> list[PendingTransaction]:
        """The transactions of ``hashes`` still pending (gone or mined ones are left out:
        the reconcile sees to rows already stored)."""
        if not hashes:
            return []
        answers = await self.source.batch([("eth_getTransactionByHash", [h]) for h in hashes])
        out = []
        for tx_hash, raw in zip(hashes, answers, strict=True):
            lookup = parse_lookup(self.chain_id, tx_hash, raw)
            if isinstance(lookup, PendingTransaction):
                out.append(lookup)
        return out

    async def listen(self, ws_url: str, stop: asyncio.Event, *, retry_s: float = 1.0) -> None:
        """Collect ``newPendingTransactions`` hashes until ``stop`` is set (sets
        :attr:`wake`); reconnects after ``retry_s`` when the socket fails."""

        def heard(result: Any) -> None:
            if isinstance(result, dict):  # nodes that send whole transactions
                result = result.get("hash")
            if isinstance(result, str) and HASH.fullmatch(result):
                self._heard.add(result.lower())
                self.wake.set()

        try:
            await subscribe(
                ws_url,
                "newPendingTransactions",
                heard,
                stop,
                retry_s=retry_s,
                label="mempool.subscription",
            )
        except SubscriptionRefused as exc:
            log.warning("mempool.no_subscription", error=str(exc))

    # --- fate ------------------------------------------------------------------------------

    async def _pending_rows(self) -> list[_Pending]:
        """At most ``max_reconcile`` pending rows, in turns by hash across polls."""
        t = idx_pending_transactions
        columns = (t.c.hash, t.c.sender, t.c.nonce)
        base = select(*columns).where(t.c.chain_id == self.chain_id, t.c.status == PENDING)
        async with self.store.transaction() as session:
            rows = list(
                (
                    await session.execute(
                        base.where(t.c.hash > self._cursor)
                        .order_by(t.c.hash)
                        .limit(self.max_reconcile)
                    )
                ).all()
            )
            if len(rows) < self.max_reconcile and self._cursor:
                more = self.max_reconcile - len(rows)
                rows.extend(
                    (
                        await session.execute(
                            base.where(t.c.hash <= self._cursor).order_by(t.c.hash).limit(more)
                        )
                    ).all()
                )
        out = [_Pending(str(h), str(s), int(n)) for h, s, n in rows]
        self._cursor = out[-1].hash if len(out) == self.max_reconcile else ""
        return out

    async def reconcile(self, in_pool: Sequence[PendingTransaction]) -> dict[str, _Fate]:
        """The fates of the pending rows the node does not list as pending now (``in_pool``:
        what this poll found pending). Reads only; :meth:`poll` writes them."""
        pool = {tx.hash: tx for tx in in_pool}
        rows = [r for r in await self._pending_rows() if r.hash not in pool]
        for tx_hash in pool:
            self._missing_since.pop(tx_hash, None)
        if not rows:
            return {}
        lookups = await self._lookup(rows)
        fates: dict[str, _Fate] = {}
        gone: list[_Pending] = []
        for row, found in zip(rows, lookups, strict=True):
            if isinstance(found, Inclusion):
                fates[row.hash] = _Fate(row, INCLUDED, found.block_number)
            elif found is None:
                gone.append(row)
            else:
                self._missing_since.pop(row.hash, None)
        if not gone:
            return fates
        senders = sorted({r.sender for r in gone})
        counts = await self.source.batch(
            [("eth_getTransactionCount", [s, "latest"]) for s in senders]
        )
        next_nonce = {
            s: parse_quantity(c, f"eth_getTransactionCount({s})")
            for s, c in zip(senders, counts, strict=True)
        }
        # A transaction mined between its lookup and the nonce read would look replaced
        # by itself: look the suspects up again, after the nonce read.
        suspects = [r for r in gone if r.nonce < next_nonce[r.sender]]
        again = dict(zip([r.hash for r in suspects], await self._lookup(suspects), strict=True))
        siblings = await self._with_pending_sibling(gone, pool.values())
        now = time.monotonic()
        for row in gone:
            found = again.get(row.hash)
            if isinstance(found, Inclusion):
                fates[row.hash] = _Fate(row, INCLUDED, found.block_number)
                continue
            if found is not None:  # back in the pool
                self._missing_since.pop(row.hash, None)
                continue
            since = self._missing_since.setdefault(row.hash, now)
            fate = gone_fate(
                row.nonce,
                next_nonce[row.sender],
                now - since,
                self.drop_after,
                sibling_pending=row.hash in siblings,
            )
            if fate is not None:
                fates[row.hash] = _Fate(row, fate)
        return fates

    async def _lookup(self, rows: Sequence[_Pending]) -> list[Lookup]:
        if not rows:
            return []
        answers = await self.source.batch([("eth_getTransactionByHash", [r.hash]) for r in rows])
        out = []
        for row, raw in zip(rows, answers, strict=True):
            found = parse_lookup(self.chain_id, row.hash, raw)
            if found is not None:
                sender = found.sender
                if sender != row.sender:
                    raise ChainError(
                        f"eth_getTransactionByHash({row.hash}): from: {sender} differs from "
                        f"the stored sender {row.sender}"
                    )
            out.append(found)
        return out

    async def _with_pending_sibling(
        self, rows: Sequence[_Pending], in_pool: Iterable[PendingTransaction]
    ) -> set[str]:
        """The hashes of ``rows`` for which another pending transaction (stored, or in the
        pool now) has the same sender and nonce: a replacement not mined yet."""
        t = idx_pending_transactions
        wanted = {(r.sender, r.nonce) for r in rows}
        holders: dict[tuple[str, int], set[str]] = {}
        for tx in in_pool:
            if (tx.sender, tx.nonce) in wanted:
                holders.setdefault((tx.sender, tx.nonce), set()).add(tx.hash)
        async with self.store.transaction() as session:
            for chunk in _chunks(sorted({r.sender for r in rows})):
                for h, s, n in (
                    await session.execute(
                        select(t.c.hash, t.c.sender, t.c.nonce).where(
                            t.c.chain_id == self.chain_id,
                            t.c.status == PENDING,
                            t.c.sender.in_(chunk),
                        )
                    )
                ).all():
                    key = (str(s), int(n))
                    if key in wanted:
                        holders.setdefault(key, set()).add(str(h))
        return {r.hash for r in rows if holders.get((r.sender, r.nonce), set()) - {r.hash}}

    async def _apply(self, session: AsyncSession, fates: Mapping[str, _Fate]) -> Changes:
        t = idx_pending_transactions
        changes = Changes()
        now = datetime.now(UTC)
        events: list[Envelope] = []
        # Inclusions first, so that a replacement included in this very poll is found as
        # replaced_by; by hash within each group: one lock order for every writer.
        order = sorted(fates.values(), key=lambda f: (f.status != INCLUDED, f.row.hash))
        for fate in order:
            row = fate.row
            where = (_pk(self.chain_id, row.hash), t.c.status == PENDING)
            if fate.status == INCLUDED:
                assert fate.block_number is not None
                statement = (
                    update(t)
                    .where(*where)
                    .values(status=INCLUDED, block_number=fate.block_number, updated_at=now)
                )
                if await _changed(session, statement):
                    changes.included += 1
                    mapping = {"hash": row.hash, "sender": row.sender, "nonce": row.nonce}
                    events.append(
                        _included_event(self.chain_id, mapping, fate.block_number, self.producer)
                    )
            elif fate.status == REPLACED:
                by = await _replacement(session, self.chain_id, row.sender, row.nonce, row.hash)
                statement = (
                    update(t).where(*where).values(status=REPLACED, replaced_by=by, updated_at=now)
                )
                if await _changed(session, statement):
                    changes.replaced += 1
                    events.append(
                        new_event(
                            ChainTxReplaced(
                                chain_id=self.chain_id,
                                hash=row.hash,
                                from_address=row.sender,
                                nonce=row.nonce,
                                replaced_by=by,
                            ),
                            key=row.sender,
                            producer=self.producer,
                        )
                    )
            else:
                statement = update(t).where(*where).values(status=DROPPED, updated_at=now)
                if await _changed(session, statement):
                    changes.dropped += 1
                    events.append(
                        new_event(
                            ChainTxDropped(
                                chain_id=self.chain_id,
                                hash=row.hash,
                                from_address=row.sender,
                                nonce=row.nonce,
                            ),
                            key=row.sender,
                            producer=self.producer,
                        )
                    )
        await add_to_outbox(session, *events)
        return changes
