"""Command forwarding between "gateway processes" on one real Redis and one SQLite store:
each process has its own store and cache clients, its own host and its own relay, as
separate processes would. A command sent to a process that does not deal the table is
applied once by the owner, refusals come back as the same exception, a dead owner is
``TableUnavailable`` within the deadline, and malformed, late, duplicate or expired
frames are dropped."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgpack  # type: ignore[import-untyped]
import pytest
import redis.asyncio as aioredis
import uvicorn
import websockets
from fastapi import FastAPI

from ludex.adapters.chain.anvil import free_port
from ludex.adapters.kv import create_key_value
from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.outbox import fetch_unpublished
from ludex.composition import open_container
from ludex.config import Settings, load_settings
from ludex.errors import IllegalAction, PokerError
from ludex.events import decode
from ludex.gameserver.host import Command, TableHost, TableUnavailable
from ludex.gameserver.lobby import Lobby, NotFound
from ludex.gameserver.relay import (
    LocalRelay,
    RedisRelay,
    Reply,
    Request,
    create_relay,
    decode_reply,
    decode_request,
    raised,
)
from ludex.gameserver.store import GameStore, escrow_account, player_account
from ludex.gameserver.table import Table, TableError
from ludex.gateway.app import create_app
from ludex.realtime.ws import error_code
from tests.conftest import service_url
from tests.contract.sql_backends import started_store
from tests.gameserver.test_host import PLAYERS, config
from tests.gateway.test_auth_routes import ADMIN_TOKEN, bearer, sign_in
from tests.gateway.test_tables_routes import TABLE, admin_token

BOUND = 20.0  # seconds: a liveness bound for waits, never a speed claim


@dataclass
class Process:
    """One gateway process: its own store and cache clients, host, relay and lobby."""

    store: SqlStore
    host: TableHost
    relay: RedisRelay
    lobby: Lobby


Spawn = Callable[..., Awaitable[Process]]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[tuple[str, Spawn]]:
    """``spawn(start_host=True, timeout=...)`` makes a process; everything closes after.
    Yields the namespace (for raw frames) and ``spawn``."""
    url = service_url("redis")
    db = f"sqlite:///{tmp_path}/g.db"
    namespace = f"t-relay-{secrets.token_hex(6)}:"
    async with AsyncExitStack() as stack:
        first = await stack.enter_async_context(started_store(db))
        games = GameStore(first)
        for k, player in enumerate(PLAYERS):
            await games.credit("CHIPS", player, 500, f"credit-{k}")

        async def spawn(*, start_host: bool = True, timeout: float = 3.0) -> Process:
            store = await stack.enter_async_context(started_store(db, migrate=False))
            kv = create_key_value(url, namespace=namespace)
            await kv.start()
            stack.push_async_callback(kv.close)
            host = TableHost(GameStore(store), kv, None, lease_seconds=0.6, scan_seconds=3600)
            relay = RedisRelay(host, url, namespace=f"{namespace}rt:", timeout=timeout)
            await relay.start()
            stack.push_async_callback(relay.close)
            stack.push_async_callback(host.close)
            if start_host:
                await host.start()
            return Process(store, host, relay, Lobby(host.games, host, relay))

        yield namespace, spawn


async def two_owners(spawn: Spawn, **options: Any) -> tuple[Process, Process]:
    """A deals t1, B deals t2 (each scans once, at start, and t2 opens after A's scan)."""
    a = await spawn(**options)
    await a.host.games.create_table(config(table_id="t1"))
    await a.host.scan()
    await a.host.games.create_table(config(table_id="t2"))
    b = await spawn(**options)
    assert a.host.owns("t1")
    assert not a.host.owns("t2")
    assert b.host.owns("t2")
    assert not b.host.owns("t1")
    return a, b


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def live(process: Process, table_id: str) -> Table:
    table = await process.host.view(table_id)
    assert table is not None
    return table


async def seat_two_and_deal(via: Process, owner: Process, table_id: str = "t1") -> Table:
    for seat, player in enumerate(PLAYERS[:2]):
        joined = await via.lobby.command(
            table_id, Command("join", player, seat=seat, amount=200, request_id=f"r{seat}")
        )
        assert joined == {"seat": seat, "stack": 200, "status": "seated"}

    async def dealt() -> bool:
        table = await live(owner, table_id)
        hand = table.public_view()["hand"]
        return hand is not None and hand["actor_seat"] is not None and not table.effects

    await until(dealt, "a hand to be dealt")
    return await live(owner, table_id)


async def actions(owner: Process, table_id: str, hand_id: str) -> list[tuple[int | None, str]]:
    """The hand's ``poker.action`` events (seat, action) once the owner wrote them all:
    each applied command is there once."""

    async def settled() -> bool:
        return not (await live(owner, table_id)).effects

    await until(settled, "the effects to be carried out")
    async with owner.store.transaction(read_only=True) as session:
        rows = await fetch_unpublished(session, 100_000)
    events = [decode(row.payload) for row in rows]
    return [
        (e.payload.seat, e.payload.action)
        for e in events
        if e.type == "poker.action" and e.payload.hand_id == hand_id
    ]


def actor_of(table: Table) -> tuple[str, str]:
    """(the player whose turn it is, the other one)."""
    seat = table.public_view()["hand"]["actor_seat"]
    actor = table.seats()[seat].player
    return actor, next(p for p in PLAYERS[:2] if p != actor)


async def test_commands_sent_to_the_non_owner_are_applied_once_by_the_owner(
    cluster: tuple[str, Spawn],
) -> None:
    _, spawn = cluster
    a, b = await two_owners(spawn)
    table = await seat_two_and_deal(via=b, owner=a)
    assert a.relay.served == 2
    assert b.relay.served == 0
    balances = await a.host.games.balances(
        [escrow_account("t1"), *(player_account("CHIPS", p) for p in PLAYERS[:2])]
    )
    assert balances == {
        escrow_account("t1"): 400,
        **{player_account("CHIPS", p): 300 for p in PLAYERS[:2]},
    }
    # Each join seated its player once, and the table knows nothing of B.
    assert {n: s.player for n, s in table.seats().items()} == {0: PLAYERS[0], 1: PLAYERS[1]}
    assert not b.host.owns("t1")

    hand_id = table.hand_id
    assert hand_id is not None
    done = await actions(a, "t1", hand_id)
    bets = table.public_view()["hand"]["bets"]
    actor, other = actor_of(table)
    seat = table.seat_of(actor)
    assert await b.lobby.command("t1", Command("act", actor, action="check_call")) == {}
    after = await live(a, "t1")
    assert after.public_view()["hand"]["bets"] == [max(bets)] * 2
    assert await actions(a, "t1", hand_id) == [*done, (seat, "call")]  # once
    assert actor_of(after)[0] == other
    assert a.relay.served == 3
    # The other way round: A forwards to B's table; B's own commands stay local.
    joined = await a.lobby.command(
        "t2", Command("join", PLAYERS[2], seat=3, amount=100, request_id="x")
    )
    assert joined == {"seat": 3, "stack": 100, "status": "seated"}
    assert b.relay.served == 1
    await b.lobby.command("t2", Command("sit_out", PLAYERS[2]))
    assert b.relay.served == 1  # the fast path: no hop
    assert (await live(b, "t2")).seats()[3].sitting_out
    assert a.relay.late == b.relay.late == a.relay.malformed == b.relay.malformed == 0
    with pytest.raises(NotFound):
        await b.lobby.command("nope", Command("leave", PLAYERS[0]))


async def test_a_forwarded_refusal_is_the_same_error_and_changes_nothing(
    cluster: tuple[str, Spawn],
) -> None:
    _, spawn = cluster
    a, b = await two_owners(spawn)
    table = await seat_two_and_deal(via=a, owner=a)
    before = table.to_bytes()
    actor, other = actor_of(table)
    refusals = [
        Command("act", other, action="check_call"),  # not your turn
        Command("act", actor, action="bet_raise", amount=10_000),
        Command("act", actor, action="shove"),
        Command("act", actor, action="call", amount=3),
        Command("join", PLAYERS[2], seat=0, amount=100, request_id="y"),  # seat taken
        Command("join", PLAYERS[2], seat=2, amount=100_000, request_id="z"),  # over max
        Command("sit_in", PLAYERS[3]),  # no seat
    ]
    for command in refusals:
        with pytest.raises(PokerError) as here:
            await a.lobby.command("t1", command)
        with pytest.raises(PokerError) as there:
            await b.lobby.command("t1", command)
        assert isinstance(here.value, TableError | IllegalAction)
        assert type(there.value) is type(here.value)
        assert error_code(there.value) == error_code(here.value)
        assert str(there.value) == str(here.value)
    assert a.relay.served == len(refusals)
    assert (await live(a, "t1")).to_bytes() == before
    # A command the wire cannot carry is refused at once by the requester.
    started = time.monotonic()
    with pytest.raises(TableError, match="refused"):
        await b.lobby.command("t1", Command("act", actor, action="x" * 100))
    assert time.monotonic() - started < 1.0
    assert a.relay.served == len(refusals)


async def test_a_dead_owner_is_unavailable_within_the_deadline_then_the_new_owner_answers(
    cluster: tuple[str, Spawn],
) -> None:
    _, spawn = cluster
    a, b = await two_owners(spawn, timeout=1.0)
    gateway = await spawn(start_host=False, timeout=1.0)  # deals nothing, forwards all
    table = await seat_two_and_deal(via=gateway, owner=a)
    actor, _ = actor_of(table)
    await a.host.crash()  # nothing released: the lease runs out on its own
    started = time.monotonic()
    with pytest.raises(TableUnavailable, match="within 1 s"):
        await gateway.lobby.command("t1", Command("act", actor, action="check_call"))
    waited = time.monotonic() - started
    assert 0.9 <= waited < 1.5
    await until(lambda: _took(b, "t1"), "B to take t1 over")
    assert (await live(b, "t1")).hand_id == table.hand_id  # the same hand, resumed
    assert await gateway.lobby.command("t1", Command("act", actor, action="check_call")) == {}
    assert b.relay.served == 1
    assert actor_of(await live(b, "t1"))[0] != actor


async def _took(process: Process, table_id: str) -> bool:
    await process.host.scan()
    return process.host.owns(table_id)


class FakeOwner:
    """A raw subscriber on the request channel standing in for an owner's process: it
    answers what ``answer`` returns (a list of replies, each after ``delay`` seconds)."""

    def __init__(self, channel: str, answer: Callable[[Request], list[Reply]], delay: float):
        self.client = aioredis.Redis.from_url(service_url("redis"))
        self.channel = channel
        self.answer = answer
        self.delay = delay
        self.seen: list[Request] = []
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FakeOwner:
        pubsub = self.client.pubsub()
        await pubsub.subscribe(self.channel)
        assert (await pubsub.get_message(timeout=5))["type"] == "subscribe"

        async def run() -> None:
            while True:
                message = await pubsub.get_message(timeout=1)
                if message is None or message["type"] != "message":
                    continue
                request = decode_request(message["data"])
                self.seen.append(request)
                for reply in self.answer(request):
                    await asyncio.sleep(self.delay)
                    await self.client.publish(request.reply_to, msgpack_reply(reply))

        self.task = asyncio.create_task(run())
        self._pubsub = pubsub
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        await self.client.aclose()


def msgpack_reply(reply: Reply) -> bytes:
    fields = {"id": reply.id, "ok": reply.ok}
    if reply.ok:
        fields["result"] = reply.result
    else:
        fields["error"], fields["message"] = reply.error, reply.message
    return bytes(msgpack.packb(fields))


async def test_a_late_or_second_reply_is_dropped(cluster: tuple[str, Spawn]) -> None:
    _, spawn = cluster
    a, _ = await two_owners(spawn, timeout=0.5)
    gateway = await spawn(start_host=False, timeout=0.5)
    await a.host.crash()  # nobody real answers for t1 now; the fake owner does
    command = Command("sit_out", PLAYERS[0])

    def twice(request: Request) -> list[Reply]:
        return [Reply(id=request.id, ok=True, result={"n": n}) for n in (1, 2)]

    async with FakeOwner(gateway.relay.request_channel, twice, delay=0.05):
        assert await gateway.lobby.command("t1", command) == {"n": 1}
        await until(lambda: _is(gateway.relay.late, 1), "the second reply")
    async with FakeOwner(gateway.relay.request_channel, twice, delay=0.7):
        with pytest.raises(TableUnavailable):
            await gateway.lobby.command("t1", command)
        await until(lambda: _is(gateway.relay.late, 3), "the late replies")
    refusal = Reply(id="0", ok=False, error="IllegalAction", message="it is seat 1's turn")

    def refuse(request: Request) -> list[Reply]:
        return [Reply(id=request.id, ok=False, error=refusal.error, message=refusal.message)]

    async with FakeOwner(gateway.relay.request_channel, refuse, delay=0):
        with pytest.raises(IllegalAction, match="seat 1's turn"):
            await gateway.lobby.command("t1", command)
    assert gateway.relay.late == 3
    assert gateway.relay.malformed == 0
    assert not gateway.relay._pending


async def _is(value: int, expected: int) -> bool:
    return value == expected


async def test_malformed_expired_and_duplicate_requests_are_not_run(
    cluster: tuple[str, Spawn],
) -> None:
    _, spawn = cluster
    a, b = await two_owners(spawn)
    table = await seat_two_and_deal(via=a, owner=a)
    actor, _ = actor_of(table)
    before = table.to_bytes()  # (view gives the live table)
    hand = table.hand_id
    assert hand is not None
    done = await actions(a, "t1", hand)
    raw = aioredis.Redis.from_url(service_url("redis"))
    replies = raw.pubsub()
    reply_to = f"{a.relay.reply_prefix}spy"
    await replies.subscribe(reply_to)
    assert (await replies.get_message(timeout=5))["type"] == "subscribe"
    good = {
        "id": "abc1",
        "reply_to": reply_to,
        "table": "t1",
        "deadline": time.time() + 5,
        "kind": "act",
        "player": actor,
        "action": "check_call",
    }
    malformed: list[bytes] = [
        b"\xc1",  # not msgpack
        b"not msgpack at all",
        bytes(msgpack.packb([1, 2, 3])),
        bytes(msgpack.packb({**good, "id": "ABC!"})),
        bytes(msgpack.packb({**good, "kind": "shove_all"})),
        bytes(msgpack.packb({**good, "deadline": float("nan")})),
        bytes(msgpack.packb({**good, "deadline": "soon"})),
        bytes(msgpack.packb({**good, "table": "t1/../x"})),
        bytes(msgpack.packb({**good, "player": "p" * 43})),
        bytes(msgpack.packb({**good, "reply_to": "ludex:rt:fanout"})),  # not a reply channel
        bytes(msgpack.packb({**good, "extra": 1})),
        bytes(msgpack.packb({k: v for k, v in good.items() if k != "deadline"})),
    ]
    for frame in malformed:
        await raw.publish(a.relay.request_channel, frame)
    expired = {**good, "id": "abc2", "deadline": time.time() - 1}
    await raw.publish(a.relay.request_channel, bytes(msgpack.packb(expired)))
    await until(lambda: _is(a.relay.expired, 1), "the expired request")
    assert a.relay.malformed == b.relay.malformed == len(malformed)
    assert (await live(a, "t1")).to_bytes() == before
    # The same request twice runs once: one answer, one action.
    for _ in range(2):
        await raw.publish(a.relay.request_channel, bytes(msgpack.packb(good)))
    message = await replies.get_message(timeout=5)
    while message is not None and message["type"] != "message":
        message = await replies.get_message(timeout=5)
    assert message is not None
    assert decode_reply(message["data"]) == Reply(id="abc1", ok=True, result={})
    await until(lambda: _is(a.relay.duplicates, 1), "the duplicate")
    assert await replies.get_message(timeout=0.3) is None
    assert await actions(a, "t1", hand) == [*done, (table.seat_of(actor), "call")]
    # Replies that are malformed are dropped too, and the relays still work.
    for frame in [b"\xc1", bytes(msgpack.packb({"id": "1", "ok": True})), b""]:
        await raw.publish(b.relay.reply_channel, frame)
    await until(lambda: _is(b.relay.malformed, len(malformed) + 3), "the bad replies")
    assert await b.lobby.command("t1", Command("sit_out", PLAYERS[0])) == {}
    await replies.aclose()  # type: ignore[no-untyped-call]
    await raw.aclose()


def test_replies_are_validated_and_mapped_to_the_same_exception() -> None:
    for bad in [
        {"id": "1", "ok": True},  # no result
        {"id": "1", "ok": False, "message": "x"},  # no error
        {"id": "1", "ok": True, "result": {}, "error": "TableError"},
        {"id": "1", "ok": False, "error": "Not A Name", "message": "x"},
        {"id": "1", "ok": "yes", "result": {}},
    ]:
        with pytest.raises(ValueError, match="malformed"):
            decode_reply(bytes(msgpack.packb(bad)))
    reply = decode_reply(
        bytes(msgpack.packb({"id": "1", "ok": False, "error": "TableUnavailable"}))
    )
    assert isinstance(raised(reply), TableUnavailable)
    unknown = Reply(id="1", ok=False, error="SomethingNew", message="boom")
    assert error_code(raised(unknown)) == "backend_error"


async def test_memory_means_one_process_and_nothing_to_forward(tmp_path: Path) -> None:
    async with started_store(f"sqlite:///{tmp_path}/g.db") as store:
        games = GameStore(store)
        await games.create_table(config(table_id="t1"))
        kv = create_key_value("memory://")
        await kv.start()
        host = TableHost(games, kv, None)  # not started: deals nothing
        relay = create_relay("memory://", host)
        assert isinstance(relay, LocalRelay)
        await relay.start()
        with pytest.raises(TableUnavailable):
            await Lobby(games, host, relay).command("t1", Command("leave", PLAYERS[0]))
        await relay.close()
        await kv.close()
    # A Redis relay that is not started forwards nothing either, at once.
    idle = create_relay(service_url("redis"), host)
    assert isinstance(idle, RedisRelay)
    with pytest.raises(TableUnavailable, match="cannot reach"):
        await idle.forward("t1", Command("leave", PLAYERS[0]))


# -- through the real edges: two gateway apps, a player on the one that does not deal --


async def test_a_player_on_the_other_gateway_plays_a_hand_over_rest_and_the_stream(
    tmp_path: Path,
) -> None:
    """App A deals the table; app B (no host started, as with the game server off)
    serves both players: one over REST, one over the WebSocket stream."""
    namespace = f"trelay{secrets.token_hex(4)}"
    common = {
        "store_url": f"sqlite:///{tmp_path}/ludex.db",
        "bus_url": "memory://",
        "cache_url": service_url("redis"),
        "chain_url": service_url("anvil"),
        "namespace": namespace,
        "admin_token": ADMIN_TOKEN,
        "auth_rate_capacity": 10_000,
        "auth_rate_per_second": 1000.0,
        "api_rate_capacity": 10_000,
        "stream_rate_capacity": 10_000,
        "gameserver_lease_seconds": 1.0,
    }

    def settings(name: str) -> Settings:
        (tmp_path / name).mkdir()
        return load_settings(
            analytics_url=f"chdb://{tmp_path}/olap", data_dir=str(tmp_path / name), **common
        )

    async with AsyncExitStack() as stack:
        apps = []
        for name in ("a", "b"):
            container = await stack.enter_async_context(open_container(settings(name)))
            app = create_app(container)
            await app.state.realtime.start()
            stack.push_async_callback(app.state.realtime.close)
            await app.state.relay.start()
            stack.push_async_callback(app.state.relay.close)
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
            http = await stack.enter_async_context(
                httpx.AsyncClient(transport=transport, base_url="http://test")
            )
            apps.append((container, app, http))
        (_, app_a, http_a), (container_b, app_b, http_b) = apps
        await app_a.state.host.start()
        stack.push_async_callback(app_a.state.host.close)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app_b, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
        )
        serving = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)

        async def stop_server() -> None:
            server.should_exit = True
            await serving

        stack.push_async_callback(stop_server)

        admin = await admin_token(http_a)
        created = await http_a.post(
            "/v1/tables", json={"table_id": "e2e", **TABLE}, headers=bearer(admin)
        )
        assert created.status_code == 201, created.text
        await until(lambda: _owns(app_a, "e2e"), "A to deal the table")
        players = [await sign_in(http_b, container_b) for _ in range(2)]
        for k, (address, _) in enumerate(players):
            credited = await http_a.post(
                f"/v1/admin/players/{address}/credit",
                json={"amount": 500, "transfer_id": f"c-{k}"},
                headers=bearer(admin),
            )
            assert credited.status_code == 200, credited.text
        tokens = {address.lower(): t["access_token"] for address, t in players}
        rest_player, stream_player = list(tokens)

        joined = await http_b.post(
            "/v1/tables/e2e/join",
            json={"seat": 0, "buy_in": 200, "request_id": "j0"},
            headers=bearer(tokens[rest_player]),
        )
        assert joined.status_code == 200, joined.text
        assert joined.json() == {"seat": 0, "stack": 200, "status": "seated"}
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/stream") as ws:
            await ws.send(json.dumps({"op": "hello", "token": tokens[stream_player]}))
            assert json.loads(await ws.recv())["type"] == "welcome"
            sent = {"op": "join", "table": "e2e", "seat": 1, "buy_in": 200, "request_id": "j1"}
            await ws.send(json.dumps({**sent, "ref": "join"}))
            reply = await _reply(ws, "join")
            assert reply["type"] == "ack", reply
            assert reply["data"]["result"] == {"seat": 1, "stack": 200, "status": "seated"}

            async def dealt() -> bool:
                hand = (await http_b.get("/v1/tables/e2e")).json()["hand"]
                return hand is not None and hand["actor_seat"] is not None

            await until(dealt, "the hand to be dealt")
            # A refusal over either edge: the same code as at the owner.
            view = (await http_b.get("/v1/tables/e2e")).json()
            waiting = rest_player if view["hand"]["actor_seat"] == 1 else stream_player
            if waiting == rest_player:
                refused = await http_b.post(
                    "/v1/tables/e2e/actions",
                    json={"action": "check_call"},
                    headers=bearer(tokens[rest_player]),
                )
                assert refused.status_code == 409
                assert refused.json()["error"]["code"] == "illegal_action"
            else:
                await ws.send(json.dumps({"op": "act", "table": "e2e", "action": "check_call"}))
                reply = await _reply(ws, None)
                assert reply["data"]["code"] == "illegal_action", reply
            for turn in range(1, 50):  # check or call down: the hand ends
                view = (await http_b.get("/v1/tables/e2e")).json()
                if view["hands_played"] == 1:
                    break
                if view["hand"] is None or view["hand"]["actor_seat"] is None:
                    await asyncio.sleep(0.01)
                    continue
                if view["hand"]["actor_seat"] == 0:
                    acted = await http_b.post(
                        "/v1/tables/e2e/actions",
                        json={"action": "check_call", "hand_id": view["hand"]["hand_id"]},
                        headers=bearer(tokens[rest_player]),
                    )
                    assert acted.status_code == 200, acted.text
                else:
                    await ws.send(
                        json.dumps(
                            {"op": "act", "table": "e2e", "action": "check_call", "ref": turn}
                        )
                    )
                    reply = await _reply(ws, turn)
                    assert reply["type"] == "ack", reply
        final = (await http_b.get("/v1/tables/e2e")).json()
        assert final["hands_played"] == 1
        assert sum(s["stack"] for s in final["seats"].values()) == 400
        assert not app_b.state.host.owns("e2e")
        assert app_a.state.relay.served >= 4
        assert app_b.state.relay.served == 0


async def _owns(app: FastAPI, table_id: str) -> bool:
    return bool(app.state.host.owns(table_id))


async def _reply(ws: Any, ref: object) -> dict[str, Any]:
    """The next command reply with ``ref`` (channel frames in between are skipped)."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), BOUND))
        if frame["type"] in {"ack", "error"} and frame["data"].get("ref") == ref:
            return dict(frame)
