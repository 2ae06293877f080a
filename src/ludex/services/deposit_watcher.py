"""Deposit watcher: mirrors the Ludex vault's deposits, withdrawals, locks and releases
into the ledger, once each, after the confirmation depth, through reorgs.

One round (:meth:`VaultWatcher.run_once`):

1. **Reorg check.** The cursor (``chain_cursors``: the last block read and its hash)
   is compared with the node's block at that height. If they differ, the watcher
   walks back through its checkpoints (``chain_checkpoints``: recent cursor
   positions) to the newest block the node still has, marks every event above it
   whose block is gone ``reverted`` (voiding its pending ledger credit), and moves
   the cursor back there, so the new branch is read again.
2. **Read.** ``eth_getLogs`` of the contract from the cursor to the head, at most
   ``max_range`` blocks per call. Every answer is validated at the edge
   (:mod:`ludex.chain.vault`): each log's block hash must be the node's hash of that
   block, the range must hang off the cursor's block, the last block must not change
   while the logs are read. A bad answer raises ChainError; nothing of it is stored
   and the round is tried again. Each range is one transaction: its new events
   (``chain_vault_events``, status ``pending``; a deposit also reserves a pending
   ledger credit, the deposit in flight) and the cursor move together.
3. **Confirm.** Pending events whose block has ``confirmations`` blocks on top and is
   still the node's block at that height are applied in chain order: the exact
   on-chain amounts (``chain_vault_balances``) move, the ledger moves from their
   floor before to their floor after (:func:`ludex.chain.vault.mirror_legs`; a
   deposit posts its pending credit), the event becomes ``applied``, and deposits and
   withdrawals emit ``wallet.deposit_credited`` / ``wallet.withdrawal_debited``
   through the outbox, in the same transaction (the realtime hub forwards
   ``wallet.*`` events to the player's channel). A pending event whose block is no
   longer canonical is reverted instead.

Exactly once: an event is identified by (chain id, tx hash, log index); the ledger
transfer ids derive from that identity (:func:`ludex.chain.vault.transfer_id`), so a
deposit's credit is a single ledger id whatever branch it was seen on, and a second
watcher, a restart or a retried round writes nothing new. Every write transaction
locks the cursor's row first, so two watchers of one contract take turns.

A reorg deeper than the confirmation depth that removes an applied event is not
undone automatically: the round raises ChainError naming the event, the watcher
keeps retrying and logging, and an operator decides (``ludex chain reconcile``
shows the difference).

With ``ws_url``, an ``eth_subscribe("newHeads")`` WebSocket wakes the watcher as soon
as a block arrives; it only triggers a round, and when it fails the watcher polls
every ``poll_interval`` seconds (and says so in the log) while it reconnects.

This service must never apply an event twice, store a node answer it has not
validated, hold a database transaction open across a node call, or log a URL's
credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from eth_utils.address import to_checksum_address
from prometheus_client import Counter, Gauge
from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ludex import ledger
from ludex.adapters.chain.jsonrpc import parse_quantity
from ludex.adapters.sql.outbox import add_to_outbox
from ludex.adapters.sql.tables import (
    chain_checkpoints,
    chain_cursors,
    chain_vault_balances,
    chain_vault_events,
)
from ludex.chain.abi import ContractAbi
from ludex.chain.artifacts import load_artifact
from ludex.chain.vault import (
    TRANSFER_CODES,
    BlockHeader,
    ChainLog,
    EventStatus,
    Holding,
    Leg,
    VaultAccounts,
    VaultEvent,
    VaultEventKind,
    mirror_legs,
    parse_header,
    parse_log,
    reserve_units,
    transfer_id,
    vault_accounts,
    vault_event,
)
from ludex.config import Settings, redact_url
from ludex.errors import ChainError, ChainRpcError, LedgerError, LudexError
from ludex.events import DepositCredited, WithdrawalDebited, new_event
from ludex.ledger import TransferSpec
from ludex.ports.chain import ChainClient
from ludex.ports.store import OperationalStore

log = structlog.get_logger(__name__)

MAX_RANGE: Final = 2000
"""Blocks per ``eth_getLogs`` call at most (providers cap ranges; 2,000 is accepted widely)."""
CONFIRM_BATCH: Final = 500
"""Events applied per transaction at most."""
CHECKPOINT_WINDOW: Final = 1024
CHECKPOINTS_KEPT: Final = 32
"""Checkpoints are kept for the last CHECKPOINT_WINDOW blocks, and the newest
CHECKPOINTS_KEPT whatever their age (ranges read while catching up are long)."""
MAX_BACKOFF_S: Final = 30.0
WS_MAX_BACKOFF_S: Final = 60.0
WS_ANSWER_TIMEOUT_S: Final = 10.0

EVENTS = Counter(
    "ludex_vault_events_total", "Vault events by what the watcher did with them", ["status"]
)
CURSOR = Gauge("ludex_vault_cursor_block", "The last block the vault watcher has read")
REORGS = Counter("ludex_vault_reorgs_total", "Reorgs the vault watcher walked back from")

_E = chain_vault_events.c
_B = chain_vault_balances.c
_C = chain_cursors.c
_K = chain_checkpoints.c


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last block read; ``hash`` None before the first block is read."""

    number: int
    hash: str | None


@dataclass
class WatchSummary:
    """What one round did."""

    head: int = -1
    cursor: int = -1
    blocks_read: int = 0
    seen: int = 0
    applied: int = 0
    reverted: int = 0
    rejected: int = 0
    reorgs: int = 0


@dataclass(frozen=True, slots=True)
class _Batch:
    last: BlockHeader
    events: list[VaultEvent]


@dataclass
class _Counts:
    seen: int = 0
    applied: int = 0
    reverted: int = 0
    rejected: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


class VaultWatcher:
    """Follows one Ludex contract's vault events into the ledger (module docstring)."""

    def __init__(
        self,
        store: OperationalStore,
        chain: ChainClient,
        *,
        contract: str,
        confirmations: int,
        ledger_unit: int,
        poll_interval: float,
        ws_url: str | None = None,
        producer: str = "deposit-watcher",
        start_block: int | None = None,
        max_range: int = MAX_RANGE,
    ) -> None:
        if confirmations < 0:
            raise ValueError(f"confirmations must be >= 0, got {confirmations}")
        if ledger_unit < 1:
            raise ValueError(f"ledger_unit must be >= 1, got {ledger_unit}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        if max_range < 1:
            raise ValueError(f"max_range must be >= 1, got {max_range}")
        self._store = store
        self._chain = chain
        self.contract = to_checksum_address(contract)
        self._abi = ContractAbi(load_artifact("Ludex").abi)
        self._confirmations = confirmations
        self._unit = ledger_unit
        self._poll_interval = poll_interval
        self._ws_url = ws_url
        self._producer = producer
        self._start_block = start_block
        self._max_range = max_range
        self._chain_id: int | None = None
        self._name = f"vault:{self.contract}"
        self.ws_connected = False

    def __repr__(self) -> str:
        return f"VaultWatcher({self.contract}, confirmations={self._confirmations})"

    # --- the loop ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Rounds until ``stop``: on each new head (WebSocket) or every poll interval."""
        wake = asyncio.Event()
        subscription = None
        if self._ws_url:
            subscription = asyncio.create_task(self._subscribe(wake, stop), name="vault-ws")
        log.info(
            "vault.watcher.started",
            contract=self.contract,
            confirmations=self._confirmations,
            ledger_unit=self._unit,
            websocket=redact_url(self._ws_url) if self._ws_url else None,
        )
        delay = self._poll_interval
        try:
            while not stop.is_set():
                wake.clear()
                try:
                    summary = await self.run_once()
                    delay = self._poll_interval
                    if summary.seen or summary.applied or summary.reverted or summary.reorgs:
                        log.info("vault.watcher.round", **vars(summary))
                except LudexError as exc:
                    delay = min(delay * 2, MAX_BACKOFF_S)
                    log.warning(
                        "vault.watcher.round_failed",
                        error=f"{type(exc).__name__}: {exc}",
                        retry_in=delay,
                    )
                await _first_of(stop, wake, timeout=delay)
        finally:
            if subscription is not None:
                subscription.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await subscription
            log.info("vault.watcher.stopped", contract=self.contract)

    async def _subscribe(self, wake: asyncio.Event, stop: asyncio.Event) -> None:
        """Set ``wake`` on every new head; on failure log, poll, and reconnect later."""
        from websockets.asyncio.client import connect
        from websockets.exceptions import WebSocketException

        assert self._ws_url is not None
        where = redact_url(self._ws_url)
        backoff = 1.0
        while not stop.is_set():
            try:
                async with connect(self._ws_url, open_timeout=5, close_timeout=1) as socket:
                    request = {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "eth_subscribe",
                        "params": ["newHeads"],
                    }
                    await socket.send(json.dumps(request))
                    answer = json.loads(await asyncio.wait_for(socket.recv(), WS_ANSWER_TIMEOUT_S))
                    if not isinstance(answer, dict) or not isinstance(answer.get("result"), str):
                        raise ChainError(f"eth_subscribe refused: {str(answer)[:200]}")
                    self.ws_connected = True
                    backoff = 1.0
                    log.info("vault.watcher.subscribed", websocket=where)
                    wake.set()  # blocks may have arrived while we were not listening
                    async for _message in socket:
                        wake.set()
                raise ChainError("the node closed the subscription")
            except (OSError, TimeoutError, ValueError, WebSocketException, ChainError) as exc:
                self.ws_connected = False
                log.warning(
                    "vault.watcher.websocket_failed",
                    websocket=where,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                    fallback=f"polling every {self._poll_interval} s",
                    retry_in=backoff,
                )
            await _first_of(stop, None, timeout=backoff)
            backoff = min(backoff * 2, WS_MAX_BACKOFF_S)

    # --- one round --------------------------------------------------------------------

    async def run_once(self) -> WatchSummary:
        """One round: reorg check, read up to the head, confirm what is deep enough."""
        chain_id = await self._get_chain_id()
        head = parse_quantity(await self._chain.call("eth_blockNumber", []), "eth_blockNumber")
        summary = WatchSummary(head=head)
        cursor = await self._read_cursor(chain_id)
        if cursor is None:
            cursor = Cursor(await self._first_block(head) - 1, None)
        elif not await self._is_canonical(cursor.number, cursor.hash):
            summary.reorgs += 1
            REORGS.inc()
            rewound = await self._rewind(chain_id, cursor, head, summary)
            if rewound is None:
                return summary  # another watcher moved the cursor meanwhile
            cursor = rewound
        while cursor.number < head:
            to = min(head, cursor.number + self._max_range)
            batch = await self._read(chain_id, cursor, to)
            if batch is None:
                break  # the cursor's block was just reorged away: the next round walks back
            counts = await self._record(chain_id, cursor, batch)
            if counts is None:
                break
            summary.blocks_read += to - cursor.number
            summary.seen += counts.seen
            cursor = Cursor(batch.last.number, batch.last.hash)
            CURSOR.set(cursor.number)
        summary.cursor = cursor.number
        if cursor.hash is not None:
            await self._confirm(chain_id, min(head, cursor.number), summary)
        return summary

    async def _get_chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = await self._chain.chain_id()
        return self._chain_id

    async def _header(self, number: int) -> BlockHeader | None:
        raw = await self._chain.call("eth_getBlockByNumber", [hex(number), False])
        return parse_header(raw, number)

    async def _is_canonical(self, number: int, block_hash: str | None) -> bool:
        header = await self._header(number)
        return header is not None and header.hash == block_hash

    async def _first_block(self, head: int) -> int:
        """Where reading starts: ``start_block``, else the contract's deployment block."""
        if self._start_block is None:
            self._start_block = await self._deployment_block(head)
            log.info("vault.watcher.start_block", block=self._start_block)
        return self._start_block

    async def _deployment_block(self, head: int) -> int:
        """The first block with code at the contract (binary search over eth_getCode);
        0 when the node keeps no historical state."""

        async def has_code(number: int) -> bool:
            code = await self._chain.call("eth_getCode", [self.contract, hex(number)])
            return isinstance(code, str) and code not in ("0x", "0x0")

        if not await has_code(head):
            raise ChainError(
                f"no contract at {self.contract} on this chain (block {head}); check "
                "LUDEX_CHAIN_CONTRACT and LUDEX_CHAIN_URL"
            )
        low, high = 0, head
        try:
            while low < high:
                middle = (low + high) // 2
                if await has_code(middle):
                    high = middle
                else:
                    low = middle + 1
        except ChainRpcError as exc:
            log.warning("vault.watcher.no_history", error=str(exc)[:200], start_block=0)
            return 0
        return low

    # --- reading ----------------------------------------------------------------------

    async def _read(self, chain_id: int, cursor: Cursor, to: int) -> _Batch | None:
        """The validated vault events of blocks (cursor, to]; None if the range no
        longer hangs off the cursor's block (a reorg under us)."""
        first = cursor.number + 1
        last = await self._header(to)
        if last is None:
            raise ChainError(f"the node has no block {to} any more; the chain changed")
        raw = await self._chain.call(
            "eth_getLogs",
            [{"address": self.contract, "fromBlock": hex(first), "toBlock": hex(to)}],
        )
        if not isinstance(raw, list):
            raise ChainError(f"eth_getLogs: expected a list, got {type(raw).__name__}")
        logs = [parse_log(entry) for entry in raw]
        headers: dict[int, BlockHeader] = {to: last}
        for entry in logs:
            await self._check_log(entry, first, to, headers)
        if cursor.hash is not None:
            start = headers.get(first) or await self._header(first)
            if start is None:
                raise ChainError(f"the node has no block {first} any more; the chain changed")
            if start.parent_hash != cursor.hash:
                log.warning("vault.watcher.reorg_under_read", block=cursor.number)
                return None
        again = await self._header(to)
        if again != last:
            raise ChainError(f"block {to} changed while its logs were read; retrying")
        events = []
        seen: set[tuple[str, int]] = set()
        for entry in logs:
            if (entry.tx_hash, entry.log_index) in seen:
                raise ChainError(f"eth_getLogs listed {entry.tx_hash}#{entry.log_index} twice")
            seen.add((entry.tx_hash, entry.log_index))
            decoded = self._abi.decode_log(entry.address, entry.topics, entry.data)
            if decoded is None:
                continue
            event = vault_event(chain_id, entry, decoded.name, decoded.args)
            if event is not None:
                events.append(event)
        events.sort(key=lambda e: (e.block_number, e.log_index))
        return _Batch(last, events)

    async def _check_log(
        self, entry: ChainLog, first: int, to: int, headers: dict[int, BlockHeader]
    ) -> None:
        where = f"log {entry.tx_hash}#{entry.log_index}"
        if entry.address != self.contract:
            raise ChainError(f"eth_getLogs: {where} is from {entry.address}, not {self.contract}")
        if not first <= entry.block_number <= to:
            raise ChainError(
                f"eth_getLogs: {where} is in block {entry.block_number}, outside {first}..{to}"
            )
        header = headers.get(entry.block_number)
        if header is None:
            header = await self._header(entry.block_number)
            if header is None:
                raise ChainError(f"{where}: the node has no block {entry.block_number}")
            headers[entry.block_number] = header
        if entry.block_hash != header.hash:
            raise ChainError(
                f"{where} names block {entry.block_number} as {entry.block_hash}, but the "
                f"node's block {entry.block_number} is {header.hash}: the answers come from "
                "two branches; retrying"
            )

    # --- the cursor -------------------------------------------------------------------

    def _cursor_where(self, chain_id: int) -> Any:
        return and_(_C.chain_id == chain_id, _C.name == self._name)

    async def _read_cursor(self, chain_id: int) -> Cursor | None:
        async with self._store.transaction() as session:
            row = (
                await session.execute(select(chain_cursors).where(self._cursor_where(chain_id)))
            ).first()
        return Cursor(row.block_number, row.block_hash) if row else None

    async def _lock_cursor(self, session: AsyncSession, chain_id: int) -> Cursor | None:
        row = (
            await session.execute(
                select(chain_cursors).where(self._cursor_where(chain_id)).with_for_update()
            )
        ).first()
        return Cursor(row.block_number, row.block_hash) if row else None

    async def _move_cursor(
        self, session: AsyncSession, chain_id: int, exists: bool, to: Cursor, now: datetime
    ) -> None:
        if to.hash is None:
            await session.execute(delete(chain_cursors).where(self._cursor_where(chain_id)))
            return
        values = {"block_number": to.number, "block_hash": to.hash, "updated_at": now}
        if exists:
            await session.execute(
                update(chain_cursors).where(self._cursor_where(chain_id)).values(**values)
            )
        else:
            await session.execute(
                insert(chain_cursors).values(chain_id=chain_id, name=self._name, **values)
            )

    async def _checkpoint(
        self, session: AsyncSession, chain_id: int, last: BlockHeader, now: datetime
    ) -> None:
        mine = and_(_K.chain_id == chain_id, _K.name == self._name)
        await session.execute(
            insert(chain_checkpoints).values(
                chain_id=chain_id,
                name=self._name,
                block_number=last.number,
                block_hash=last.hash,
                created_at=now,
            )
        )
        kept = (
            await session.execute(
                select(_K.block_number)
                .where(mine)
                .order_by(_K.block_number.desc())
                .offset(CHECKPOINTS_KEPT - 1)
                .limit(1)
            )
        ).scalar()
        if kept is not None:
            below = min(kept, last.number - CHECKPOINT_WINDOW)
            await session.execute(delete(chain_checkpoints).where(mine, _K.block_number < below))

    # --- recording what was read ---------------------------------------------------------

    async def _record(self, chain_id: int, cursor: Cursor, batch: _Batch) -> _Counts | None:
        """Store a range's events (pending) and move the cursor, in one transaction;
        None if another watcher moved the cursor first."""
        counts = _Counts()
        async with self._store.transaction() as session:
            locked = await self._lock_cursor(session, chain_id)
            if (locked or Cursor(cursor.number, None)) != cursor:
                return None
            now = _now()
            for event in batch.events:
                if await self._see(session, event, now):
                    counts.seen += 1
            last = Cursor(batch.last.number, batch.last.hash)
            await self._move_cursor(session, chain_id, locked is not None, last, now)
            await self._checkpoint(session, chain_id, batch.last, now)
        EVENTS.labels("seen").inc(counts.seen)
        return counts

    async def _see(self, session: AsyncSession, event: VaultEvent, now: datetime) -> bool:
        """Record a sighting; True if the event is new or back on a new branch."""
        row = (
            await session.execute(
                select(chain_vault_events).where(
                    _E.chain_id == event.chain_id,
                    _E.tx_hash == event.tx_hash,
                    _E.log_index == event.log_index,
                )
            )
        ).first()
        content = {
            "contract": self.contract,
            "block_number": event.block_number,
            "block_hash": event.block_hash,
            "event": event.kind.value,
            "player": event.player,
            "token": event.token,
            "amount": str(event.amount),
            "status": EventStatus.PENDING.value,
            "detail": None,
            "updated_at": now,
        }
        if row is None:
            attempt = 1
            reserved, amount = await self._reserve(session, event, attempt)
            await session.execute(
                insert(chain_vault_events).values(
                    chain_id=event.chain_id,
                    tx_hash=event.tx_hash,
                    log_index=event.log_index,
                    attempt=attempt,
                    transfer_id=reserved,
                    ledger_amount=amount,
                    created_at=now,
                    **content,
                )
            )
            log.info(
                "vault.event.seen",
                kind=event.kind.value,
                tx_hash=event.tx_hash,
                log_index=event.log_index,
                block=event.block_number,
                player=event.player,
            )
            return True
        status = EventStatus(row.status)
        if status in (EventStatus.APPLIED, EventStatus.REJECTED):
            if row.block_hash != event.block_hash:
                raise self._deep_reorg(row)
            return False
        if status is EventStatus.PENDING and row.block_hash == event.block_hash:
            return False
        # Reverted and back on the new branch, or pending on a branch the cursor check
        # did not catch: a new sighting, with a reservation of its own.
        if status is EventStatus.PENDING:
            await self._void(session, row)
        attempt = row.attempt + 1
        reserved, amount = await self._reserve(session, event, attempt)
        await session.execute(
            update(chain_vault_events)
            .where(
                _E.chain_id == event.chain_id,
                _E.tx_hash == event.tx_hash,
                _E.log_index == event.log_index,
            )
            .values(attempt=attempt, transfer_id=reserved, ledger_amount=amount, **content)
        )
        log.info(
            "vault.event.seen_again",
            kind=event.kind.value,
            tx_hash=event.tx_hash,
            log_index=event.log_index,
            block=event.block_number,
            attempt=attempt,
        )
        return True

    async def _reserve(
        self, session: AsyncSession, event: VaultEvent, attempt: int
    ) -> tuple[str | None, int | None]:
        """A deposit's pending ledger credit (the deposit in flight): its id and units."""
        if event.kind is not VaultEventKind.DEPOSITED:
            return None, None
        accounts = self._accounts(event.chain_id, event.token, event.player)
        amount = reserve_units(event.amount, self._unit)
        pending_id = transfer_id(
            event.chain_id, event.tx_hash, event.log_index, f"pending:{attempt}"
        )
        try:
            async with session.begin_nested():
                await ledger.create_accounts(session, accounts.specs())
                await ledger.transfer(
                    session,
                    [
                        TransferSpec(
                            id=pending_id,
                            debit=accounts.chain,
                            credit=accounts.available,
                            amount=amount,
                            ledger=accounts.ledger,
                            code=TRANSFER_CODES[event.kind],
                            metadata=_metadata(event),
                            pending=True,
                        )
                    ],
                )
        except LedgerError as exc:
            # Not fatal: confirmation decides (and a junk amount is rejected there).
            log.warning(
                "vault.deposit.not_reserved",
                tx_hash=event.tx_hash,
                log_index=event.log_index,
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            return None, None
        return pending_id, amount

    async def _void(self, session: AsyncSession, row: Any) -> None:
        """Void the pending credit of a sighting (its deposit left the chain)."""
        if row.transfer_id is None or row.event != VaultEventKind.DEPOSITED.value:
            return
        pending = await ledger.get_transfer(session, row.transfer_id)
        if pending is None or pending.state is not ledger.TransferState.PENDING:
            return
        await ledger.void_pending(
            session,
            row.transfer_id,
            id=transfer_id(row.chain_id, row.tx_hash, row.log_index, f"void:{row.attempt}"),
        )

    def _accounts(self, chain_id: int, token: str, player: str) -> VaultAccounts:
        return vault_accounts(chain_id, self.contract, token, player)

    def _deep_reorg(self, row: Any) -> ChainError:
        message = (
            f"reorg deeper than {self._confirmations} confirmations: {row.event} "
            f"{row.tx_hash}#{row.log_index} (block {row.block_number}) was already "
            f"{row.status} and its block is no longer canonical; nothing is undone "
            "automatically: stop, compare with `ludex chain reconcile`, decide"
        )
        log.error("vault.watcher.deep_reorg", tx_hash=row.tx_hash, log_index=row.log_index)
        return ChainError(message)

    # --- reorgs -----------------------------------------------------------------------

    async def _rewind(
        self, chain_id: int, cursor: Cursor, head: int, summary: WatchSummary
    ) -> Cursor | None:
        """Walk back to the newest checkpoint the node agrees with; revert what is above."""
        async with self._store.transaction() as session:
            checkpoints = (
                await session.execute(
                    select(_K.block_number, _K.block_hash)
                    .where(_K.chain_id == chain_id, _K.name == self._name)
                    .order_by(_K.block_number.desc())
                )
            ).all()
        ancestor = Cursor(await self._first_block(head) - 1, None)
        for number, block_hash in checkpoints:
            if number <= head and await self._is_canonical(number, block_hash):
                ancestor = Cursor(number, block_hash)
                break
        async with self._store.transaction() as session:
            suspects = (
                await session.execute(
                    select(chain_vault_events).where(
                        _E.chain_id == chain_id,
                        _E.contract == self.contract,
                        _E.block_number > ancestor.number,
                        _E.status != EventStatus.REVERTED.value,
                    )
                )
            ).all()
        canonical = await self._canonical_hashes({row.block_number for row in suspects})
        reverted = 0
        async with self._store.transaction() as session:
            locked = await self._lock_cursor(session, chain_id)
            if locked != cursor:
                return None
            for row in suspects:
                if canonical[row.block_number] == row.block_hash:
                    continue
                fresh = await self._event_row(session, row, lock=True)
                if fresh is None or fresh.status == EventStatus.REVERTED.value:
                    continue
                if fresh.status != EventStatus.PENDING.value:
                    raise self._deep_reorg(fresh)
                await self._revert(session, fresh)
                reverted += 1
            await session.execute(
                delete(chain_checkpoints).where(
                    _K.chain_id == chain_id,
                    _K.name == self._name,
                    _K.block_number > ancestor.number,
                )
            )
            await self._move_cursor(session, chain_id, True, ancestor, _now())
        summary.reverted += reverted
        EVENTS.labels("reverted").inc(reverted)
        log.warning(
            "vault.watcher.reorg",
            cursor=cursor.number,
            common_ancestor=ancestor.number,
            reverted=reverted,
        )
        return ancestor

    async def _canonical_hashes(self, numbers: set[int]) -> dict[int, str | None]:
        out: dict[int, str | None] = {}
        for number in sorted(numbers):
            header = await self._header(number)
            out[number] = header.hash if header else None
        return out

    async def _event_row(self, session: AsyncSession, row: Any, *, lock: bool = False) -> Any:
        stmt = select(chain_vault_events).where(
            _E.chain_id == row.chain_id, _E.tx_hash == row.tx_hash, _E.log_index == row.log_index
        )
        if lock:
            stmt = stmt.with_for_update()
        return (await session.execute(stmt)).first()

    async def _revert(self, session: AsyncSession, row: Any) -> None:
        await self._void(session, row)
        await self._set_status(session, row, EventStatus.REVERTED, detail="block reorged away")
        log.warning(
            "vault.event.reverted",
            kind=row.event,
            tx_hash=row.tx_hash,
            log_index=row.log_index,
            block=row.block_number,
        )

    async def _set_status(
        self, session: AsyncSession, row: Any, status: EventStatus, **values: Any
    ) -> None:
        await session.execute(
            update(chain_vault_events)
            .where(
                _E.chain_id == row.chain_id,
                _E.tx_hash == row.tx_hash,
                _E.log_index == row.log_index,
            )
            .values(status=status.value, updated_at=_now(), **values)
        )

    # --- confirmation -----------------------------------------------------------------

    async def _confirm(self, chain_id: int, head: int, summary: WatchSummary) -> None:
        """Apply (or revert) the pending events that have ``confirmations`` blocks on top."""
        deepest = head - self._confirmations
        while deepest >= 0:
            async with self._store.transaction() as session:
                due = (
                    await session.execute(
                        select(chain_vault_events)
                        .where(
                            _E.status == EventStatus.PENDING.value,
                            _E.block_number <= deepest,
                            _E.chain_id == chain_id,
                            _E.contract == self.contract,
                        )
                        .order_by(_E.block_number, _E.log_index)
                        .limit(CONFIRM_BATCH)
                    )
                ).all()
            if not due:
                return
            canonical = await self._canonical_hashes({row.block_number for row in due})
            counts = _Counts()
            async with self._store.transaction() as session:
                await self._lock_cursor(session, chain_id)
                for row in due:
                    fresh = await self._event_row(session, row, lock=True)
                    if (
                        fresh is None
                        or fresh.status != EventStatus.PENDING.value
                        or (fresh.block_hash, fresh.attempt) != (row.block_hash, row.attempt)
                    ):
                        continue  # another watcher got there first
                    if canonical[fresh.block_number] != fresh.block_hash:
                        await self._revert(session, fresh)
                        counts.reverted += 1
                    elif await self._apply(session, fresh):
                        counts.applied += 1
                    else:
                        counts.rejected += 1
            summary.applied += counts.applied
            summary.reverted += counts.reverted
            summary.rejected += counts.rejected
            for status in ("applied", "reverted", "rejected"):
                EVENTS.labels(status).inc(getattr(counts, status))
            if len(due) < CONFIRM_BATCH:
                return

    async def _apply(self, session: AsyncSession, row: Any) -> bool:
        """Mirror one confirmed event in the ledger; False if the ledger refused it."""
        kind = VaultEventKind(row.event)
        amount = int(row.amount)
        accounts = self._accounts(row.chain_id, row.token, row.player)
        key: dict[str, Any] = {
            "chain_id": row.chain_id,
            "contract": self.contract,
            "token": row.token,
            "player": row.player,
        }
        held = (
            await session.execute(
                select(_B.available, _B.locked)
                .where(*(getattr(_B, k) == v for k, v in key.items()))
                .with_for_update()
            )
        ).first()
        before = Holding(int(held.available), int(held.locked)) if held else Holding()
        after = before.after(kind, amount)
        # The exact amounts follow the chain whatever the ledger says (a rejected event
        # included), so later events are measured from the truth.
        values = {"available": str(after.available), "locked": str(after.locked)}
        if held:
            await session.execute(
                update(chain_vault_balances)
                .where(*(getattr(_B, k) == v for k, v in key.items()))
                .values(updated_at=_now(), **values)
            )
        else:
            await session.execute(
                insert(chain_vault_balances).values(updated_at=_now(), **key, **values)
            )
        legs = mirror_legs(kind, before, after, self._unit)
        try:
            async with session.begin_nested():
                await ledger.create_accounts(session, accounts.specs())
                moved, main_id = await self._write_legs(session, row, kind, accounts, legs)
                await self._set_status(
                    session,
                    row,
                    EventStatus.APPLIED,
                    ledger_amount=moved,
                    transfer_id=main_id,
                    detail=None,
                )
                await self._tell_player(session, row, kind, accounts, moved)
        except LedgerError as exc:
            await self._void(session, row)
            detail = f"{type(exc).__name__}: {exc}"
            await self._set_status(session, row, EventStatus.REJECTED, detail=detail[:255])
            log.error(
                "vault.event.rejected",
                kind=row.event,
                tx_hash=row.tx_hash,
                log_index=row.log_index,
                player=row.player,
                token=row.token,
                error=detail[:300],
            )
            return False
        log.info(
            "vault.event.applied",
            kind=row.event,
            tx_hash=row.tx_hash,
            log_index=row.log_index,
            player=row.player,
            ledger_amount=moved,
        )
        return True

    async def _write_legs(
        self,
        session: AsyncSession,
        row: Any,
        kind: VaultEventKind,
        accounts: VaultAccounts,
        legs: Sequence[Leg],
    ) -> tuple[int, str | None]:
        """Write an event's transfers; (ledger units moved, the main transfer's id)."""
        ids = {
            leg.name: transfer_id(row.chain_id, row.tx_hash, row.log_index, leg.name)
            for leg in legs
        }
        main = next((leg for leg in legs if leg.name == "main"), None)
        moved = main.amount if main else 0
        metadata = {
            "chain_id": str(row.chain_id),
            "tx_hash": row.tx_hash,
            "log_index": str(row.log_index),
            "block": str(row.block_number),
            "amount": row.amount,
        }
        if kind is VaultEventKind.DEPOSITED:
            credit_id = transfer_id(row.chain_id, row.tx_hash, row.log_index, "credit")
            pending = row.transfer_id
            if main is not None and pending is not None and moved <= (row.ledger_amount or 0):
                await ledger.post_pending(session, pending, id=credit_id, amount=moved)
                return moved, credit_id
            await self._void(session, row)
            if main is None:
                return 0, None
            ids["main"] = credit_id
        specs = [
            TransferSpec(
                id=ids[leg.name],
                debit=accounts.role(leg.debit),
                credit=accounts.role(leg.credit),
                amount=leg.amount,
                ledger=accounts.ledger,
                code=TRANSFER_CODES[kind] if leg.name == "main" else "vault.rounding",
                metadata=metadata,
            )
            for leg in legs
        ]
        await ledger.transfer(session, specs)
        return moved, ids.get("main")

    async def _tell_player(
        self,
        session: AsyncSession,
        row: Any,
        kind: VaultEventKind,
        accounts: VaultAccounts,
        moved: int,
    ) -> None:
        """``wallet.deposit_credited`` / ``wallet.withdrawal_debited`` in the outbox."""
        if kind not in (VaultEventKind.DEPOSITED, VaultEventKind.WITHDRAWN):
            return
        balance = (await ledger.balance(session, accounts.available)).available
        fields: dict[str, Any] = {
            "player_id": row.player,
            "chain_id": row.chain_id,
            "tx_hash": row.tx_hash,
            "log_index": row.log_index,
            "token": row.token.lower(),
            "amount": moved,
            "balance_after": balance,
        }
        payload = (
            DepositCredited(**fields)
            if kind is VaultEventKind.DEPOSITED
            else WithdrawalDebited(**fields)
        )
        await add_to_outbox(session, new_event(payload, key=row.player, producer=self._producer))


def _metadata(event: VaultEvent) -> dict[str, str]:
    return {
        "chain_id": str(event.chain_id),
        "tx_hash": event.tx_hash,
        "log_index": str(event.log_index),
        "block": str(event.block_number),
        "amount": str(event.amount),
    }


async def _first_of(stop: asyncio.Event, wake: asyncio.Event | None, *, timeout: float) -> None:
    """Wait until ``stop`` or ``wake`` is set, or ``timeout`` seconds."""
    waiters = [asyncio.ensure_future(stop.wait())]
    if wake is not None:
        waiters.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


class IdleWatcher:
    """Stands in for the watcher when no contract is configured: logs it, waits."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def run(self, stop: asyncio.Event) -> None:
        log.info("vault.watcher.idle", reason=self.reason)
        await stop.wait()


def watcher_service(
    store: OperationalStore, chain: ChainClient, settings: Settings
) -> VaultWatcher | IdleWatcher:
    """The ``deposit-watcher`` service for ``settings`` (idle without a contract)."""
    if settings.chain_contract is None:
        return IdleWatcher("LUDEX_CHAIN_CONTRACT is not set: no vault to watch")
    return VaultWatcher(
        store,
        chain,
        contract=settings.chain_contract,
        confirmations=settings.chain_confirmations,
        ledger_unit=settings.chain_ledger_unit,
        poll_interval=settings.chain_poll_interval,
        ws_url=settings.chain_ws_url,
        producer=settings.service_name,
    )
