"""The settlement service: completed poker hands, batched, signed and settled on chain.

Pipeline (every step's state in the operational store, every event through the outbox
in the transaction that changes that state):

1. **Accept.** Consumes ``poker.hand_completed`` (consumer group ``settlement``; each
   event once, by event id, and each hand once, by ``hand_id``). A hand is checked
   (:func:`hand_fields`: players are addresses, deltas and rake sum to zero, amounts fit,
   the currency is on this chain); a bad one is ``refused`` with ``settlement.failed``.
   A good one gets its table's uint64 id on the contract (assigned in order of first
   appearance, kept in ``settlement_tables``), the next hand number of that table and the
   previous hand's record, and is ``queued`` with its own record
   (:func:`ludex.chain.settlement.hand_record`).
2. **Batch.** When ``batch_size`` hands are queued, or the oldest has waited
   ``batch_seconds``, and no batch is in flight (one not yet mined), the queued hands
   (oldest first, at most ``batch_size``) become a batch; its id is the on-chain
   ``batchId``.
3. **Sign.** The Signer signs the batch's EIP-712 typed data.
4. **Send.** The ``settle`` call is estimated first. A revert is decoded: a table's error
   (``BadSeats``, ``NotZeroSum``, ``RakeTooLarge``, ``InsufficientLocked``, a chain error
   ``HandOutOfOrder``/``WrongPreviousRecord`` that the chain's head does not explain)
   halts that table: its hands fail (``settlement.failed``, ``next_step`` ``none``) and
   the rest of the batch is signed again without them. A revert of the whole batch
   (``IsPaused``, ``SignerNotOperator``, ...) fails the batch with ``next_step``
   ``requeue``: its hands return to the queue and the service backs off. If the chain
   already holds exactly the batch's hands (``tables(tableId)`` equals the batch's last
   record for every table), the batch is confirmed from its ``HandSettled`` log instead.
   Otherwise :class:`~ludex.chain.txmanager.TxManager` records and broadcasts the
   transaction (``settlement.submitted``, again for each fee-bumped replacement).
5. **Confirm.** At ``confirmations`` blocks deep, ``settlement.confirmed`` and the hands
   are ``settled``. In the same transaction each hand is mirrored into the vault mirror
   (:func:`ludex.chain.vault.hand_legs`): every player's exact ``locked`` amount in
   ``chain_vault_balances`` moves by the hand's on-chain delta, and the ledger moves the
   losers' ``locked:`` units through ``vault-clearing:<tag>`` to the winners'
   ``locked:`` accounts and the rake to ``vault-treasury:<tag>``, with transfer ids
   derived from the hand (:func:`ludex.chain.vault.hand_transfer_id`). A hand is
   mirrored once (``settlement_hands.mirrored_at``). A reorg that removes a confirmed
   batch emits ``settlement.failed`` with ``next_step`` ``resubmit``; the same signed
   transaction is sent again and the batch is confirmed again, without mirroring its
   hands again. A transaction reverted on chain fails its batch with ``requeue``.

Amounts: on-chain = ledger units * ``chain_ledger_unit``. Currency: ``NATIVE`` or the
ledger name ``TOKEN:<chain id>:<0x address>`` (:func:`ludex.ledger.token_ledger`) of this
chain; the zero address is the native coin. Anything else (``CHIPS``) is refused.

Restart: batches signed but not sent are sent, sent ones are followed, hands not yet
batched are batched; the contract's hand chain refuses a second settlement of a hand.
Run one settlement service per operator key and contract.

This service never sees the operator key (it asks the Signer), never settles a hand it
has not recorded first, and never emits an event outside the transaction that records it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, cast

import structlog
from eth_utils.address import is_address, to_checksum_address
from eth_utils.crypto import keccak
from sqlalchemy import CursorResult, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ludex import ledger
from ludex.adapters.chain.jsonrpc import parse_quantity
from ludex.adapters.sql.outbox import add_to_outbox
from ludex.adapters.sql.tables import (
    chain_cursors,
    chain_transactions,
    chain_vault_balances,
    settlement_batches,
    settlement_hands,
    settlement_tables,
)
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import contract_at
from ludex.chain.settlement import (
    MAX_ROSTER,
    MAX_SEAT_AMOUNT,
    NATIVE,
    ZERO_RECORD,
    Hand,
    hand_record,
    table_runs,
    typed_data,
)
from ludex.chain.txmanager import (
    CONFIRMED,
    LOST,
    MINED,
    RECORDED,
    REVERTED,
    SENT,
    RetryingChain,
    TxManager,
    TxRecord,
)
from ludex.chain.vault import hand_transfers, watcher_cursor
from ludex.errors import (
    BackendError,
    ChainError,
    ChainRpcError,
    ConfigError,
    LedgerError,
    StoreError,
)
from ludex.events import (
    Envelope,
    HandCompleted,
    Payload,
    SettlementConfirmed,
    SettlementFailed,
    SettlementSubmitted,
    new_event,
    topic_for,
)
from ludex.ports.bus import EventBus
from ludex.ports.chain import ChainClient
from ludex.ports.signer import Signer
from ludex.ports.store import OperationalStore
from ludex.services.idempotent import IdempotentConsumer

if TYPE_CHECKING:
    from ludex.composition import Container

log = structlog.get_logger(__name__)

GROUP: Final = "settlement"
PRODUCER: Final = "settlement"
PURPOSE_PREFIX: Final = "settlement:"
NATIVE_CURRENCY: Final = "NATIVE"
GAS_MARGIN: Final = 1.2
MAX_ID_LENGTH: Final = 128
HAND_SETTLED_TOPIC: Final = keccak(text="HandSettled(uint64,uint64,bytes32,uint256)")

# hand statuses
QUEUED: Final = "queued"
BATCHED: Final = "batched"
SETTLED: Final = "settled"
REFUSED: Final = "refused"
FAILED: Final = "failed"
# batch statuses (and FAILED)
NEW: Final = "new"
SIGNED: Final = "signed"
SENDING: Final = "sending"
SUBMITTED: Final = "submitted"
BATCH_CONFIRMED: Final = "confirmed"
IN_FLIGHT: Final = (NEW, SIGNED, SENDING)
TABLE_ERRORS: Final = frozenset({"BadSeats", "NotZeroSum", "RakeTooLarge"})
ORDER_ERRORS: Final = frozenset({"HandOutOfOrder", "WrongPreviousRecord"})


class HandRefused(ValueError):
    """A completed hand cannot be settled as it is; the message says why."""


@dataclass(frozen=True, slots=True)
class HandFields:
    """What a completed hand contributes to its on-chain ``Hand`` (amounts on-chain)."""

    table_key: str
    token: str
    commitment: bytes
    rake: int
    players: tuple[str, ...]
    deltas: tuple[int, ...]


def token_for(currency: str, chain_id: int) -> str:
    """The token address of a hand's currency on ``chain_id`` (the zero address: native)."""
    if currency == NATIVE_CURRENCY:
        return NATIVE
    kind, _, rest = currency.partition(":")
    chain, _, address = rest.partition(":")
    if kind != "TOKEN" or not chain.isdigit() or not is_address(address):
        raise HandRefused(
            f"currency {currency!r} is not on chain: use {NATIVE_CURRENCY!r} or "
            f"'TOKEN:{chain_id}:<0x address>' (ludex.ledger.token_ledger)"
        )
    if int(chain) != chain_id:
        raise HandRefused(f"currency {currency!r} is on chain {chain}, this is chain {chain_id}")
    return str(to_checksum_address(address))


def hand_fields(payload: HandCompleted, *, chain_id: int, ledger_unit: int) -> HandFields:
    """Check a completed hand and convert it for the contract; HandRefused says what is wrong.

    Pure. Players are the ``deltas`` keys (addresses, in the payload's order); amounts
    are ledger units times ``ledger_unit``.
    """
    table = payload.table_id
    if not table or len(table) > MAX_ID_LENGTH or not table.isascii():
        raise HandRefused(f"table id {table[:40]!r} must be 1 to {MAX_ID_LENGTH} ASCII characters")
    token = token_for(payload.currency, chain_id)
    raw = payload.commitment.removeprefix("0x")
    try:
        commitment = bytes.fromhex(raw)
    except ValueError:
        commitment = b""
    if len(commitment) != 32:
        raise HandRefused("commitment must be 32 bytes of hex (the shuffle commitment)")
    if not payload.deltas:
        raise HandRefused("the hand has no players (deltas is empty)")
    if len(payload.deltas) > MAX_ROSTER:
        raise HandRefused(f"{len(payload.deltas)} players; at most {MAX_ROSTER}")
    players: list[str] = []
    for player in payload.deltas:
        if not is_address(player):
            raise HandRefused(f"player {player[:60]!r} is not an address")
        players.append(str(to_checksum_address(player)))
    if len(set(players)) != len(players):
        raise HandRefused("a player appears twice (addresses differing only in case)")
    if payload.rake < 0:
        raise HandRefused(f"rake {payload.rake} is negative")
    total = sum(payload.deltas.values())
    if total + payload.rake != 0:
        raise HandRefused(
            f"deltas sum to {total} and rake is {payload.rake}; together they must be zero"
        )
    deltas = tuple(d * ledger_unit for d in payload.deltas.values())
    rake = payload.rake * ledger_unit
    for amount in (*deltas, rake):
        if abs(amount) > MAX_SEAT_AMOUNT:
            raise HandRefused(
                f"an amount of {amount} base units does not fit the contract's 112 bits"
            )
    return HandFields(table, token, commitment, rake, tuple(players), deltas)


def hand_json(hand: Hand) -> str:
    return json.dumps(
        {
            "token": hand.token,
            "commitment": hand.commitment.hex(),
            "previous_record": hand.previous_record.hex(),
            "rake": hand.rake,
            "players": list(hand.players),
            "deltas": list(hand.deltas),
        },
        separators=(",", ":"),
    )


def hand_from_row(row: Any) -> Hand:
    data = json.loads(row["hand"])
    return Hand(
        table_id=int(row["chain_table_id"]),
        hand_number=int(row["hand_number"]),
        token=data["token"],
        commitment=bytes.fromhex(data["commitment"]),
        previous_record=bytes.fromhex(data["previous_record"]),
        rake=int(data["rake"]),
        players=tuple(data["players"]),
        deltas=tuple(int(d) for d in data["deltas"]),
    )


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


@dataclass(frozen=True, slots=True)
class _Batch:
    id: int
    status: str
    signature: bytes | None
    transaction_id: int | None
    created_block: int


class SettlementService:
    """Settles completed hands on the Ludex contract in signed batches."""

    def __init__(
        self,
        store: OperationalStore,
        bus: EventBus,
        chain: ChainClient,
        signer: Signer,
        *,
        contract: str,
        confirmations: int = 3,
        ledger_unit: int = 10**9,
        batch_size: int = 100,
        batch_seconds: float = 2.0,
        poll_interval: float = 1.0,
        group: str = GROUP,
        retry_initial: float = 0.5,
        retry_max: float = 60.0,
        **txmanager_options: Any,
    ) -> None:
        self.store = store
        self.bus = bus
        self.chain = chain if isinstance(chain, RetryingChain) else RetryingChain(chain)
        self.signer = signer
        self.contract = contract_at(self.chain, contract, load_artifact("Ludex"))
        self.address = self.contract.address
        self.confirmations = confirmations
        self.ledger_unit = ledger_unit
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.poll_interval = poll_interval
        self.group = group
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.txm = TxManager(
            store,
            self.chain,
            signer,
            confirmations=confirmations,
            listener=self._tx_changed,
            **txmanager_options,
        )
        self.consumer = IdempotentConsumer(store, group, self.accept)
        self._chain_id: int | None = None
        self._retry_at = 0.0
        self._delay = retry_initial

    def __repr__(self) -> str:
        return f"SettlementService(contract={self.address}, operator={self.signer.address})"

    @property
    def chain_id(self) -> int:
        if self._chain_id is None:
            raise ChainError("SettlementService.start() has not run")
        return self._chain_id

    async def start(self) -> None:
        """Reconcile the nonce, and say so if the signer is not an operator of the contract."""
        if self._chain_id is not None:
            return
        await self.txm.start()
        code = await self.chain.call("eth_getCode", [self.address, "latest"])
        if not isinstance(code, str) or code in {"0x", "0x0", ""}:
            raise ConfigError(
                f"LUDEX_CHAIN_CONTRACT: there is no contract at {self.address} on chain "
                f"{self.txm.chain_id}; deploy one with `ludex chain deploy`"
            )
        self._chain_id = self.txm.chain_id
        (is_operator,) = await self.contract.call("isOperator", self.signer.address)
        log.info(
            "settlement.started",
            contract=self.address,
            operator=self.signer.address,
            chain_id=self._chain_id,
            is_operator=bool(is_operator),
        )
        if not is_operator:
            log.error(
                "settlement.not_operator",
                operator=self.signer.address,
                hint="the owner must call setOperator(operator, true); batches will be refused",
            )

    # --- running ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        async with asyncio.TaskGroup() as group:
            group.create_task(self._consume(stop), name="settlement-consumer")
            group.create_task(self._work(stop), name="settlement-worker")
        log.info("settlement.stopped")

    async def _consume(self, stop: asyncio.Event) -> None:
        """Queue every completed hand; commit offsets after the hands are stored. On a
        bus or store failure, leave the group and join again after a pause: what was not
        committed is delivered again (and skipped if it had been stored)."""
        wanted = HandCompleted.event_type
        delay = self.retry_initial
        while not stop.is_set():
            try:
                async with self.bus.consumer(
                    [topic_for(wanted)], self.group, start="earliest"
                ) as consumer:
                    while not stop.is_set():
                        records = await consumer.poll(max_records=500, timeout=0.2)
                        for record in records:
                            if record.envelope.type == wanted:
                                await self.consumer.handle(record.envelope)
                        if records:
                            await consumer.commit(records)
                        delay = self.retry_initial
            except (BackendError, StoreError) as exc:
                log.warning("settlement.consumer_retrying", error=str(exc), retry_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, self.retry_max)

    async def _work(self, stop: asyncio.Event) -> None:
        delay = self.retry_initial
        while not stop.is_set():
            try:
                await self.run_once()
            except (ChainError, BackendError, StoreError) as exc:
                log.warning("settlement.retrying", error=str(exc), retry_in=delay)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                delay = min(delay * 2, self.retry_max)
                continue
            delay = self.retry_initial
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_interval)

    async def run_once(self) -> None:
        """One round: batch what is due, sign, send, and follow the transactions."""
        await self.start()
        await self.form_batch()
        await self.sign_batches()
        await self.send_batches()
        await self.txm.poll()

    # --- 1. accept -------------------------------------------------------------------

    async def accept(self, session: AsyncSession, envelope: Envelope) -> None:
        """Queue one ``poker.hand_completed`` (in the consumer's transaction)."""
        payload = envelope.payload
        if not isinstance(payload, HandCompleted):
            return
        hand_id = payload.hand_id
        if not hand_id or len(hand_id) > MAX_ID_LENGTH or not hand_id.isascii():
            await self._emit(
                session,
                SettlementFailed(
                    batch_id="",
                    chain_id=self.chain_id,
                    hand_ids=[hand_id[:MAX_ID_LENGTH]],
                    reason=f"hand id must be 1 to {MAX_ID_LENGTH} ASCII characters",
                ),
                key=payload.table_id[:200] or "settlement",
            )
            return
        seen = await session.scalar(
            select(settlement_hands.c.status).where(settlement_hands.c.hand_id == hand_id)
        )
        if seen is not None:
            log.info("settlement.duplicate_hand", hand_id=hand_id, status=seen)
            return
        now = datetime.now(UTC)
        try:
            fields = hand_fields(payload, chain_id=self.chain_id, ledger_unit=self.ledger_unit)
            table = await self._table(session, fields.table_key, now)
            if table["status"] != "open":
                raise HandRefused(f"table {fields.table_key!r} is halted: {table['reason']}")
        except HandRefused as refused:
            await self._refuse(session, envelope, payload, str(refused), now)
            return
        hand = Hand(
            table_id=int(table["chain_table_id"]),
            hand_number=int(table["last_hand"]) + 1,
            token=fields.token,
            commitment=fields.commitment,
            previous_record=bytes.fromhex(str(table["last_record"])[2:]),
            rake=fields.rake,
            players=fields.players,
            deltas=fields.deltas,
        )
        record = _hex(hand_record(hand))
        await session.execute(
            insert(settlement_hands).values(
                hand_id=hand_id,
                event_id=envelope.id,
                chain_id=self.chain_id,
                contract=self.address,
                table_key=fields.table_key,
                chain_table_id=hand.table_id,
                hand_number=hand.hand_number,
                hand=hand_json(hand),
                record=record,
                batch_id=None,
                status=QUEUED,
                reason=None,
                created_at=now,
                updated_at=now,
            )
        )
        await session.execute(
            update(settlement_tables)
            .where(self._table_key(fields.table_key))
            .values(last_hand=hand.hand_number, last_record=record, updated_at=now)
        )
        log.debug(
            "settlement.queued", hand_id=hand_id, table=hand.table_id, number=hand.hand_number
        )

    def _table_key(self, table_key: str) -> Any:
        return (
            (settlement_tables.c.chain_id == self.chain_id)
            & (settlement_tables.c.contract == self.address)
            & (settlement_tables.c.table_key == table_key)
        )

    async def _table(self, session: AsyncSession, table_key: str, now: datetime) -> Any:
        """The table's row (locked), created with the next chain table id when new."""
        query = select(settlement_tables).where(self._table_key(table_key)).with_for_update()
        row = (await session.execute(query)).mappings().first()
        if row is not None:
            return row
        highest = await session.scalar(
            select(func.max(settlement_tables.c.chain_table_id)).where(
                settlement_tables.c.chain_id == self.chain_id,
                settlement_tables.c.contract == self.address,
            )
        )
        await session.execute(
            insert(settlement_tables).values(
                chain_id=self.chain_id,
                contract=self.address,
                table_key=table_key,
                chain_table_id=(int(highest) if highest is not None else 0) + 1,
                last_hand=0,
                last_record=_hex(ZERO_RECORD),
                status="open",
                reason=None,
                created_at=now,
                updated_at=now,
            )
        )
        return (await session.execute(query)).mappings().one()

    async def _refuse(
        self,
        session: AsyncSession,
        envelope: Envelope,
        payload: HandCompleted,
        reason: str,
        now: datetime,
    ) -> None:
        log.warning("settlement.hand_refused", hand_id=payload.hand_id, reason=reason)
        await session.execute(
            insert(settlement_hands).values(
                hand_id=payload.hand_id,
                event_id=envelope.id,
                chain_id=self.chain_id,
                contract=self.address,
                table_key=payload.table_id[:255],
                status=REFUSED,
                reason=reason,
                created_at=now,
                updated_at=now,
            )
        )
        await self._emit(
            session,
            SettlementFailed(
                batch_id="",
                chain_id=self.chain_id,
                hand_ids=[payload.hand_id],
                reason=reason,
            ),
            key=payload.table_id[:200] or "settlement",
        )

    # --- 2. batch --------------------------------------------------------------------

    def _ours(self, table: Any) -> Any:
        return (table.c.chain_id == self.chain_id) & (table.c.contract == self.address)

    async def _in_flight(self, session: AsyncSession) -> bool:
        """A batch not yet mined (or not yet sent) holds back the next one."""
        waiting = await session.scalar(
            select(func.count())
            .select_from(settlement_batches)
            .where(self._ours(settlement_batches), settlement_batches.c.status.in_(IN_FLIGHT))
        )
        if waiting:
            return True
        unmined = await session.scalar(
            select(func.count())
            .select_from(
                settlement_batches.join(
                    chain_transactions,
                    chain_transactions.c.id == settlement_batches.c.transaction_id,
                )
            )
            .where(
                self._ours(settlement_batches),
                settlement_batches.c.status == SUBMITTED,
                chain_transactions.c.status.in_((RECORDED, SENT)),
            )
        )
        return bool(unmined)

    async def form_batch(self, *, force: bool = False) -> int | None:
        """Make a batch of queued hands when one is due; its id (None if none was made)."""
        if not force and asyncio.get_running_loop().time() < self._retry_at:
            return None
        async with self.store.transaction() as session:
            if await self._in_flight(session):
                return None
            queued = self._ours(settlement_hands) & (settlement_hands.c.status == QUEUED)
            count, oldest = (
                await session.execute(
                    select(func.count(), func.min(settlement_hands.c.created_at)).where(queued)
                )
            ).one()
        if not count:
            return None
        waited = (datetime.now(UTC) - oldest).total_seconds()
        if count < self.batch_size and waited < self.batch_seconds and not force:
            return None
        created_block = await self.chain.block_number()
        now = datetime.now(UTC)
        async with self.store.transaction() as session:
            if await self._in_flight(session):
                return None
            seqs = (
                await session.scalars(
                    select(settlement_hands.c.seq)
                    .where(queued)
                    .order_by(settlement_hands.c.seq)
                    .limit(self.batch_size)
                    .with_for_update()
                )
            ).all()
            if not seqs:
                return None
            inserted = await session.execute(
                insert(settlement_batches).values(
                    chain_id=self.chain_id,
                    contract=self.address,
                    status=NEW,
                    hand_count=len(seqs),
                    signature=None,
                    transaction_id=None,
                    tx_hash=None,
                    block_number=None,
                    created_block=created_block,
                    reason=None,
                    created_at=now,
                    updated_at=now,
                )
            )
            key = cast(CursorResult[Any], inserted).inserted_primary_key
            assert key is not None
            batch_id = int(key[0])
            await session.execute(
                update(settlement_hands)
                .where(settlement_hands.c.seq.in_(seqs))
                .values(status=BATCHED, batch_id=batch_id, updated_at=now)
            )
        log.info("settlement.batch_formed", batch_id=batch_id, hands=len(seqs))
        return batch_id

    # --- 3. sign ---------------------------------------------------------------------

    async def _batches(self, session: AsyncSession, statuses: Sequence[str]) -> list[_Batch]:
        rows = (
            await session.execute(
                select(settlement_batches)
                .where(self._ours(settlement_batches), settlement_batches.c.status.in_(statuses))
                .order_by(settlement_batches.c.id)
            )
        ).mappings()
        return [self._batch(r) for r in rows]

    @staticmethod
    def _batch(row: Any) -> _Batch:
        return _Batch(
            id=int(row["id"]),
            status=str(row["status"]),
            signature=None if row["signature"] is None else bytes(row["signature"]),
            transaction_id=None if row["transaction_id"] is None else int(row["transaction_id"]),
            created_block=int(row["created_block"]),
        )

    async def _batch_hands(
        self, session: AsyncSession, batch_id: int, statuses: Sequence[str] = (BATCHED,)
    ) -> list[tuple[str, Hand]]:
        """(hand id, hand) of a batch in settlement order: by table, then hand number."""
        rows = (
            await session.execute(
                select(settlement_hands)
                .where(
                    settlement_hands.c.batch_id == batch_id,
                    settlement_hands.c.status.in_(statuses),
                )
                .order_by(settlement_hands.c.chain_table_id, settlement_hands.c.hand_number)
            )
        ).mappings()
        return [(str(r["hand_id"]), hand_from_row(r)) for r in rows]

    async def sign_batches(self) -> int:
        async with self.store.transaction() as session:
            batches = await self._batches(session, (NEW,))
        for batch in batches:
            async with self.store.transaction() as session:
                hands = [h for _, h in await self._batch_hands(session, batch.id)]
            if not hands:
                continue
            data = typed_data(self.chain_id, self.address, batch.id, hands)
            signature = await self.signer.sign_typed_data(data)
            async with self.store.transaction() as session:
                await session.execute(
                    update(settlement_batches)
                    .where(settlement_batches.c.id == batch.id, settlement_batches.c.status == NEW)
                    .values(status=SIGNED, signature=signature, updated_at=datetime.now(UTC))
                )
            log.info("settlement.batch_signed", batch_id=batch.id, hands=len(hands))
        return len(batches)

    # --- 4. send ---------------------------------------------------------------------

    async def send_batches(self) -> int:
        async with self.store.transaction() as session:
            batches = await self._batches(session, (SIGNED,))
        sent = 0
        for batch in batches:
            async with self.store.transaction() as session:
                entries = await self._batch_hands(session, batch.id)
            hands = [h for _, h in entries]
            assert batch.signature is not None
            data = self.contract.abi.encode_call(
                "settle", (batch.id, table_runs(hands), batch.signature)
            )
            try:
                gas = await self.txm.estimate_gas(self.address, data)
            except ChainRpcError as exc:
                if exc.data is None or not exc.data.startswith("0x"):
                    raise
                error, args = self.contract.abi.decode_error(bytes.fromhex(exc.data[2:]))
                await self._refused_by_contract(batch, entries, error, args)
                continue

            async def link(
                session: AsyncSession, record: TxRecord, batch_id: int = batch.id
            ) -> None:
                await session.execute(
                    update(settlement_batches)
                    .where(settlement_batches.c.id == batch_id)
                    .values(status=SENDING, transaction_id=record.id, updated_at=datetime.now(UTC))
                )

            await self.txm.send(
                f"{PURPOSE_PREFIX}{batch.id}",
                self.address,
                data,
                gas=int(gas * GAS_MARGIN),
                on_recorded=link,
            )
            sent += 1
        return sent

    async def _refused_by_contract(
        self,
        batch: _Batch,
        entries: list[tuple[str, Hand]],
        error: str,
        args: dict[str, Any],
    ) -> None:
        shown = ", ".join(f"{k}={v!r}" for k, v in args.items())
        reason = f"the contract refuses the batch: {error}({shown})"
        hands = [h for _, h in entries]
        culprits: set[int] = set()
        if error in ORDER_ERRORS:
            if await self._already_on_chain(batch, entries):
                return
            culprits = {int(args["tableId"])}
        elif error in TABLE_ERRORS:
            culprits = {int(args["tableId"])}
        elif error == "InsufficientLocked":
            culprits = {
                h.table_id
                for h in hands
                if h.token == args.get("token")
                and any(
                    p == args.get("player") and d < 0
                    for p, d in zip(h.players, h.deltas, strict=True)
                )
            }
        log.error("settlement.refused_by_contract", batch_id=batch.id, reason=reason)
        if culprits:
            await self._halt(batch, entries, culprits, reason)
        else:
            await self._requeue(batch, reason, next_step="requeue")

    async def _already_on_chain(self, batch: _Batch, entries: list[tuple[str, Hand]]) -> bool:
        """Whether the chain already holds exactly this batch; confirm it if deep enough."""
        last: dict[int, tuple[int, bytes]] = {}
        for _, hand in entries:
            last[hand.table_id] = (hand.hand_number, hand_record(hand))
        for table_id, (number, record) in last.items():
            head_record, head_number = await self.contract.call("tables", table_id)
            if int(head_number) != number or bytes(head_record) != record:
                return False
        table_id, (_, record) = next(iter(last.items()))
        logs = await self.chain.call(
            "eth_getLogs",
            [
                {
                    "address": self.address,
                    "fromBlock": hex(batch.created_block),
                    "toBlock": "latest",
                    "topics": [_hex(HAND_SETTLED_TOPIC), _hex(table_id.to_bytes(32, "big"))],
                }
            ],
        )
        found: tuple[str, int] | None = None
        for entry in logs or []:
            data = bytes.fromhex(str(entry.get("data", "0x"))[2:])
            if data[32:64] == record:
                found = (
                    str(entry["transactionHash"]),
                    parse_quantity(entry["blockNumber"], "blockNumber"),
                )
        if found is None:
            log.warning("settlement.on_chain_log_missing", batch_id=batch.id)
            return True
        tx_hash, block = found
        head = await self.chain.block_number()
        if head - block < self.confirmations:
            return True  # wait for depth; the next round checks again
        async with self.store.transaction() as session:
            row = await self._lock_batch(session, batch.id)
            if row is None or row.status != SIGNED:
                return True
            await self._confirm(session, row, tx_hash, block)
        log.warning("settlement.already_on_chain", batch_id=batch.id, tx_hash=tx_hash, block=block)
        return True

    async def _halt(
        self, batch: _Batch, entries: list[tuple[str, Hand]], culprits: set[int], reason: str
    ) -> None:
        """Halt the culprit tables: their hands fail; the batch goes on without them."""
        now = datetime.now(UTC)
        async with self.store.transaction() as session:
            await session.execute(
                update(settlement_tables)
                .where(
                    self._ours(settlement_tables),
                    settlement_tables.c.chain_table_id.in_(culprits),
                )
                .values(status="halted", reason=reason, updated_at=now)
            )
            doomed = (
                await session.scalars(
                    select(settlement_hands.c.hand_id)
                    .where(
                        self._ours(settlement_hands),
                        settlement_hands.c.chain_table_id.in_(culprits),
                        (settlement_hands.c.batch_id == batch.id)
                        | (settlement_hands.c.status == QUEUED),
                        settlement_hands.c.status.in_((QUEUED, BATCHED)),
                    )
                    .order_by(settlement_hands.c.seq)
                )
            ).all()
            await session.execute(
                update(settlement_hands)
                .where(settlement_hands.c.hand_id.in_(doomed))
                .values(status=FAILED, reason=reason, updated_at=now)
            )
            remaining = len(entries) - sum(1 for _, h in entries if h.table_id in culprits)
            values: dict[str, Any] = {"updated_at": now, "signature": None, "hand_count": remaining}
            values["status"] = NEW if remaining else FAILED
            if not remaining:
                values["reason"] = reason
            await session.execute(
                update(settlement_batches)
                .where(settlement_batches.c.id == batch.id)
                .values(**values)
            )
            await self._emit(
                session,
                SettlementFailed(
                    batch_id=str(batch.id),
                    chain_id=self.chain_id,
                    hand_ids=list(doomed),
                    reason=reason,
                    next_step="none",
                ),
                key=str(batch.id),
            )
        log.error(
            "settlement.tables_halted",
            batch_id=batch.id,
            tables=sorted(culprits),
            failed_hands=len(doomed),
            reason=reason,
        )

    async def _requeue(
        self, batch: _Batch, reason: str, *, next_step: str, tx_hash: str | None = None
    ) -> None:
        async with self.store.transaction() as session:
            await self._requeue_in(session, batch.id, reason, next_step=next_step, tx_hash=tx_hash)
        self._back_off()

    async def _requeue_in(
        self,
        session: AsyncSession,
        batch_id: int,
        reason: str,
        *,
        next_step: str,
        tx_hash: str | None = None,
    ) -> None:
        now = datetime.now(UTC)
        hand_ids = [h for h, _ in await self._batch_hands(session, batch_id)]
        await session.execute(
            update(settlement_hands)
            .where(settlement_hands.c.batch_id == batch_id, settlement_hands.c.status == BATCHED)
            .values(status=QUEUED, batch_id=None, updated_at=now)
        )
        await session.execute(
            update(settlement_batches)
            .where(settlement_batches.c.id == batch_id)
            .values(status=FAILED, reason=reason, updated_at=now)
        )
        await self._emit(
            session,
            SettlementFailed(
                batch_id=str(batch_id),
                chain_id=self.chain_id,
                hand_ids=hand_ids,
                reason=reason,
                tx_hash=tx_hash,
                next_step=next_step,
            ),
            key=str(batch_id),
        )
        log.error(
            "settlement.batch_requeued", batch_id=batch_id, hands=len(hand_ids), reason=reason
        )

    def _back_off(self) -> None:
        self._retry_at = asyncio.get_running_loop().time() + self._delay
        self._delay = min(self._delay * 2, self.retry_max)

    # --- 5. follow -------------------------------------------------------------------

    async def _lock_batch(self, session: AsyncSession, batch_id: int) -> _Batch | None:
        row = (
            (
                await session.execute(
                    select(settlement_batches)
                    .where(settlement_batches.c.id == batch_id)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        return None if row is None else self._batch(row)

    async def _tx_changed(self, session: AsyncSession, record: TxRecord, change: str) -> None:
        """TxManager listener: bring the batch up to date, in the same transaction."""
        if not record.purpose.startswith(PURPOSE_PREFIX):
            return
        row = (
            (
                await session.execute(
                    select(settlement_batches)
                    .where(settlement_batches.c.transaction_id == record.id)
                    .with_for_update()
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return
        batch = self._batch(row)
        now = datetime.now(UTC)
        status = batch.status
        if status == SENDING and change != LOST:
            await session.execute(
                update(settlement_batches)
                .where(settlement_batches.c.id == batch.id)
                .values(status=SUBMITTED, tx_hash=record.tx_hash, updated_at=now)
            )
            await self._submitted(session, batch.id, record)
            status = SUBMITTED
        elif status == SUBMITTED and change == "replaced":
            await self._submitted(session, batch.id, record)
        if change == CONFIRMED and status == SUBMITTED:
            assert record.block_number is not None
            await self._confirm(session, batch, record.tx_hash, record.block_number)
            self._delay = self.retry_initial
        elif change == CONFIRMED and status == BATCH_CONFIRMED:
            await session.execute(
                update(settlement_batches)
                .where(settlement_batches.c.id == batch.id)
                .values(tx_hash=record.tx_hash, block_number=record.block_number, updated_at=now)
            )
        elif change == REVERTED and status == SUBMITTED:
            await self._requeue_in(
                session,
                batch.id,
                f"transaction {record.tx_hash} reverted on chain in block {record.block_number}",
                next_step="requeue",
                tx_hash=record.tx_hash,
            )
        elif change == "reorged" and status == BATCH_CONFIRMED:
            await self._unconfirm(session, batch, record)
        elif change == LOST and status in (SENDING, SUBMITTED):
            log.error("settlement.nonce_lost", batch_id=batch.id, nonce=record.nonce)
            await session.execute(
                update(settlement_batches)
                .where(settlement_batches.c.id == batch.id)
                .values(status=SIGNED, transaction_id=None, tx_hash=None, updated_at=now)
            )
        elif change == MINED:
            log.info("settlement.batch_mined", batch_id=batch.id, block=record.block_number)

    async def _submitted(self, session: AsyncSession, batch_id: int, record: TxRecord) -> None:
        hand_ids = [h for h, _ in await self._batch_hands(session, batch_id)]
        await self._emit(
            session,
            SettlementSubmitted(
                batch_id=str(batch_id),
                chain_id=self.chain_id,
                hand_ids=hand_ids,
                tx_hash=record.tx_hash,
                nonce=record.nonce,
            ),
            key=str(batch_id),
        )
        log.info(
            "settlement.submitted", batch_id=batch_id, tx_hash=record.tx_hash, nonce=record.nonce
        )

    async def _confirm(
        self, session: AsyncSession, batch: _Batch, tx_hash: str, block: int
    ) -> None:
        now = datetime.now(UTC)
        hand_ids = [h for h, _ in await self._batch_hands(session, batch.id)]
        mirrored = await self._mirror(session, batch.id, now)
        await session.execute(
            update(settlement_hands)
            .where(settlement_hands.c.batch_id == batch.id, settlement_hands.c.status == BATCHED)
            .values(status=SETTLED, updated_at=now)
        )
        await session.execute(
            update(settlement_batches)
            .where(settlement_batches.c.id == batch.id)
            .values(status=BATCH_CONFIRMED, tx_hash=tx_hash, block_number=block, updated_at=now)
        )
        await self._emit(
            session,
            SettlementConfirmed(
                batch_id=str(batch.id),
                chain_id=self.chain_id,
                tx_hash=tx_hash,
                block_number=block,
                hand_ids=hand_ids,
            ),
            key=str(batch.id),
        )
        log.info(
            "settlement.confirmed",
            batch_id=batch.id,
            tx_hash=tx_hash,
            block=block,
            hands_mirrored=mirrored,
        )

    async def _mirror(self, session: AsyncSession, batch_id: int, now: datetime) -> int:
        """Mirror the batch's hands not mirrored before into the vault mirror (exact
        amounts and ledger), in settlement order; how many were mirrored now."""
        h = settlement_hands.c
        rows = (
            (
                await session.execute(
                    select(h.seq, h.hand_id, h.chain_table_id, h.hand_number, h.hand)
                    .where(h.batch_id == batch_id, h.status == BATCHED, h.mirrored_at.is_(None))
                    .order_by(h.chain_table_id, h.hand_number)
                    .with_for_update()
                )
            )
            .mappings()
            .all()
        )
        if not rows:
            return 0
        # The vault watcher locks its cursor row first in every transaction that moves
        # exact amounts; taking it too makes the two take turns on chain_vault_balances.
        await session.execute(
            select(chain_cursors.c.block_number)
            .where(
                chain_cursors.c.chain_id == self.chain_id,
                chain_cursors.c.name == watcher_cursor(self.address),
            )
            .with_for_update()
        )
        for row in rows:
            await self._mirror_hand(session, str(row["hand_id"]), hand_from_row(row), now)
            await session.execute(
                update(settlement_hands).where(h.seq == row["seq"]).values(mirrored_at=now)
            )
        return len(rows)

    async def _mirror_hand(
        self, session: AsyncSession, hand_id: str, hand: Hand, now: datetime
    ) -> None:
        """One settled hand: the players' exact ``locked`` amounts follow the chain, then
        the ledger follows their floors (:func:`ludex.chain.vault.hand_legs`). If the
        ledger refuses, the exact amounts still move (as the watcher does with an event
        it rejects) and ``ludex chain reconcile`` shows the difference."""
        b = chain_vault_balances.c
        for player, delta in zip(hand.players, hand.deltas, strict=True):
            if delta == 0:
                continue
            key = (
                (b.chain_id == self.chain_id)
                & (b.contract == self.address)
                & (b.token == hand.token)
                & (b.player == player)
            )
            held = await session.scalar(select(b.locked).where(key).with_for_update())
            if held is None:
                await session.execute(
                    insert(chain_vault_balances).values(
                        chain_id=self.chain_id,
                        contract=self.address,
                        token=hand.token,
                        player=player,
                        available="0",
                        locked=str(delta),
                        updated_at=now,
                    )
                )
            else:
                await session.execute(
                    update(chain_vault_balances)
                    .where(key)
                    .values(locked=str(int(held) + delta), updated_at=now)
                )
        metadata = {
            "chain_id": str(self.chain_id),
            "table_id": str(hand.table_id),
            "hand_number": str(hand.hand_number),
            "hand_id": hand_id,
            "record": _hex(hand_record(hand)),
        }
        try:
            accounts, transfers = hand_transfers(
                self.chain_id, self.address, hand, self.ledger_unit, metadata
            )
            async with session.begin_nested():
                await ledger.create_accounts(session, accounts)
                await ledger.transfer(session, transfers)
        except (ValueError, LedgerError) as exc:
            log.error(
                "settlement.mirror_refused",
                hand_id=hand_id,
                table=hand.table_id,
                number=hand.hand_number,
                error=f"{type(exc).__name__}: {exc}"[:300],
                hint="the exact amounts moved, the ledger did not: see `ludex chain reconcile`",
            )

    async def _unconfirm(self, session: AsyncSession, batch: _Batch, record: TxRecord) -> None:
        now = datetime.now(UTC)
        await session.execute(
            update(settlement_hands)
            .where(settlement_hands.c.batch_id == batch.id, settlement_hands.c.status == SETTLED)
            .values(status=BATCHED, updated_at=now)
        )
        await session.execute(
            update(settlement_batches)
            .where(settlement_batches.c.id == batch.id)
            .values(status=SUBMITTED, block_number=None, updated_at=now)
        )
        hand_ids = [h for h, _ in await self._batch_hands(session, batch.id)]
        reason = f"a reorg removed the block holding {record.tx_hash}; sending it again"
        await self._emit(
            session,
            SettlementFailed(
                batch_id=str(batch.id),
                chain_id=self.chain_id,
                hand_ids=hand_ids,
                reason=reason,
                tx_hash=record.tx_hash,
                next_step="resubmit",
            ),
            key=str(batch.id),
        )
        log.warning("settlement.reorged", batch_id=batch.id, tx_hash=record.tx_hash)

    async def _emit(self, session: AsyncSession, payload: Payload, *, key: str) -> None:
        await add_to_outbox(session, new_event(payload, key=key, producer=PRODUCER))


class ConfiguredSettlement:
    """The service as ``ludex run`` starts it: only when a contract and a keystore are set."""

    def __init__(self, container: Container) -> None:
        self.container = container

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.container.settings
        missing = [
            name
            for name, value in (
                ("LUDEX_CHAIN_CONTRACT", settings.chain_contract),
                ("LUDEX_OPERATOR_KEYSTORE", settings.operator_keystore),
            )
            if not value
        ]
        if missing or settings.chain_contract is None:
            log.info(
                "settlement.skipped",
                reason=f"{' and '.join(missing)} not set; hands are not settled on chain",
            )
            return
        from ludex.chain.keystore import KeystoreSigner

        signer = await asyncio.to_thread(KeystoreSigner.from_settings, settings)
        service = SettlementService(
            self.container.store,
            self.container.bus,
            self.container.chain,
            signer,
            contract=settings.chain_contract,
            confirmations=settings.chain_confirmations,
            ledger_unit=settings.chain_ledger_unit,
            batch_size=settings.settlement_batch_size,
            batch_seconds=settings.settlement_batch_seconds,
            poll_interval=settings.chain_poll_interval,
        )
        await service.run(stop)
