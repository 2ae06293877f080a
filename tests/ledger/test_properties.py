"""Property tests (hypothesis): the stored ledger follows the in-memory rules exactly.

Random sequences of transfers (single, linked, pending, posts, voids,
resubmissions, some bound to fail for lack of funds or a wrong ledger) run against
the store and against the pure :class:`~ludex.ledger.model.Book` side by side:

* every operation has the same outcome on both (the same records or the same error);
* the sum of all balances of a ledger is zero, and so are pending debits minus credits;
* replaying the stored transfer log (``all_transfers``) rebuilds every stored balance.

Each example draws which of its two counterparties (the outside world, index 0,
and a house, the last index; both may go negative) keep a tracked balance and
which are untracked (``track_balance=False``: never locked, balance summed from the
log), so transfers between two tracked accounts, one of each and two untracked
ones all occur.

SQLite gets many examples; PostgreSQL and MariaDB fewer (each example is a few
dozen committed transactions). Every example gets its own two token ledgers and
accounts in one database per backend, so the invariants are checked per example.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ludex import ledger
from ludex.adapters.sql import SqlStore
from ludex.errors import LedgerError
from ludex.ledger.model import AccountKind, AccountSpec, Book, TransferSpec, replay
from tests.contract.sql_backends import BACKENDS, fresh_database, started_store

EXAMPLES = {"sqlite": 80, "postgres": 12, "mysql": 12}
PLAYERS = 3
T0 = datetime(2025, 1, 1, tzinfo=UTC)

_examples = itertools.count(1)

HOUSE = PLAYERS + 1
"""The second counterparty's index (0 is the outside world; 1..PLAYERS are players)."""

# (kind, ledger index, debit index, credit index, amount, extra)
transfer_op = st.tuples(
    st.just("transfer"),
    st.integers(0, 1),
    st.integers(0, HOUSE),
    st.integers(0, HOUSE),
    st.integers(1, 300),
    st.booleans(),  # pending
)
linked_op = st.tuples(st.just("linked"), st.lists(transfer_op, min_size=2, max_size=3))
resolve_op = st.tuples(
    st.just("resolve"), st.integers(0, 50), st.sampled_from(["post", "partial", "void"])
)
resubmit_op = st.tuples(st.just("resubmit"), st.integers(0, 50))
mismatch_op = st.tuples(st.just("mismatch"), st.integers(1, PLAYERS), st.integers(1, 50))
operations = st.lists(
    st.one_of(transfer_op, linked_op, resolve_op, resubmit_op, mismatch_op),
    min_size=5,
    max_size=30,
)
# Whether the world and the house of each example keep a tracked balance.
tracking = st.tuples(st.booleans(), st.booleans())


class Harness:
    """One event loop and one migrated store for a backend, for every example."""

    def __init__(self, backend: str, tmp_path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self._stack = AsyncExitStack()
        self.store: SqlStore = self.run(self._open(backend, tmp_path))

    async def _open(self, backend: str, tmp_path: Path) -> SqlStore:
        url = await self._stack.enter_async_context(fresh_database(backend, tmp_path))
        return await self._stack.enter_async_context(started_store(url))

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def close(self) -> None:
        self.run(self._stack.aclose())
        self.loop.close()


@pytest.fixture(params=BACKENDS)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(request.param, tmp_path)
    try:
        yield h
    finally:
        h.close()


def _ledger_name(example: int, index: int) -> str:
    return f"TOKEN:{example * 2 + index}:0x{'5e' * 20}"


def _account_id(example: int, ledger_index: int, index: int) -> str:
    name = "world" if index == 0 else "house" if index == HOUSE else f"p{index}"
    return f"e{example}-l{ledger_index}-{name}"


def _spec(example: int, ledger: str, li: int, i: int, tracked: tuple[bool, bool]) -> AccountSpec:
    account_id = _account_id(example, li, i)
    if i == 0:
        return AccountSpec(account_id, ledger, AccountKind.EXTERNAL, True, tracked[0])
    if i == HOUSE:
        return AccountSpec(account_id, ledger, AccountKind.HOUSE, True, tracked[1])
    return AccountSpec(account_id, ledger, AccountKind.PLAYER)


async def _apply(store: SqlStore, book: Book, call: str, *args: Any) -> Any:
    """Run one operation on the store and on the book; return the outcome of both."""
    stored: Any
    expected: Any
    try:
        async with store.transaction() as session:
            if call == "transfer":
                stored = await ledger.transfer(session, args[0], now=T0)
            elif call == "post":
                stored = await ledger.post_pending(
                    session, args[0], id=args[1], amount=args[2], now=T0
                )
            else:
                stored = await ledger.void_pending(session, args[0], id=args[1], now=T0)
    except LedgerError as exc:
        stored = type(exc)
    try:
        if call == "transfer":
            expected = book.transfer(args[0], T0)
        else:
            amount = None if call == "void" else args[2]
            if call == "post" and amount is None:
                amount = book.transfers[args[0]].amount if args[0] in book.transfers else 1
            expected = book.resolve(args[0], id=args[1], post_amount=amount, now=T0)
    except LedgerError as exc:
        expected = type(exc)
    return stored, expected


def _comparable(outcome: Any) -> Any:
    """Records without seq (the store numbers its whole database) and created_at."""
    if isinstance(outcome, list):
        return [_comparable(o) for o in outcome]
    if isinstance(outcome, type):
        return outcome
    return (
        outcome.id,
        outcome.debit,
        outcome.credit,
        outcome.amount,
        outcome.state,
        outcome.pending_id,
    )


async def _run_example(store: SqlStore, ops: list[Any], tracked: tuple[bool, bool]) -> None:
    example = next(_examples)
    ledgers = [_ledger_name(example, i) for i in range(2)]
    specs = [
        _spec(example, ledgers[li], li, i, tracked) for li in range(2) for i in range(HOUSE + 1)
    ]
    async with store.transaction() as session:
        await ledger.create_accounts(session, specs)
    book = Book()
    book.open(*specs)
    deposits = [
        TransferSpec(
            f"e{example}-d{li}-{i}",
            _account_id(example, li, 0),
            _account_id(example, li, i),
            500,
            ledgers[li],
            "deposit",
        )
        for li in range(2)
        for i in range(1, PLAYERS + 1)
    ]
    stored, expected = await _apply(store, book, "transfer", deposits)
    assert _comparable(stored) == _comparable(expected)
    submitted: list[list[TransferSpec]] = []
    pendings: list[str] = []
    ids = itertools.count()

    def make(op: Any) -> TransferSpec | None:
        _, li, debit, credit, amount, pending = op
        if debit == credit:
            return None
        return TransferSpec(
            f"e{example}-t{next(ids)}",
            _account_id(example, li, debit),
            _account_id(example, li, credit),
            amount,
            ledgers[li],
            "test",
            pending=pending,
            timeout_s=3600 if pending else None,
        )

    for op in ops:
        kind = op[0]
        if kind in {"transfer", "linked"}:
            made = [make(op)] if kind == "transfer" else [make(o) for o in op[1]]
            batch = [s for s in made if s is not None]
            if not batch:
                continue
            stored, expected = await _apply(store, book, "transfer", batch)
            assert _comparable(stored) == _comparable(expected), (op, stored, expected)
            if not isinstance(stored, type):
                submitted.append(batch)
                pendings.extend(s.id for s in batch if s.pending)
        elif kind == "resolve" and pendings:
            pending_id = pendings[op[1] % len(pendings)]
            how = op[2]
            call = "void" if how == "void" else "post"
            amount = None
            if how == "partial":
                amount = max(1, book.transfers[pending_id].amount // 2)
            stored, expected = await _apply(
                store, book, call, pending_id, f"e{example}-r{next(ids)}", amount
            )
            assert _comparable(stored) == _comparable(expected), (op, stored, expected)
        elif kind == "resubmit" and submitted:
            batch = submitted[op[1] % len(submitted)]
            async with store.transaction() as session:
                again = await ledger.transfer(session, batch)
            assert [t.id for t in again] == [s.id for s in batch]
            assert [t.seq for t in again] == sorted(t.seq for t in again)
        elif kind == "mismatch":
            spec = TransferSpec(
                f"e{example}-m{next(ids)}",
                _account_id(example, 0, 0),
                _account_id(example, 1, op[1]),
                op[2],
                ledgers[0],
                "test",
            )
            stored, expected = await _apply(store, book, "transfer", [spec])
            assert stored is expected
            assert stored is not None
            assert issubclass(stored, LedgerError)

    async with store.transaction() as session:
        for name in ledgers:
            balances = await ledger.ledger_balances(session, name)
            log = await ledger.all_transfers(session, name)
            assert sum(b.balance for b in balances.values()) == 0
            assert sum(b.pending_debits - b.pending_credits for b in balances.values()) == 0
            rebuilt = replay(log)
            for account_id, bal in balances.items():
                assert bal == book.balance(account_id)
                if account_id in rebuilt:
                    assert rebuilt[account_id] == bal
                else:
                    assert bal.posted_debits == bal.posted_credits == bal.pending_debits == 0


def test_store_follows_the_rules_and_the_log_rebuilds_every_balance(harness: Harness) -> None:
    backend = harness.store.dialect

    @settings(
        max_examples=EXAMPLES["sqlite" if backend == "sqlite" else "postgres"],
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        derandomize=True,
    )
    @given(operations, tracking)
    def check(ops: list[Any], tracked: tuple[bool, bool]) -> None:
        harness.run(_run_example(harness.store, ops, tracked))

    check()
