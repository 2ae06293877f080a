"""The GraphQL edge through the real app (embedded backends, the table host dealing):
queries, mutations and their error codes, RBAC, rate limits, operation bounds, and
subscriptions over graphql-transport-ws on a real uvicorn server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI

from ludex.adapters.chain.anvil import free_port
from ludex.composition import Container, open_container
from ludex.gateway.app import create_app
from ludex.gateway.graphql import create_graphql_router
from ludex.gateway.server import GatewayServer
from tests.conftest import service_url
from tests.gateway.test_app import _settings
from tests.gateway.test_auth_routes import bearer, sign_in

ADMIN_TOKEN = "an-admin-token-for-graphql-tests"

TABLE_VIEW = """
query View($id: String!) {
  table(id: $id) {
    tableId status handsPlayed buttonSeat
    settings { smallBlind bigBlind minBuyIn maxBuyIn currency variant }
    seats { seat player stack status sittingOut }
    hand { handId number seats stacks pot board actorSeat legal { call minTo maxTo } }
  }
}
"""


def with_graphql(app: FastAPI, container: Container, **options: Any) -> FastAPI:
    """Wire the router as the gateway does (app.state holds the shared parts), ahead of
    any /graphql route the app has already, so the options given here are the ones used."""
    router = create_graphql_router(
        app.state.lobby,
        app.state.auth,
        app.state.hub,
        container.kv,
        container.settings,
        **options,
    )
    app.include_router(router)
    app.router.routes.insert(0, app.router.routes.pop())
    return app


def settings_for(tmp_path: Path, **extra: Any) -> Any:
    defaults: dict[str, Any] = {
        "admin_token": ADMIN_TOKEN,
        "auth_rate_capacity": 10_000,
        "auth_rate_per_second": 1000.0,
        "api_rate_capacity": 10_000,
        "api_rate_per_second": 1000.0,
        "gameserver_lease_seconds": 2.0,
    }
    return _settings(tmp_path, service_url("anvil"), **{**defaults, **extra})


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[Container, FastAPI]]:
    async with open_container(settings_for(tmp_path)) as container:
        app = with_graphql(create_app(container), container)
        await app.state.realtime.start()
        await app.state.host.start()
        try:
            yield container, app
        finally:
            await app.state.host.close()
            await app.state.realtime.close()


def client_for(app: FastAPI, host: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
async def client(gateway: tuple[Container, FastAPI]) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(gateway[1]) as http:
        yield http


async def gql(
    http: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    answer = await http.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body.get("errors") or []]


async def admin_token(http: httpx.AsyncClient) -> str:
    answer = await http.post("/v1/auth/admin", json={"token": ADMIN_TOKEN})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


CREATE = """
mutation Create($input: CreateTableInput!) {
  createTable(input: $input) { tableId status settings { bigBlind minBuyIn } seats { seat } }
}
"""

JOIN = """
mutation Join($t: String!, $seat: Int!, $buyIn: BigInt!, $r: String!) {
  join(tableId: $t, seat: $seat, buyIn: $buyIn, requestId: $r) { tableId seat stack status }
}
"""


async def open_table(http: httpx.AsyncClient, admin: str, table_id: str) -> dict[str, Any]:
    body = await gql(
        http,
        CREATE,
        {"input": {"tableId": table_id, "name": "gql", "nextHandSeconds": 0.2}},
        bearer(admin),
    )
    assert "errors" not in body, body
    return dict(body["data"]["createTable"])


async def fund(http: httpx.AsyncClient, admin: str, address: str, amount: int) -> None:
    answer = await http.post(
        f"/v1/admin/players/{address}/credit",
        json={"amount": amount, "transfer_id": f"fund-{address}"},
        headers=bearer(admin),
    )
    assert answer.status_code == 200, answer.text


async def until(check: Callable[[], Awaitable[Any]], what: str, tries: int = 200) -> Any:
    """Poll ``check`` until it answers something truthy (the host deals in the background)."""
    for _ in range(tries):
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.05)
    raise AssertionError(f"never saw {what}")


async def join(
    http: httpx.AsyncClient, token: str, table_id: str, seat: int, buy_in: int
) -> dict[str, Any]:
    """Join, retrying while no process deals the new table yet (table_unavailable)."""

    async def attempt() -> dict[str, Any] | None:
        body = await gql(
            http,
            JOIN,
            {"t": table_id, "seat": seat, "buyIn": buy_in, "r": f"r{seat}"},
            bearer(token),
        )
        if codes(body) == ["table_unavailable"]:
            return None
        assert "errors" not in body, body
        return dict(body["data"]["join"])

    return dict(await until(attempt, f"a seat at {table_id}"))


async def test_queries_and_mutations_play_a_hand(
    client: httpx.AsyncClient, gateway: tuple[Container, FastAPI]
) -> None:
    container, _ = gateway
    admin = await admin_token(client)
    created = await open_table(client, admin, "gql-1")
    assert created == {
        "tableId": "gql-1",
        "status": "open",
        "settings": {"bigBlind": 2, "minBuyIn": 40},
        "seats": [],
    }
    lobby = await gql(client, "{ tables { tableId name variant seatCount seated handInPlay } }")
    assert lobby["data"]["tables"] == [
        {
            "tableId": "gql-1",
            "name": "gql",
            "variant": "NT",
            "seatCount": 6,
            "seated": 0,
            "handInPlay": False,
        }
    ]

    alice, alice_tokens = await sign_in(client, container)
    bob, bob_tokens = await sign_in(client, container)
    a, b = alice_tokens["access_token"], bob_tokens["access_token"]
    for address in (alice, bob):
        await fund(client, admin, address, 500)

    me = await gql(client, "{ me { subject via roles scopes } }", headers=bearer(a))
    assert me["data"]["me"] == {"subject": alice, "via": "jwt", "roles": ["player"], "scopes": []}

    seated = await join(client, a, "gql-1", 0, 100)
    assert seated == {"tableId": "gql-1", "seat": 0, "stack": 100, "status": "seated"}
    balance = await gql(client, "{ myBalance { player currency balance } }", headers=bearer(a))
    assert balance["data"]["myBalance"] == {
        "player": alice.lower(),
        "currency": "CHIPS",
        "balance": 400,
    }
    cards = await gql(client, '{ myCards(tableId: "gql-1") { cards } }', headers=bearer(a))
    assert cards["data"]["myCards"] is None  # alone: no hand dealt

    await join(client, b, "gql-1", 1, 100)

    async def hand_in_play() -> dict[str, Any] | None:
        view = (await gql(client, TABLE_VIEW, {"id": "gql-1"}))["data"]["table"]
        return view if view["hand"] is not None and view["hand"]["actorSeat"] is not None else None

    view = await until(hand_in_play, "a hand in play")
    assert [s["seat"] for s in view["seats"]] == [0, 1]
    assert {s["player"] for s in view["seats"]} == {alice.lower(), bob.lower()}
    hand = view["hand"]
    assert sorted(hand["seats"]) == [0, 1]
    assert hand["pot"] == 3  # the blinds
    assert hand["legal"]["call"] >= 0

    mine = await gql(
        client, '{ myCards(tableId: "gql-1") { handId seat cards } }', headers=bearer(a)
    )
    assert mine["data"]["myCards"]["handId"] == hand["handId"]
    assert len(mine["data"]["myCards"]["cards"]) == 2

    actor = a if hand["actorSeat"] == 0 else b
    waiting = b if actor == a else a
    act = """
    mutation Act($t: String!, $action: Action!, $h: String) {
      act(tableId: $t, action: $action, handId: $h) { tableId command }
    }
    """
    refused = await gql(
        client, act, {"t": "gql-1", "action": "FOLD", "h": hand["handId"]}, bearer(waiting)
    )
    assert codes(refused) == ["illegal_action"]
    folded = await gql(
        client, act, {"t": "gql-1", "action": "FOLD", "h": hand["handId"]}, bearer(actor)
    )
    assert folded["data"]["act"] == {"tableId": "gql-1", "command": "act"}

    hands_query = """
    query Hands($t: String!) {
      hands(tableId: $t, limit: 5) {
        handId tableId number rake recordHash phh completedAt deltas { player delta }
      }
    }
    """

    async def finished() -> list[dict[str, Any]]:
        body = await gql(client, hands_query, {"t": "gql-1"}, bearer(a))
        assert "errors" not in body, body
        return list(body["data"]["hands"])

    done = (await until(finished, "the finished hand"))[0]
    assert done["handId"] == hand["handId"]
    assert len(done["recordHash"]) == 64
    assert sum(d["delta"] for d in done["deltas"]) + done["rake"] == 0
    assert {d["player"] for d in done["deltas"]} == {alice.lower(), bob.lower()}
    assert done["phh"].strip()
    one = await gql(
        client,
        "query H($id: String!) { hand(id: $id) { handId number recordHash record } }",
        {"id": done["handId"]},
        bearer(b),
    )
    assert one["data"]["hand"]["recordHash"] == done["recordHash"]
    assert one["data"]["hand"]["record"]["record_hash"] == done["recordHash"]

    left = await gql(
        client, 'mutation { leave(tableId: "gql-1") { tableId command } }', headers=bearer(a)
    )
    assert left["data"]["leave"] == {"tableId": "gql-1", "command": "leave"}


async def test_access_rules_match_rest(
    client: httpx.AsyncClient, gateway: tuple[Container, FastAPI]
) -> None:
    container, app = gateway
    admin = await admin_token(client)
    await open_table(client, admin, "gql-2")
    _, tokens = await sign_in(client, container)
    player = tokens["access_token"]

    anonymous = await gql(client, "{ myBalance { balance } }")
    assert codes(anonymous) == ["unauthorized"]
    assert anonymous["data"] is None
    assert codes(await gql(client, "{ me { subject } }")) == ["unauthorized"]
    # Public fields stay public, but credentials that are sent must be valid.
    assert "errors" not in await gql(client, "{ tables { tableId } }")
    tampered = await gql(client, "{ tables { tableId } }", headers=bearer(player[:-3] + "abc"))
    assert codes(tampered) == ["unauthorized"]

    by_player = await gql(client, CREATE, {"input": {"tableId": "gql-x"}}, bearer(player))
    assert codes(by_player) == ["forbidden"]
    async with client_for(app, host="203.0.113.9") as outside:
        away = await gql(outside, CREATE, {"input": {"tableId": "gql-x"}}, bearer(admin))
        assert codes(away) == ["forbidden"]
    assert codes(await gql(client, "{ myBalance { balance } }", headers=bearer(admin))) == [
        "forbidden"
    ]

    async def api_key(scopes: list[str]) -> dict[str, str]:
        answer = await client.post(
            "/v1/admin/api-keys", json={"name": "k", "scopes": scopes}, headers=bearer(admin)
        )
        assert answer.status_code == 201, answer.text
        return {"X-API-Key": answer.json()["secret"]}

    tables_only = await api_key(["tables:read"])
    hands_only = await api_key(["hands:read"])
    hands_query = '{ hands(tableId: "gql-2") { handId } }'
    listed = await gql(client, "{ tables { tableId } }", headers=tables_only)
    assert listed["data"]["tables"] == [{"tableId": "gql-2"}]
    assert codes(await gql(client, hands_query, headers=tables_only)) == ["forbidden"]
    assert codes(await gql(client, "{ tables { tableId } }", headers=hands_only)) == ["forbidden"]
    assert (await gql(client, hands_query, headers=hands_only))["data"]["hands"] == []
    assert codes(await gql(client, hands_query, headers=bearer(player))) == []
    both = {**hands_only, **bearer(player)}
    assert codes(await gql(client, hands_query, headers=both)) == ["unauthorized"]


async def test_mutation_refusals_carry_the_rest_codes(
    client: httpx.AsyncClient, gateway: tuple[Container, FastAPI]
) -> None:
    container, _ = gateway
    admin = await admin_token(client)
    await open_table(client, admin, "gql-3")
    address, tokens = await sign_in(client, container)
    player = bearer(tokens["access_token"])
    await fund(client, admin, address, 500)

    missing = await gql(client, JOIN, {"t": "nowhere", "seat": 0, "buyIn": 50, "r": "a"}, player)
    assert codes(missing) == ["not_found"]
    assert "nowhere" in missing["errors"][0]["message"]
    malformed = await gql(client, JOIN, {"t": "gql-3", "seat": 0, "buyIn": 50, "r": "a b"}, player)
    assert codes(malformed) == ["invalid_request"]
    bad_id = await gql(client, TABLE_VIEW, {"id": "not a table id"})
    assert codes(bad_id) == ["invalid_request"]

    async def seat_refused() -> list[str] | None:
        body = await gql(client, JOIN, {"t": "gql-3", "seat": 7, "buyIn": 50, "r": "a"}, player)
        return None if codes(body) == ["table_unavailable"] else codes(body)

    assert await until(seat_refused, "the table dealt") == ["table_error"]  # 6 seats: 0..5
    too_big = await gql(client, JOIN, {"t": "gql-3", "seat": 0, "buyIn": 10_000, "r": "a"}, player)
    assert codes(too_big) == ["table_error"]
    assert "buy-in" in too_big["errors"][0]["message"]
    unknown_table = await gql(
        client,
        CREATE,
        {"input": {"tableId": "gql-4", "minBuyIn": 1, "bigBlind": 2}},
        bearer(admin),
    )
    assert codes(unknown_table) == ["table_error"]  # min buy-in below the big blind


async def test_operations_are_bounded(
    client: httpx.AsyncClient, gateway: tuple[Container, FastAPI]
) -> None:
    container, _ = gateway
    deep = '{ table(id: "t") { hand { legal { a { b { c { d { e { f { g } } } } } } } } } }'
    refused = await gql(client, deep)
    assert refused["data"] is None
    assert "invalid_request" in codes(refused)
    assert any("exceeds maximum operation depth of 8" in e["message"] for e in refused["errors"])

    # A valid query of depth 3 passes the default limit and not a limit of 2.
    legal = '{ table(id: "gql-5") { hand { legal { call } } } }'
    assert codes(await gql(client, legal)) == ["not_found"]  # executed: no such table
    shallow = with_graphql(create_app(container), container, max_depth=2)
    async with client_for(shallow) as strict:
        body = await gql(strict, legal)
        assert codes(body) == ["invalid_request"]
        assert "exceeds maximum operation depth of 2" in body["errors"][0]["message"]

    aliases = "{ " + " ".join(f"t{i}: tables {{ tableId }}" for i in range(20)) + " }"
    assert "invalid_request" in codes(await gql(client, aliases))

    huge = json.dumps({"query": "{ tables { tableId } }", "pad": "x" * 70_000})
    too_big = await client.post(
        "/graphql", content=huge, headers={"Content-Type": "application/json"}
    )
    assert too_big.status_code == 413
    assert too_big.json()["error"]["message"].startswith("a GraphQL request is at most")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ tables { tableId } }"}'

    unsized = await client.post(
        "/graphql", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert unsized.status_code == 411


async def test_operations_share_the_rest_token_bucket(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, api_rate_capacity=3, api_rate_per_second=0.01)
    async with open_container(settings) as container:
        app = with_graphql(create_app(container), container)
        async with client_for(app) as http:
            _, tokens = await sign_in(http, container)
            player = bearer(tokens["access_token"])
            seen = [codes(await gql(http, "{ me { subject } }", headers=player)) for _ in range(3)]
            assert seen == [[], [], []]
            limited = await gql(http, "{ myBalance { balance } }", headers=player)
            assert codes(limited) == ["rate_limited"]
            rest = await http.get("/v1/me/balance", headers=player)
            assert rest.status_code == 429  # the same bucket as REST
            # Public fields without credentials are not counted, as on REST.
            assert codes(await gql(http, "{ tables { tableId } }")) == []


# --- subscriptions over a real server ----------------------------------------------------


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Container, FastAPI, str]]:
    port = free_port()
    settings = settings_for(tmp_path, http_port=port, siwe_domain=f"127.0.0.1:{port}")
    async with open_container(settings) as container:
        server = GatewayServer(container)
        with_graphql(server.app, container, balance_poll_seconds=0.05)
        stop = asyncio.Event()
        serving = asyncio.create_task(server.run(stop))
        base = f"127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=f"http://{base}") as http:
            for _ in range(100):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        try:
            yield container, server.app, base
        finally:
            stop.set()
            await serving


class GraphQLWs:
    """The few frames of graphql-transport-ws a client needs, by hand."""

    def __init__(self, socket: websockets.ClientConnection) -> None:
        self.socket = socket

    @classmethod
    async def open(cls, base: str, payload: dict[str, Any]) -> GraphQLWs:
        socket = await websockets.connect(
            f"ws://{base}/graphql", subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
        )
        client = cls(socket)
        await client.send({"type": "connection_init", "payload": payload})
        assert await client.receive() == {"type": "connection_ack"}
        return client

    async def send(self, frame: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(frame))

    async def receive(self) -> dict[str, Any]:
        frame: dict[str, Any] = json.loads(await asyncio.wait_for(self.socket.recv(), 10))
        return frame

    async def subscribe(self, op_id: str, query: str, variables: dict[str, Any]) -> None:
        payload = {"query": query, "variables": variables}
        await self.send({"id": op_id, "type": "subscribe", "payload": payload})

    async def next(self, op_id: str) -> dict[str, Any]:
        """The next ``next`` payload of ``op_id`` (answering pings on the way)."""
        while True:
            frame = await self.receive()
            if frame["type"] == "ping":
                await self.send({"type": "pong"})
                continue
            assert frame.get("id") == op_id, frame
            assert frame["type"] == "next", frame
            payload: dict[str, Any] = frame["payload"]
            return payload


EVENTS = """
subscription Events($t: String!) { tableEvents(tableId: $t) { channel type epoch seq data } }
"""
BALANCE = "subscription { myBalance { player currency balance } }"


async def test_subscriptions_follow_table_events_and_the_balance(
    served: tuple[Container, FastAPI, str],
) -> None:
    container, app, base = served
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        admin = await admin_token(http)
        await open_table(http, admin, "gql-ws")
        address, tokens = await sign_in(http, container)
        token = tokens["access_token"]
        await fund(http, admin, address, 300)

        watcher = await GraphQLWs.open(base, {})  # anonymous spectator
        await watcher.subscribe("e1", EVENTS, {"t": "gql-ws"})
        first = (await watcher.next("e1"))["data"]["tableEvents"]
        assert first["channel"] == "table:gql-ws"
        assert first["type"] == "snapshot"
        assert list(app.state.hub.subscribers("table:gql-ws"))

        player = await GraphQLWs.open(base, {"token": token})
        await player.subscribe("b1", BALANCE, {})
        now = (await player.next("b1"))["data"]["myBalance"]
        assert now == {"player": address.lower(), "currency": "CHIPS", "balance": 300}

        await join(http, token, "gql-ws", 2, 120)
        seen: list[dict[str, Any]] = []
        while not any(e["type"] == "seated" for e in seen):
            seen.append((await watcher.next("e1"))["data"]["tableEvents"])
        reserved = next(e for e in seen if e["type"] == "seat_reserved")
        assert reserved["data"] == {"table_id": "gql-ws", "seat": 2, "player": address.lower()}
        sequence = [e["seq"] for e in seen if e["type"] != "snapshot"]
        assert sequence == sorted(sequence)
        assert len(set(sequence)) == len(sequence)
        assert {e["epoch"] for e in seen} <= {first["epoch"]}

        after = (await player.next("b1"))["data"]["myBalance"]
        assert after["balance"] == 180

        # complete ends the subscription and its hub connection.
        await watcher.send({"id": "e1", "type": "complete"})
        await until(
            lambda: asyncio.sleep(0, not list(app.state.hub.subscribers("table:gql-ws"))),
            "the hub connection closed",
        )
        await watcher.socket.close()
        await player.socket.close()

        # A player's subscription needs a token; a bad one is refused at connection_init.
        anonymous = await GraphQLWs.open(base, {})
        await anonymous.subscribe("b2", BALANCE, {})
        refused = await anonymous.next("b2")
        assert refused["data"] is None
        assert [e["extensions"]["code"] for e in refused["errors"]] == ["unauthorized"]
        assert await anonymous.receive() == {"id": "b2", "type": "complete"}
        await anonymous.subscribe("b3", "subscription { nothingHere }", {})
        invalid = await anonymous.receive()
        assert invalid["type"] == "error"
        assert [e["extensions"]["code"] for e in invalid["payload"]] == ["invalid_request"]
        await anonymous.socket.close()

        socket = await websockets.connect(
            f"ws://{base}/graphql", subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
        )
        await socket.send(json.dumps({"type": "connection_init", "payload": {"token": "bad"}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), 10)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4403
