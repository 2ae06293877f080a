"""Table actors on real stores: buy-in and cash-out through the ledger, hands played
through commands, hole cards only on their owner's channel, illegal actions refused to
the actor only, and a killed owner handing the same hand over to another process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest
from sqlalchemy import select

from ludex.adapters.kv import create_key_value
from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.outbox import fetch_unpublished
from ludex.adapters.sql.tables import poker_hands
from ludex.errors import IllegalAction
from ludex.events import decode
from ludex.gameserver.host import Command, TableHost, TableUnavailable
from ludex.gameserver.store import GameStore, escrow_account, player_account, rake_account
from ludex.gameserver.table import TableConfig, TableError
from ludex.poker.record import from_json, verify_chain
from ludex.ports.kv import KeyValue
from ludex.realtime import Hub, MemoryHistory, decode_frame
from ludex.realtime.hub import Connection
from tests.conftest import service_url
from tests.contract.sql_backends import fresh_database, started_store

PLAYERS = [f"0x{i:040x}" for i in range(0xA1, 0xA5)]


@pytest.fixture(params=["sqlite", "postgres", "mysql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    async with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=["memory", "redis"])
def kv_url(request: pytest.FixtureRequest) -> str:
    return "memory://" if request.param == "memory" else service_url("redis")


def config(**changes: object) -> TableConfig:
    fields: dict[str, object] = {
        "table_id": "t1",
        "small_blind": 1,
        "big_blind": 2,
        "rake_basis_points": 500,
        "rake_cap": 3,
        "min_buy_in": 40,
        "max_buy_in": 200,
        "next_hand_seconds": 0.0,
        "action_seconds": 30.0,
    }
    fields.update(changes)
    return msgspec.convert(fields, TableConfig)


async def setup(store: SqlStore, players: list[str], *, credit: int = 500) -> GameStore:
    games = GameStore(store)
    await games.create_table(config())
    for k, player in enumerate(players):
        await games.credit("CHIPS", player, credit, f"credit-{k}")
    return games


def frames(conn: Connection) -> list[dict[str, object]]:
    out = []
    while (frame := conn.take()) is not None:
        out.append(decode_frame(frame, "json"))
    return out


async def play(host: TableHost, table_id: str, rng: random.Random, actions: int) -> int:
    """Drive the actor with a random legal strategy for ``actions`` decisions."""
    done = idle = 0
    while done < actions:
        table = await host.view(table_id)
        assert table is not None
        view = table.public_view()["hand"]
        if view is None and len(table.seats()) < 2:
            return done  # the others went broke
        if view is None or view["actor_seat"] is None:
            idle += 1
            assert idle < 2000, "no hand to play (fewer than two players left?)"
            await asyncio.sleep(0.005)
            continue
        idle = 0
        player = table.seats()[view["actor_seat"]].player
        legal = view["legal"]
        roll = rng.random()
        if roll < 0.2 and legal["call"]:
            command = Command("act", player, action="fold")
        elif roll < 0.45 and legal["min_to"] is not None:
            command = Command("act", player, action="bet_raise", amount=legal["min_to"])
        else:
            command = Command("act", player, action="check_call")
        await host.submit(table_id, command)
        done += 1
    return done


async def totals(games: GameStore, players: list[str]) -> dict[str, int]:
    ids = [player_account("CHIPS", p) for p in players] + [
        escrow_account("t1"),
        rake_account("CHIPS"),
    ]
    return await games.balances(ids)


async def test_hands_move_money_once_and_a_killed_owner_hands_over_mid_hand(
    db_url: str, kv_url: str
) -> None:
    """Two owners with their own store and cache clients, as two processes would have
    (the memory cache is shared, standing in for Redis)."""
    namespace = f"t-{uuid.uuid4().hex[:8]}:"
    async with started_store(db_url) as store, started_store(db_url, migrate=False) as other:
        kv = create_key_value(kv_url, namespace=namespace)
        await kv.start()
        kv2 = kv if kv_url == "memory://" else create_key_value(kv_url, namespace=namespace)
        if kv2 is not kv:
            await kv2.start()
        try:
            await _handover(store, other, kv, kv2)
        finally:
            await kv.close()
            if kv2 is not kv:
                await kv2.close()


async def _handover(store: SqlStore, other: SqlStore, kv: KeyValue, kv2: KeyValue) -> None:
    await setup(store, PLAYERS[:3])
    games = GameStore(other)
    hub = Hub(MemoryHistory())
    first = TableHost(GameStore(store), kv, hub, owner="one", lease_seconds=0.6, scan_seconds=0.05)
    second = TableHost(
        GameStore(other), kv2, hub, owner="two", lease_seconds=0.6, scan_seconds=0.05
    )
    await first.start()
    assert first.owns("t1")
    watcher = hub.connect(player_id=PLAYERS[0], max_queue=100_000)
    await hub.subscribe(watcher, "table:t1")
    await hub.subscribe(watcher, f"player:{PLAYERS[0]}")
    spectator = hub.connect(max_queue=100_000)
    await hub.subscribe(spectator, "table:t1")
    for seat, player in enumerate(PLAYERS[:3]):
        joined = await first.submit(
            "t1", Command("join", player, seat=seat, amount=200, request_id=f"r{seat}")
        )
        assert joined == {"seat": seat, "stack": 200, "status": "seated"}
    balances = await totals(games, PLAYERS[:3])
    assert balances[escrow_account("t1")] == 600
    assert all(balances[player_account("CHIPS", p)] == 300 for p in PLAYERS[:3])

    rng = random.Random(7)
    await play(first, "t1", rng, 25)
    # Kill the owner in the middle of a hand: nothing released, nothing saved after.
    for _ in range(2000):
        table = await first.view("t1")
        assert table is not None
        if table.hand_id is not None and table.public_view()["hand"]["actor_seat"] is not None:
            break
        await asyncio.sleep(0.005)
    hand_in_play = table.hand_id
    board_before = table.public_view()["hand"]["board"]
    await first.crash()
    await store.close()  # the dead process's connections go, and their transactions with them
    await second.start()
    for _ in range(200):
        if second.owns("t1"):
            break
        await asyncio.sleep(0.05)
    assert second.owns("t1")
    resumed = await second.view("t1")
    assert resumed is not None
    assert resumed.hand_id == hand_in_play
    assert resumed.public_view()["hand"]["board"] == board_before

    await play(second, "t1", rng, 40)
    for player in PLAYERS[:3]:
        await second.submit("t1", Command("leave", player))
    for _ in range(400):
        table = await second.view("t1")
        assert table is not None
        if not table.seats() and not table.effects:
            break
        view = table.public_view()["hand"]
        if view is not None and view["actor_seat"] is not None:
            actor = table.seats()[view["actor_seat"]].player
            await second.submit("t1", Command("act", actor, action="fold"))
        await asyncio.sleep(0.01)
    await second.close()

    table = await second.view("t1")
    assert table is not None
    assert not table.seats()
    assert table.hands_played >= 3
    balances = await totals(games, PLAYERS[:3])
    # Money: every chip bought in came back to a player or went to the rake, once.
    assert balances[escrow_account("t1")] == 0
    assert sum(balances.values()) == 1500
    async with other.transaction(read_only=True) as session:
        hands = (await session.execute(select(poker_hands).order_by(poker_hands.c.number))).all()
        rows = await fetch_unpublished(session, 100_000)
    assert len(hands) == table.hands_played
    assert [h.number for h in hands] == list(range(table.hands_played))
    assert sum(h.rake for h in hands) == balances[rake_account("CHIPS")]
    records = [from_json(json.loads(h.record)) for h in hands]
    assert all(v.ok for v in verify_chain(records))
    # Events: each engine step once, every hand completed once, deltas agree with the ledger.
    events = [decode(row.payload) for row in rows]
    actions = [(e.payload.hand_id, e.payload.sequence) for e in events if e.type == "poker.action"]
    assert len(actions) == len(set(actions))
    completed = [e.payload for e in events if e.type == "poker.hand_completed"]
    assert [c.hand_id for c in completed] == [h.hand_id for h in hands]
    net = {p: sum(c.deltas.get(p, 0) for c in completed) for p in PLAYERS[:3]}
    for player in PLAYERS[:3]:
        assert balances[player_account("CHIPS", player)] == 500 + net[player]
    assert hand_in_play in {c.hand_id for c in completed}
    # Hole cards reached only their owner: the table channel and the spectator never saw one.
    mine = frames(watcher)
    seen_by_spectator = frames(spectator)
    assert any(f["type"] == "hole_cards" for f in mine)
    assert all(f["channel"] == f"player:{PLAYERS[0]}" for f in mine if f["type"] == "hole_cards")
    assert not any(f["type"] == "hole_cards" for f in seen_by_spectator)
    assert not any(
        "cards" in json.dumps(f["data"])
        and f["type"] == "action"
        and f["data"].get("op") == "deal_hole"
        for f in seen_by_spectator
    )  # type: ignore[union-attr]


@contextlib.asynccontextmanager
async def local_host(
    tmp_path: Path, players: list[str], *, credit: int = 500, tables: tuple[str, ...] = ()
) -> AsyncIterator[tuple[SqlStore, GameStore, TableHost]]:
    """One process on SQLite and the memory cache: table t1 (plus ``tables``), the
    players credited, the host started; closed afterwards."""
    async with started_store(f"sqlite:///{tmp_path}/g.db") as store:
        games = await setup(store, players, credit=credit)
        for table_id in tables:
            await games.create_table(config(table_id=table_id))
        kv = create_key_value("memory://")
        await kv.start()
        host = TableHost(games, kv, Hub(MemoryHistory()), scan_seconds=0.05)
        await host.start()
        try:
            yield store, games, host
        finally:
            await host.close()
            await kv.close()


async def test_illegal_and_out_of_turn_actions_change_nothing(tmp_path: Path) -> None:
    async with local_host(tmp_path, PLAYERS[:2]) as (_, _, host):
        actor, other = await _two_seated(host)
        before = (await host.view("t1")).to_bytes()  # type: ignore[union-attr]
        with pytest.raises(IllegalAction, match="turn"):
            await host.submit("t1", Command("act", other, action="check_call"))
        with pytest.raises(IllegalAction):
            await host.submit("t1", Command("act", actor, action="bet_raise", amount=10_000))
        with pytest.raises(IllegalAction, match="check"):
            await host.submit("t1", Command("act", actor, action="check"))
        with pytest.raises(IllegalAction, match="unknown action"):
            await host.submit("t1", Command("act", actor, action="shove"))
        with pytest.raises(TableError, match="taken"):
            await host.submit("t1", Command("join", PLAYERS[2], seat=0, amount=100, request_id="x"))
        assert (await host.view("t1")).to_bytes() == before  # type: ignore[union-attr]


async def test_a_buy_in_beyond_the_balance_is_refused_and_frees_the_seat(tmp_path: Path) -> None:
    async with local_host(tmp_path, PLAYERS[:1], credit=50) as (_, games, host):
        with pytest.raises(TableError, match="available"):
            await host.submit("t1", Command("join", PLAYERS[0], seat=0, amount=100, request_id="a"))
        with pytest.raises(TableError, match="no balance"):
            await host.submit("t1", Command("join", PLAYERS[1], seat=1, amount=100, request_id="b"))
        table = await host.view("t1")
        assert table is not None
        assert not table.seats()
        assert await games.balance("CHIPS", PLAYERS[0]) == 50
        joined = await host.submit(
            "t1", Command("join", PLAYERS[0], seat=0, amount=50, request_id="c")
        )
        assert joined["stack"] == 50
        assert await games.balance("CHIPS", PLAYERS[0]) == 0


async def _two_seated(host: TableHost) -> tuple[str, str]:
    """Seat two players at t1 and wait for the first decision; (actor, other)."""
    for seat, player in enumerate(PLAYERS[:2]):
        await host.submit(
            "t1", Command("join", player, seat=seat, amount=100, request_id=f"j{seat}")
        )
    for _ in range(200):
        table = await host.view("t1")
        assert table is not None
        if table.hand_id is not None and not table.effects:
            view = table.public_view()["hand"]
            actor = table.seats()[view["actor_seat"]].player
            return actor, next(p for p in PLAYERS[:2] if p != actor)
        await asyncio.sleep(0.01)
    raise AssertionError("no hand started")


async def test_a_command_whose_caller_gave_up_is_not_applied(tmp_path: Path) -> None:
    async with local_host(tmp_path, PLAYERS[:2]) as (_, _, host):
        actor, _ = await _two_seated(host)
        started = await host.view("t1")
        assert started is not None
        hand_id = started.hand_id
        # The command is queued, then its caller is cancelled before the table reads it.
        waiting = asyncio.create_task(host.submit("t1", Command("act", actor, action="fold")))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # A command after it is applied, so the cancelled one was read and skipped.
        await host.submit("t1", Command("act", actor, action="check_call"))
        table = await host.view("t1")
        assert table is not None
        # A fold would have ended the heads-up hand; the call passed the turn instead.
        assert table.hand_id == hand_id
        view = table.public_view()["hand"]
        assert table.seats()[view["actor_seat"]].player != actor


async def test_a_join_waiting_for_its_buy_in_is_answered_when_the_host_stops(
    tmp_path: Path,
) -> None:
    async with local_host(tmp_path, PLAYERS[:1]) as (_, games, host):
        # Hold the store's writes so the buy-in cannot be answered.
        gate = asyncio.Event()
        apply = games.apply

        async def held(*args: object, **kwargs: object) -> dict[str, str]:
            await gate.wait()
            return await apply(*args, **kwargs)  # type: ignore[arg-type]

        games.apply = held  # type: ignore[method-assign]
        joining = asyncio.create_task(
            host.submit("t1", Command("join", PLAYERS[0], seat=0, amount=100, request_id="a"))
        )
        await asyncio.sleep(0.05)
        assert not joining.done()
        await host.crash()
        async with asyncio.timeout(2):
            with pytest.raises(TableUnavailable):
                await joining
        with pytest.raises(TableUnavailable):
            await host.submit("t1", Command("sit_out", PLAYERS[0]))
        gate.set()


async def test_event_effects_of_many_tables_share_a_transaction(tmp_path: Path) -> None:
    async with local_host(tmp_path, PLAYERS[:4], tables=("t2",)) as (store, _, host):
        for table_id, players in (("t1", PLAYERS[:2]), ("t2", PLAYERS[2:4])):
            for seat, player in enumerate(players):
                await host.submit(
                    table_id,
                    Command("join", player, seat=seat, amount=100, request_id=f"{table_id}{seat}"),
                )
        rng = random.Random(3)
        await asyncio.gather(play(host, "t1", rng, 30), play(host, "t2", rng, 30))
        for _ in range(200):
            views = [await host.view(t) for t in ("t1", "t2")]
            if all(v is not None and not v.effects for v in views):
                break
            await asyncio.sleep(0.01)
        async with store.transaction(read_only=True) as session:
            rows = await fetch_unpublished(session, 1_000_000)
        events = [decode(r.payload) for r in rows]
        acted = [e for e in events if e.type == "poker.action"]
        assert len(acted) >= 60
        # Each engine step once, per table in order, though tables shared transactions.
        for table_id in ("t1", "t2"):
            mine = [e.payload for e in acted if e.payload.table_id == table_id]
            keys = [(p.hand_id, p.sequence) for p in mine]
            assert len(keys) == len(set(keys))
            by_hand: dict[str, list[int]] = {}
            for hand_id, sequence in keys:
                by_hand.setdefault(hand_id, []).append(sequence)
            assert all(seqs == sorted(seqs) for seqs in by_hand.values())
        assert 0 < host.effects.transactions < len(acted)
