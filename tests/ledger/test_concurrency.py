"""Many workers on a few hot accounts: exact balances, no deadlock, exactly-once ids.

Runs on SQLite, PostgreSQL and MariaDB. Workers transfer in random directions
between four hot accounts (single transfers and linked pairs that lock three or
four accounts at once), some bound to fail for lack of funds. Any error other
than InsufficientFunds (a deadlock, a lock timeout, a unique violation) fails
the test; the final balances must equal the start plus the successful transfers.

The same again with 48 players against ONE untracked account (a provider float,
``track_balance=False``: never locked, balance summed from the log), and
transfers and resolutions between two untracked accounts, which no account lock
serializes (a savepoint and the pending row's UPDATE do).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ludex import ledger
from ludex.adapters.sql import SqlStore, create_store
from ludex.errors import InsufficientFunds, PendingResolved, TransferIdConflict
from ludex.ledger import AccountKind, AccountSpec, Transfer, TransferSpec
from tests.contract.sql_backends import BACKENDS, fresh_database

HOT = ["hot-a", "hot-b", "hot-c", "hot-d"]
START = 1_000
WORKERS = 16
PER_WORKER = 100


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with fresh_database(request.param, tmp_path) as url:
        s = create_store(url, pool_size=WORKERS)
        await s.start()
        try:
            await s.migrate()
            async with s.transaction() as session:
                await ledger.create_accounts(
                    session,
                    [AccountSpec("world", "CHIPS", AccountKind.EXTERNAL, allow_negative=True)]
                    + [AccountSpec(a, "CHIPS", AccountKind.PLAYER) for a in HOT],
                )
                await ledger.transfer(
                    session,
                    [TransferSpec(f"seed-{a}", "world", a, START, "CHIPS", "deposit") for a in HOT],
                )
            yield s
        finally:
            await s.close()


def _random_pair(rng: random.Random) -> tuple[str, str]:
    debit, credit = rng.sample(HOT, 2)
    return debit, credit


async def test_hot_accounts_end_with_exact_balances(store: SqlStore) -> None:
    applied: list[Transfer] = []
    refused = Counter[str]()

    async def worker(n: int) -> None:
        rng = random.Random(n)
        for i in range(PER_WORKER):
            specs = []
            for k in range(2 if i % 5 == 0 else 1):  # every fifth: a linked pair
                debit, credit = _random_pair(rng)
                specs.append(
                    TransferSpec(
                        f"w{n}-{i}-{k}", debit, credit, rng.randint(1, 400), "CHIPS", "move"
                    )
                )
            try:
                async with store.transaction() as session:
                    applied.extend(await ledger.transfer(session, specs))
            except InsufficientFunds as exc:
                refused[exc.account] += 1

    await asyncio.gather(*(worker(n) for n in range(WORKERS)))

    expected = dict.fromkeys(HOT, START)
    for t in applied:
        expected[t.debit] -= t.amount
        expected[t.credit] += t.amount
    async with store.transaction() as session:
        found = await ledger.balances(session, HOT)
        log = await ledger.all_transfers(session, "CHIPS")
    assert {a: b.balance for a, b in found.items()} == expected
    assert all(b.available >= 0 for b in found.values())
    assert sum(refused.values()) > 0, "some transfers should have been refused"
    assert len(applied) > WORKERS * PER_WORKER // 2
    assert len(log) == len(applied) + len(HOT)
    rebuilt = ledger.replay(log)
    assert {a: rebuilt[a] for a in HOT} == found


async def test_the_same_id_submitted_concurrently_applies_once(store: SqlStore) -> None:
    same = TransferSpec("once", "hot-a", "hot-b", 10, "CHIPS", "move")

    async def submit() -> list[Transfer]:
        async with store.transaction() as session:
            return await ledger.transfer(session, [same])

    results = await asyncio.gather(*(submit() for _ in range(8)))
    assert all(r == results[0] for r in results)

    async def submit_different(amount: int) -> str:
        spec = TransferSpec("contested", "hot-c", "hot-d", amount, "CHIPS", "move")
        try:
            async with store.transaction() as session:
                await ledger.transfer(session, [spec])
        except TransferIdConflict:
            return "conflict"
        return f"applied {amount}"

    outcomes = await asyncio.gather(*(submit_different(a) for a in range(1, 9)))
    winners = [o for o in outcomes if o.startswith("applied")]
    assert len(winners) == 1
    assert outcomes.count("conflict") == 7
    won = int(winners[0].split()[1])
    async with store.transaction() as session:
        found = await ledger.balances(session, HOT)
    assert found["hot-a"].balance == START - 10
    assert found["hot-b"].balance == START + 10
    assert found["hot-c"].balance == START - won
    assert found["hot-d"].balance == START + won


async def test_concurrent_posts_and_voids_resolve_each_reservation_once(store: SqlStore) -> None:
    async with store.transaction() as session:
        holds = await ledger.transfer(
            session,
            [
                TransferSpec(
                    f"hold-{i}", HOT[i % 4], HOT[(i + 1) % 4], 50, "CHIPS", "bet", pending=True
                )
                for i in range(8)
            ],
        )

    async def resolve(hold: str, attempt: int) -> str:
        try:
            async with store.transaction() as session:
                if attempt % 2:
                    await ledger.void_pending(session, hold, id=f"{hold}-void-{attempt}")
                    return "void"
                await ledger.post_pending(session, hold, id=f"{hold}-post-{attempt}", amount=30)
                return "post"
        except PendingResolved:
            return "late"

    outcomes = await asyncio.gather(*(resolve(h.id, a) for h in holds for a in range(4)))
    assert outcomes.count("late") == 3 * len(holds)
    posts = outcomes.count("post")
    async with store.transaction() as session:
        found = await ledger.balances(session, HOT)
    assert sum(b.pending_debits + b.pending_credits for b in found.values()) == 0
    assert sum(b.posted_debits for b in found.values()) == 30 * posts


PLAYERS = [f"pl-{i:02d}" for i in range(48)]
FLOAT = AccountSpec(
    "provider:hot", "CHIPS", AccountKind.PROVIDER_FLOAT, allow_negative=True, track_balance=False
)
PER_WORKER_UNTRACKED = 60


async def _open_untracked(store: SqlStore) -> None:
    async with store.transaction() as session:
        await ledger.create_accounts(
            session,
            [
                FLOAT,
                AccountSpec("house:cold", "CHIPS", AccountKind.HOUSE, True, track_balance=False),
            ]
            + [AccountSpec(p, "CHIPS", AccountKind.PLAYER) for p in PLAYERS],
        )
        await ledger.transfer(
            session,
            [TransferSpec(f"seed-{p}", "world", p, START, "CHIPS", "deposit") for p in PLAYERS],
        )


async def test_many_players_against_one_untracked_account_end_exact(store: SqlStore) -> None:
    """Bets, wins, linked pairs and reservations of 48 players against ONE untracked
    float, from 16 workers: no deadlock, exact balances, the float the mirror image."""
    await _open_untracked(store)
    applied: list[Transfer] = []
    posted: list[Transfer] = []
    refused = 0

    async def worker(n: int) -> None:
        nonlocal refused
        rng = random.Random(1000 + n)
        for i in range(PER_WORKER_UNTRACKED):
            player, other = rng.sample(PLAYERS, 2)
            amount = rng.randint(1, 300)
            tid = f"u{n}-{i}"
            if i % 7 == 3:  # a linked pair: two players' locks plus the float
                specs = [
                    TransferSpec(f"{tid}-a", player, FLOAT.id, amount, "CHIPS", "bet"),
                    TransferSpec(f"{tid}-b", FLOAT.id, other, amount // 2 + 1, "CHIPS", "win"),
                ]
            elif i % 2:
                specs = [TransferSpec(tid, FLOAT.id, player, amount // 2 + 1, "CHIPS", "win")]
            else:
                pending = i % 10 == 4
                specs = [
                    TransferSpec(tid, player, FLOAT.id, amount, "CHIPS", "bet", pending=pending)
                ]
            try:
                async with store.transaction() as session:
                    done = await ledger.transfer(session, specs)
                    if specs[0].pending:
                        posted.append(
                            await ledger.post_pending(session, tid, id=f"{tid}-p", amount=amount)
                        )
                    else:
                        applied.extend(done)
            except InsufficientFunds:
                refused += 1

    await asyncio.gather(*(worker(n) for n in range(WORKERS)))

    expected = dict.fromkeys(PLAYERS, START) | {FLOAT.id: 0}
    for t in applied + posted:
        expected[t.debit] -= t.amount
        expected[t.credit] += t.amount
    async with store.transaction() as session:
        found = await ledger.balances(session, list(expected))
        everything = await ledger.ledger_balances(session, "CHIPS")
        log = await ledger.all_transfers(session, "CHIPS")
    assert {a: b.balance for a, b in found.items()} == expected
    assert all(found[p].available >= 0 for p in PLAYERS)
    assert sum(b.pending_debits + b.pending_credits for b in found.values()) == 0
    assert sum(b.balance for b in everything.values()) == 0
    assert len(applied) + len(posted) > WORKERS * PER_WORKER_UNTRACKED // 2
    assert posted, "some reservations should have been posted"
    rebuilt = ledger.replay(log)
    assert {a: rebuilt[a] for a in expected} == found


async def test_untracked_only_transfers_and_resolutions_apply_once(store: SqlStore) -> None:
    """No account lock serializes these: the savepoint and the pending row's UPDATE do."""
    await _open_untracked(store)
    same = TransferSpec("u-once", FLOAT.id, "house:cold", 10, "CHIPS", "settle")

    async def submit(spec: TransferSpec) -> str:
        try:
            async with store.transaction() as session:
                [t] = await ledger.transfer(session, [spec])
        except TransferIdConflict:
            return "conflict"
        return f"{t.seq}:{t.amount}"

    results = await asyncio.gather(*(submit(same) for _ in range(8)))
    assert len(set(results)) == 1
    contested = [
        TransferSpec("u-contested", "house:cold", FLOAT.id, a, "CHIPS", "settle")
        for a in range(1, 9)
    ]
    outcomes = await asyncio.gather(*(submit(s) for s in contested))
    assert outcomes.count("conflict") == 7
    won = int(next(o for o in outcomes if o != "conflict").split(":")[1])

    async with store.transaction() as session:
        holds = await ledger.transfer(
            session,
            [
                TransferSpec(f"u-hold-{i}", FLOAT.id, "house:cold", 50, "CHIPS", "r", pending=True)
                for i in range(4)
            ],
        )

    async def resolve(hold: str, attempt: int) -> str:
        try:
            async with store.transaction() as session:
                if attempt % 2:
                    await ledger.void_pending(session, hold, id=f"{hold}-v{attempt}")
                    return "void"
                await ledger.post_pending(session, hold, id=f"{hold}-p{attempt}", amount=30)
                return "post"
        except PendingResolved:
            return "late"

    resolutions = await asyncio.gather(*(resolve(h.id, a) for h in holds for a in range(4)))
    assert resolutions.count("late") == 3 * len(holds)
    posts = resolutions.count("post")
    async with store.transaction() as session:
        found = await ledger.balances(session, [FLOAT.id, "house:cold"])
        log = await ledger.all_transfers(session, "CHIPS")
    assert found[FLOAT.id].balance == -10 + won - 30 * posts
    assert found["house:cold"].balance == 10 - won + 30 * posts
    assert found[FLOAT.id].pending_debits == found["house:cold"].pending_credits == 0
    assert len([t for t in log if t.pending_id is not None]) == len(holds)
