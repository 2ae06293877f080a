"""Reconciliation: the ledger, the stored provider log and the event log must agree.

Three records of every accepted provider transaction exist:

* the **provider log**: ``provider_transactions`` rows with status ``OK`` (bets, wins,
  rollbacks; tombstones are not transactions);
* the **ledger**: one transfer with code ``bet``, ``win`` or ``rollback`` per row
  that moved money (amount > 0), under the id the row names (``transfer_id``);
* the **event log**: one ``wallet.bet_placed`` / ``wallet.win_settled`` /
  ``wallet.rolled_back`` row in the outbox per row.

:func:`reconcile` reads all three and returns every difference: missing on one
side, amount or kind mismatch, duplicated events. The outbox must still hold the
period reconciled (the relay's purge must keep it); ``ludex wallet reconcile``
prints the differences and exits 1 if there is any.

Read-only: this module must never change a row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ludex import ledger
from ludex.adapters.sql.tables import ledger_transfers, outbox
from ludex.errors import EventError
from ludex.events import BetPlaced, RolledBack, WinSettled, decode
from ludex.ports.store import OperationalStore
from ludex.wagering import repository

CODES: Final = ("bet", "win", "rollback")
EVENT_KINDS: Final = {
    "wallet.bet_placed": "bet",
    "wallet.win_settled": "win",
    "wallet.rolled_back": "rollback",
}


@dataclass(frozen=True, slots=True)
class Difference:
    """One disagreement between the three records."""

    source: str
    provider: str
    transaction_id: str
    detail: str

    def __str__(self) -> str:
        return f"{self.source}: {self.provider}/{self.transaction_id}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Report:
    transactions: int
    transfers: int
    events: int
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences


async def reconcile(store: OperationalStore) -> Report:
    async with store.transaction() as session:
        return await reconcile_in(session)


async def reconcile_in(session: AsyncSession) -> Report:
    rows = [r for r in await repository.all_transactions(session) if r.status == "OK"]
    transfers = {
        t.id: t
        for t in (
            await session.execute(
                select(ledger_transfers).where(
                    ledger_transfers.c.code.in_(CODES), ledger_transfers.c.ledger == ledger.CHIPS
                )
            )
        ).all()
    }
    events: dict[tuple[str, str], list[tuple[str, int]]] = {}
    diffs: list[Difference] = []
    outbox_rows = (
        await session.execute(
            select(outbox.c.id, outbox.c.event_type, outbox.c.payload).where(
                outbox.c.event_type.in_(list(EVENT_KINDS))
            )
        )
    ).all()
    for row in outbox_rows:
        try:
            payload = decode(bytes(row.payload)).payload
        except EventError as exc:
            diffs.append(Difference("events", "?", "?", f"outbox row {row.id} unreadable: {exc}"))
            continue
        assert isinstance(payload, BetPlaced | WinSettled | RolledBack)
        key = (payload.provider, payload.transaction_id)
        events.setdefault(key, []).append((EVENT_KINDS[row.event_type], payload.amount))

    seen_transfers: set[str] = set()
    for r in rows:
        key = (r.provider_id, r.transaction_id)
        # ledger side
        if r.amount > 0:
            transfer = transfers.get(r.transfer_id or "")
            if transfer is None:
                diffs.append(
                    Difference("ledger", *key, f"{r.kind} of {r.amount} has no ledger transfer")
                )
            else:
                seen_transfers.add(transfer.id)
                if int(transfer.amount) != r.amount:
                    diffs.append(
                        Difference(
                            "ledger",
                            *key,
                            f"amount: provider log {r.amount}, ledger {transfer.amount}",
                        )
                    )
                if transfer.code != r.kind:
                    diffs.append(
                        Difference(
                            "ledger", *key, f"kind: provider log {r.kind}, ledger {transfer.code}"
                        )
                    )
        elif r.transfer_id is not None and r.transfer_id in transfers:
            seen_transfers.add(r.transfer_id)
            diffs.append(Difference("ledger", *key, f"{r.kind} of 0 has a ledger transfer"))
        # event side
        found = events.pop(key, [])
        if not found:
            diffs.append(Difference("events", *key, f"{r.kind} of {r.amount} has no event"))
            continue
        if len(found) > 1:
            diffs.append(Difference("events", *key, f"{len(found)} events for one {r.kind}"))
        kind, amount = found[0]
        if kind != r.kind or amount != r.amount:
            diffs.append(
                Difference(
                    "events",
                    *key,
                    f"provider log {r.kind} {r.amount}, event {kind} {amount}",
                )
            )
    for transfer_id, transfer in transfers.items():
        if transfer_id not in seen_transfers:
            meta = json.loads(transfer.metadata or "{}")
            diffs.append(
                Difference(
                    "provider log",
                    str(meta.get("provider", "?")),
                    str(meta.get("transaction_id", transfer_id)),
                    f"ledger {transfer.code} of {transfer.amount} (transfer {transfer_id}) "
                    "has no provider transaction",
                )
            )
    for (provider, transaction_id), found in events.items():
        for kind, amount in found:
            diffs.append(
                Difference(
                    "provider log",
                    provider,
                    transaction_id,
                    f"event {kind} of {amount} has no provider transaction",
                )
            )
    return Report(
        transactions=len(rows),
        transfers=len(transfers),
        events=len(outbox_rows),
        differences=diffs,
    )
