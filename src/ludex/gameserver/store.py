"""The game server's operational records: its tables, finished hands, and the effects
of each table carried out exactly once (ledger transfers and ``poker.*`` events).

Ledger accounts, in the table's currency (one ledger per currency):

* ``player:<player>`` (CHIPS) or ``player:<player>:<tag>`` (a chain currency; ``<tag>``
  is 14 hex digits of the ledger name's keccak): what the player may buy in with;
* ``table:<table id>``: the table's escrow. Between hands it holds exactly the seated
  stacks plus any cash-out not yet carried out (:meth:`Table.chips_at_table`);
* ``poker-rake[:<tag>]``: the house's rake; ``poker-house[:<tag>]``: where admin credits
  come from (untracked, may go negative).

Every effect is carried out in a transaction that also records its id in
``gameserver_effects``; an effect seen again (the owner crashed before saving that it
was done) is skipped and its first outcome returned. Events go through the outbox in the
transaction that records them. Event effects of many tables can share one transaction
(:meth:`GameStore.apply_events`, the host's group commit): ids already recorded are
skipped, the rest are claimed with a plain INSERT, so two writers racing on one effect
(an old owner still finishing while a new one takes over) cannot both succeed: the
loser's transaction fails and its retry skips what the winner wrote. I/O only: the rules
are in :mod:`ludex.gameserver.table`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from eth_utils.crypto import keccak
from sqlalchemy import CursorResult, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ludex import ledger
from ludex.adapters.sql.outbox import add_to_outbox
from ludex.adapters.sql.tables import gameserver_effects, poker_hands, poker_tables
from ludex.errors import AccountNotFound, InsufficientFunds, LedgerError
from ludex.events import Envelope, HandCompleted, HandStarted, PlayerActed, new_event
from ludex.gameserver.table import (
    ActionEffect,
    BuyIn,
    CashOut,
    Effect,
    HandDone,
    HandStartedEffect,
    TableConfig,
    TableError,
)
from ludex.ledger import AccountKind, AccountSpec, TransferSpec
from ludex.ledger.repository import transfer_with_balances
from ludex.ports.store import OperationalStore

PRODUCER: Final = "gameserver"
CLAIM_CHUNK: Final = 500
"""Effect ids looked up per SELECT ... IN (well under every backend's bound-parameter limit)."""
OK: Final = "ok"
OPEN: Final = "open"
CLOSED: Final = "closed"


def _tag(currency: str) -> str:
    return keccak(text=currency).hex()[:14]


def player_account(currency: str, player: str) -> str:
    return f"player:{player}" if currency == ledger.CHIPS else f"player:{player}:{_tag(currency)}"


def escrow_account(table_id: str) -> str:
    return f"table:{table_id}"


def rake_account(currency: str) -> str:
    return "poker-rake" if currency == ledger.CHIPS else f"poker-rake:{_tag(currency)}"


def house_account(currency: str) -> str:
    return "poker-house" if currency == ledger.CHIPS else f"poker-house:{_tag(currency)}"


@dataclass(frozen=True, slots=True)
class HandRow:
    hand_id: str
    table_id: str
    number: int
    record: dict[str, Any]
    history_phh: str
    deltas: dict[str, int]
    rake: int
    completed_at: datetime


def _hand(row: Any) -> HandRow:
    return HandRow(
        hand_id=row.hand_id,
        table_id=row.table_id,
        number=row.number,
        record=json.loads(row.record),
        history_phh=row.history_phh,
        deltas=json.loads(row.deltas),
        rake=row.rake,
        completed_at=row.completed_at,
    )


def _config(raw: str) -> TableConfig:
    return msgspec.json.decode(raw.encode(), type=TableConfig)


class GameStore:
    """Tables, hands and effects on the operational store."""

    def __init__(self, store: OperationalStore) -> None:
        self.store = store

    # -- tables ----------------------------------------------------------------------

    async def create_table(self, config: TableConfig) -> None:
        """Register a table and open its ledger accounts; TableError if the id is taken."""
        currency = config.currency
        ledger.validate_ledger(currency)
        async with self.store.transaction() as session:
            taken = select(poker_tables.c.table_id).where(
                poker_tables.c.table_id == config.table_id
            )
            if (await session.execute(taken)).first() is not None:
                raise TableError(f"table {config.table_id} exists; choose another id")
            await session.execute(
                insert(poker_tables).values(
                    table_id=config.table_id,
                    name=config.name,
                    config=msgspec.json.encode(config).decode(),
                    status=OPEN,
                    created_at=datetime.now(UTC),
                )
            )
            await ledger.create_accounts(session, _table_accounts(config))

    async def tables(self, *, status: str | None = OPEN) -> list[TableConfig]:
        query = select(poker_tables.c.config).order_by(poker_tables.c.table_id)
        if status is not None:
            query = query.where(poker_tables.c.status == status)
        async with self.store.transaction(read_only=True) as session:
            rows = (await session.execute(query)).scalars().all()
        return [_config(r) for r in rows]

    async def table(self, table_id: str) -> tuple[TableConfig, str] | None:
        query = select(poker_tables.c.config, poker_tables.c.status).where(
            poker_tables.c.table_id == table_id
        )
        async with self.store.transaction(read_only=True) as session:
            row = (await session.execute(query)).first()
        return None if row is None else (_config(row.config), row.status)

    async def set_status(self, table_id: str, status: str) -> bool:
        async with self.store.transaction() as session:
            result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
                update(poker_tables)
                .where(poker_tables.c.table_id == table_id)
                .values(status=status)
            )
        return result.rowcount == 1

    # -- money -----------------------------------------------------------------------

    async def credit(self, currency: str, player: str, amount: int, transfer_id: str) -> int:
        """Credit a player from the house (admin, demo, tests); idempotent by transfer id.
        Returns the player's balance after."""
        async with self.store.transaction() as session:
            await ledger.create_accounts(session, _player_accounts(currency, player))
            _, balances = await transfer_with_balances(
                session,
                [
                    TransferSpec(
                        id=transfer_id,
                        debit=house_account(currency),
                        credit=player_account(currency, player),
                        amount=amount,
                        ledger=currency,
                        code="poker.credit",
                    )
                ],
            )
        return balances[player_account(currency, player)].balance

    async def balance(self, currency: str, player: str) -> int:
        """The player's balance; 0 for a player who never had chips in ``currency``."""
        ledger.validate_ledger(currency)
        return (await self.balances([player_account(currency, player)])).get(
            player_account(currency, player), 0
        )

    async def balances(self, account_ids: Sequence[str]) -> dict[str, int]:
        """Balances of the accounts that exist (missing ones are left out)."""
        async with self.store.transaction(read_only=True) as session:
            found = await ledger.get_accounts(session, account_ids)
        return {k: account.balance.balance for k, account in found.items()}

    # -- effects ---------------------------------------------------------------------

    async def apply(self, config: TableConfig, effects: Sequence[Effect]) -> dict[str, str]:
        """Carry out effects in order, each once; their outcomes by id (``ok`` or why a
        buy-in was refused). Money effects get a transaction each, events share one."""
        outcomes: dict[str, str] = {}
        events: list[Effect] = []
        for effect in effects:
            if isinstance(effect, BuyIn | CashOut):
                if events:
                    outcomes.update(await self.apply_events([(config, events)]))
                    events = []
                outcomes[effect.id] = await self._money(config, effect)
            else:
                events.append(effect)
        if events:
            outcomes.update(await self.apply_events([(config, events)]))
        return outcomes

    async def _money(self, config: TableConfig, effect: BuyIn | CashOut) -> str:
        currency, table_id = config.currency, config.table_id
        if isinstance(effect, BuyIn):
            debit, credit = player_account(currency, effect.player), escrow_account(table_id)
            code = "poker.buy_in"
        else:
            debit, credit = escrow_account(table_id), player_account(currency, effect.player)
            code = "poker.cash_out"
        spec = TransferSpec(
            id=effect.id,
            debit=debit,
            credit=credit,
            amount=effect.amount,
            ledger=currency,
            code=code,
            metadata={"table": table_id, "seat": str(effect.seat)},
        )
        async with self.store.transaction() as session:
            done = await _outcome(session, effect.id)
            if done is not None:
                return done
            if isinstance(effect, CashOut):
                await ledger.create_accounts(session, _player_accounts(currency, effect.player))
            outcome = OK
            try:
                async with session.begin_nested():
                    await ledger.transfer(session, [spec])
            except (InsufficientFunds, AccountNotFound) as exc:
                if isinstance(effect, CashOut):
                    raise
                outcome = f"refused: {_reason(exc)}"[:200]
            await _record(session, effect.id, table_id, outcome)
        return outcome

    async def apply_events(
        self, batches: Sequence[tuple[TableConfig, Sequence[Effect]]]
    ) -> dict[str, str]:
        """Carry out event effects (no money) of one or many tables in one transaction,
        each once and in the order given; every id maps to ``ok``."""
        for _, effects in batches:
            if any(isinstance(e, BuyIn | CashOut) for e in effects):
                raise TableError("apply_events takes no money effects; use apply")
        ids = [e.id for _, effects in batches for e in effects]
        now = datetime.now(UTC)
        async with self.store.transaction() as session:
            done: set[str] = set()
            for start in range(0, len(ids), CLAIM_CHUNK):
                chunk = ids[start : start + CLAIM_CHUNK]
                query = select(gameserver_effects.c.effect_id).where(
                    gameserver_effects.c.effect_id.in_(chunk)
                )
                done.update((await session.execute(query)).scalars())
            claims: list[dict[str, Any]] = []
            envelopes: list[Envelope] = []
            for config, effects in batches:
                for effect in effects:
                    if effect.id in done:
                        continue
                    done.add(effect.id)
                    claims.append(
                        {
                            "effect_id": effect.id,
                            "table_id": config.table_id,
                            "outcome": OK,
                            "done_at": now,
                        }
                    )
                    if isinstance(effect, HandDone):
                        await self._hand_done(session, config, effect, now)
                    envelopes.append(_envelope(config, effect, now))
            if claims:
                conn = await session.connection()
                await conn.execute(insert(gameserver_effects), claims)
            await add_to_outbox(session, *envelopes)
        return dict.fromkeys(ids, OK)

    async def _hand_done(
        self, session: AsyncSession, config: TableConfig, effect: HandDone, now: datetime
    ) -> None:
        if effect.rake:
            await ledger.transfer(
                session,
                [
                    TransferSpec(
                        id=f"rake:{effect.hand_id}",
                        debit=escrow_account(config.table_id),
                        credit=rake_account(config.currency),
                        amount=effect.rake,
                        ledger=config.currency,
                        code="poker.rake",
                        metadata={"table": config.table_id, "hand": effect.hand_id},
                    )
                ],
            )
        await session.execute(
            insert(poker_hands).values(
                hand_id=effect.hand_id,
                table_id=config.table_id,
                number=effect.number,
                record=effect.record,
                history_phh=effect.history_phh,
                deltas=json.dumps(effect.deltas, separators=(",", ":")),
                rake=effect.rake,
                completed_at=now,
            )
        )

    async def prune_effects(self, older_than: timedelta) -> int:
        """Forget effect ids older than any saved table state could still hold."""
        cutoff = datetime.now(UTC) - older_than
        async with self.store.transaction() as session:
            result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
                delete(gameserver_effects).where(gameserver_effects.c.done_at < cutoff)
            )
        return int(result.rowcount or 0)

    # -- hands -----------------------------------------------------------------------

    async def hand(self, hand_id: str) -> HandRow | None:
        async with self.store.transaction(read_only=True) as session:
            row = (
                await session.execute(select(poker_hands).where(poker_hands.c.hand_id == hand_id))
            ).first()
        return None if row is None else _hand(row)

    async def hands(
        self, table_id: str, *, limit: int = 50, before: int | None = None
    ) -> list[HandRow]:
        query = (
            select(poker_hands)
            .where(poker_hands.c.table_id == table_id)
            .order_by(poker_hands.c.number.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(poker_hands.c.number < before)
        async with self.store.transaction(read_only=True) as session:
            rows = (await session.execute(query)).all()
        return [_hand(r) for r in rows]


def _house(currency: str) -> AccountSpec:
    """Where credits come from: untracked, may go negative."""
    return AccountSpec(
        house_account(currency),
        currency,
        AccountKind.HOUSE,
        allow_negative=True,
        track_balance=False,
    )


def _table_accounts(config: TableConfig) -> list[AccountSpec]:
    currency = config.currency
    return [
        AccountSpec(escrow_account(config.table_id), currency, AccountKind.TABLE_ESCROW),
        AccountSpec(rake_account(currency), currency, AccountKind.TREASURY),
        _house(currency),
    ]


def _player_accounts(currency: str, player: str) -> list[AccountSpec]:
    return [
        AccountSpec(player_account(currency, player), currency, AccountKind.PLAYER),
        _house(currency),
    ]


async def _outcome(session: AsyncSession, effect_id: str) -> str | None:
    query = select(gameserver_effects.c.outcome).where(gameserver_effects.c.effect_id == effect_id)
    value = (await session.execute(query)).scalar_one_or_none()
    return None if value is None else str(value)


async def _record(session: AsyncSession, effect_id: str, table_id: str, outcome: str) -> None:
    await session.execute(
        insert(gameserver_effects).values(
            effect_id=effect_id, table_id=table_id, outcome=outcome, done_at=datetime.now(UTC)
        )
    )


def _reason(exc: LedgerError) -> str:
    if isinstance(exc, AccountNotFound):
        return "the player has no balance in this currency"
    return str(exc)


_PAYLOADS: Final = {
    HandStartedEffect: HandStarted,
    ActionEffect: PlayerActed,
    HandDone: HandCompleted,
}
_NOT_IN_EVENT: Final = frozenset({"id", "number", "record"})
"""Effect fields the event leaves out (the hand's number and record are in poker_hands)."""


def _envelope(config: TableConfig, effect: Effect, now: datetime) -> Envelope:
    """The event of an event effect: its fields, plus the table (and a hand's currency)."""
    kind = _PAYLOADS.get(type(effect))
    if kind is None:  # pragma: no cover - money effects never reach here
        raise TableError(f"effect {effect.id} is not an event")
    fields = {k: v for k, v in msgspec.structs.asdict(effect).items() if k not in _NOT_IN_EVENT}
    if isinstance(effect, HandDone):
        fields["currency"] = config.currency
    payload = kind(table_id=config.table_id, **fields)
    return new_event(payload, key=config.table_id, producer=PRODUCER, occurred_at=now)
