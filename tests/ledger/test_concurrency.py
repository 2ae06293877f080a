"""Many workers on a few hot accounts: exact balances, no deadlock, exactly-once ids.

Runs on SQLite, PostgreSQL and MariaDB. Workers transfer in random directions
between four hot accounts (single transfers and linked pairs that lock three or
four accounts at once), some bound to fail for lack of funds. Any error other
than InsufficientFunds (a deadlock, a lock timeout, a unique violation) fails
the test; the final balances must equal the start plus the successful transfers.
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
