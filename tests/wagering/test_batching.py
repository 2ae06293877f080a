"""Group commit: the batching machinery alone, then batched bets and wins on every store.

The service tests call ``WalletService`` directly (not HTTP), so that concurrent
requests land in the same batch: the queue is FIFO and a bet with its limits cached
enqueues without awaiting anything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
import pytest
from sqlalchemy import select

from ludex.adapters.sql.tables import ledger_transfers, outbox, provider_rounds
from ludex.events import decode
from ludex.wagering.batch import GroupCommit
from ludex.wagering.models import BetRequest, Status, WalletResponse, WinRequest
from ludex.wagering.service import WalletService
from tests.wagering.conftest import Harness

# -- GroupCommit alone ---------------------------------------------------------------


class Recorder:
    """A batch runner that records its batches and answers each item with item * 10."""

    def __init__(self, delay: float = 0.01) -> None:
        self.batches: list[list[int]] = []
        self.delay = delay

    async def __call__(self, items: Sequence[int]) -> list[int | BaseException]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        return [ValueError(f"item {i} refused") if i < 0 else i * 10 for i in items]


async def test_concurrent_items_share_batches_and_get_their_own_results() -> None:
    runner = Recorder()
    group: GroupCommit[int, int] = GroupCommit(runner, max_batch=8, slots=1)
    results = await asyncio.gather(*(group.submit(i) for i in range(20)))
    assert results == [i * 10 for i in range(20)]
    assert sorted(i for batch in runner.batches for i in batch) == list(range(20))
    assert max(len(b) for b in runner.batches) == 8  # capped
    assert len(runner.batches) < 20  # grouped: the first runs alone, the others queue
    assert runner.batches[0] == [0]
    assert group.batches == len(runner.batches)
    assert group.items == 20


async def test_two_slots_run_two_batches_at_once() -> None:
    running = 0
    peak = 0

    async def run(items: Sequence[int]) -> list[int | BaseException]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(run, slots=2)
    assert await asyncio.gather(*(group.submit(i) for i in range(10))) == list(range(10))
    assert peak == 2


async def test_solo_items_run_alone() -> None:
    runner = Recorder()
    group: GroupCommit[int, int] = GroupCommit(runner, slots=1)
    await asyncio.gather(*(group.submit(i, solo=(i % 3 == 0)) for i in range(12)))
    for batch in runner.batches:
        if any(i % 3 == 0 for i in batch):
            assert len(batch) == 1, runner.batches


async def test_an_item_error_reaches_only_its_caller() -> None:
    group: GroupCommit[int, int] = GroupCommit(Recorder(), slots=1)
    results = await asyncio.gather(*(group.submit(i) for i in (1, -2, 3)), return_exceptions=True)
    assert results[0] == 10
    assert results[2] == 30
    assert isinstance(results[1], ValueError)
    assert "item -2" in str(results[1])


async def test_a_failed_batch_fails_its_callers_only() -> None:
    calls = 0

    async def run(items: Sequence[int]) -> list[int | BaseException]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        if 99 in items:
            raise RuntimeError("the store went away")
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(run, slots=1)
    first = asyncio.ensure_future(group.submit(99))
    await asyncio.sleep(0)  # 99 leads a batch of its own
    later = [asyncio.ensure_future(group.submit(i)) for i in (1, 2)]
    with pytest.raises(RuntimeError, match="went away"):
        await first
    assert await asyncio.gather(*later) == [1, 2]


async def test_a_cancelled_leader_does_not_strand_its_batch() -> None:
    started = asyncio.Event()

    async def run(items: Sequence[int]) -> list[int | BaseException]:
        started.set()
        await asyncio.sleep(0.02)
        return list(items)

    group: GroupCommit[int, int] = GroupCommit(run, slots=1)
    leader = asyncio.ensure_future(group.submit(1))
    await started.wait()
    followers = [asyncio.ensure_future(group.submit(i)) for i in (2, 3)]
    leader.cancel()
    assert await asyncio.gather(*followers) == [2, 3]


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommit(Recorder(), max_batch=0)


# -- batched bets and wins on every store ------------------------------------------------


def _bet(player: str, amount: int, tx: str, round_id: str) -> BetRequest:
    return BetRequest(
        player_id=player,
        game_id="slots",
        round_id=round_id,
        transaction_id=tx,
        amount=amount,
        currency="CHIPS",
    )


def _win(player: str, amount: int, tx: str, round_id: str, *, closed: bool = True) -> WinRequest:
    return WinRequest(
        player_id=player,
        game_id="slots",
        round_id=round_id,
        transaction_id=tx,
        amount=amount,
        currency="CHIPS",
        round_closed=closed,
    )


async def _cached(wallet: Harness, player: str, *, slots: int = 1) -> WalletService:
    """A service on the harness's store whose limits are cached (so bets enqueue at once),
    warmed with one accepted bet. With one slot, batches run one after the other, so
    requests apply in arrival order (two slots may commit a later batch first)."""
    service = WalletService(
        wallet.store, wallet.kv, cache_seconds=60, producer="test", batch_slots=slots
    )
    assert (await service.bet(wallet.provider, _bet(player, 1, "warm", "r-warm"))).status == "OK"
    return service


async def _events(wallet: Harness, event_type: str) -> list[dict[str, object]]:
    async with wallet.store.transaction() as session:
        rows = (
            await session.execute(select(outbox.c.payload).where(outbox.c.event_type == event_type))
        ).all()
    return [msgspec.to_builtins(decode(bytes(r.payload)).payload) for r in rows]


async def test_a_batch_refuses_exactly_the_bets_the_balance_cannot_cover(wallet: Harness) -> None:
    player = await wallet.add_player(1001)
    service = await _cached(wallet, player)  # balance 1000 after the warm-up bet
    answers = await asyncio.gather(
        *(service.bet(wallet.provider, _bet(player, 100, f"tx-{i}", f"r-{i}")) for i in range(30))
    )
    statuses = [a.status for a in answers]
    assert statuses == [Status.OK] * 10 + [Status.INSUFFICIENT_FUNDS] * 20  # in arrival order
    assert [a.balance for a in answers[:10]] == list(range(900, -1, -100))
    assert all(a.balance == 0 for a in answers[10:])
    assert service.batch_counts[0] < 30  # they were batched
    assert await wallet.balance(player) == 0
    assert await wallet.float_balance() == 1001
    async with wallet.store.transaction() as session:
        bets = (
            await session.execute(
                select(ledger_transfers.c.id).where(ledger_transfers.c.code == "bet")
            )
        ).all()
    assert len(bets) == 11
    placed = await _events(wallet, "wallet.bet_placed")
    assert sorted(e["balance_after"] for e in placed) == [*range(0, 1000, 100), 1000]


async def test_bets_and_the_win_of_one_round_in_one_batch(wallet: Harness) -> None:
    player = await wallet.add_player(1001)
    service = await _cached(wallet, player)
    requests = [_bet(player, 10 * (i + 1), f"b-{i}", "r-shared") for i in range(5)]
    answers: list[WalletResponse] = await asyncio.gather(
        *(service.bet(wallet.provider, r) for r in requests),
        service.win(wallet.provider, _win(player, 400, "w-shared", "r-shared")),
    )
    assert [a.status for a in answers] == [Status.OK] * 6
    assert answers[-1].balance == 1000 - 150 + 400
    async with wallet.store.transaction() as session:
        row = (
            await session.execute(
                select(provider_rounds).where(provider_rounds.c.round_id == "r-shared")
            )
        ).one()
    assert (row.status, row.open_stakes, row.open_bets, row.total_bet, row.total_win) == (
        "closed",
        150,
        5,
        150,
        400,
    )
    finalized = [e for e in await _events(wallet, "game.finalized") if e["round_id"] == "r-shared"]
    assert [(e["total_bet"], e["total_win"]) for e in finalized] == [(150, 400)]
    assert await wallet.balance(player) == 1250


async def test_duplicates_inside_one_batch_move_money_once(wallet: Harness) -> None:
    player = await wallet.add_player(1001)
    service = await _cached(wallet, player)
    answers = await asyncio.gather(
        *(service.bet(wallet.provider, _bet(player, 100, "tx-dup", "r-dup")) for _ in range(3)),
        service.bet(wallet.provider, _bet(player, 200, "tx-dup", "r-dup")),
        service.win(wallet.provider, _win(player, 50, "w-dup", "r-dup")),
        service.win(wallet.provider, _win(player, 50, "w-dup", "r-dup")),
    )
    assert [a.status for a in answers] == [
        Status.OK,
        Status.OK,
        Status.OK,
        Status.DUPLICATE_DIFFERENT_PAYLOAD,
        Status.OK,
        Status.OK,
    ]
    assert answers[0] == answers[1] == answers[2]
    assert answers[4] == answers[5]
    assert await wallet.balance(player) == 1000 - 100 + 50


async def test_two_services_racing_the_same_ids_move_money_once(wallet: Harness) -> None:
    """Two services on one store stand for two processes: their batches race on the same
    transaction ids and rounds; one wins each id, the other answers from its row."""
    players = [await wallet.add_player(10_000) for _ in range(4)]
    first = await _cached(wallet, players[0], slots=2)
    second = WalletService(wallet.store, wallet.kv, cache_seconds=60, producer="test-2")
    await second.bet(wallet.provider, _bet(players[1], 1, "warm-2", "r-warm-2"))

    def load(service: WalletService) -> list[asyncio.Future[WalletResponse]]:
        return [
            asyncio.ensure_future(
                service.bet(wallet.provider, _bet(players[i % 4], 10, f"race-{i}", f"rr-{i}"))
            )
            for i in range(24)
        ]

    answers = await asyncio.gather(*load(first), *load(second))
    assert {a.status for a in answers} == {Status.OK}
    for i in range(24):  # both callers of an id got the same first answer
        assert answers[i] == answers[24 + i]
    balances = [await wallet.balance(p) for p in players]
    assert balances == [10_000 - 1 - 60, 10_000 - 1 - 60, 10_000 - 60, 10_000 - 60]
    assert await wallet.float_balance() == 2 + 24 * 10
