"""The poker REST routes through the real app (embedded backends, the app's own table
host): public lobby reads, admin-only table creation, joining and acting, hole cards,
hand histories (record, PHH, replay), API-key scopes, the per-caller rate limit, 503
for a table no host deals, the OpenAPI document and the request body limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from ludex.composition import Container, open_container
from ludex.gateway.app import create_app
from ludex.poker import phh
from tests.conftest import service_url
from tests.gateway.test_app import _settings
from tests.gateway.test_auth_routes import ADMIN_TOKEN, bearer, sign_in

# Long turn timers and a long pause between hands: nothing moves unless a test acts.
TABLE = {
    "small_blind": 1,
    "big_blind": 2,
    "min_buy_in": 40,
    "max_buy_in": 200,
    "action_seconds": 600.0,
    "next_hand_seconds": 600.0,
}


@dataclass
class Gateway:
    container: Container
    app: FastAPI
    http: httpx.AsyncClient


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with _gateway(tmp_path, api_rate_capacity=10_000) as opened:
        yield opened


@asynccontextmanager
async def _gateway(tmp_path: Path, **extra: Any) -> AsyncIterator[Gateway]:
    """An app with its table host and realtime hub started, as the server starts them
    (ASGITransport runs no lifespan of its own)."""
    settings = _settings(
        tmp_path,
        service_url("anvil"),
        admin_token=ADMIN_TOKEN,
        auth_rate_capacity=10_000,
        auth_rate_per_second=1000.0,
        gameserver_lease_seconds=1.0,
        **extra,
    )
    async with open_container(settings) as container:
        app = create_app(container)
        await app.state.realtime.start()
        await app.state.host.start()
        try:
            transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                yield Gateway(container, app, http)
        finally:
            await app.state.host.close()
            await app.state.realtime.close()


async def admin_token(http: httpx.AsyncClient) -> str:
    answer = await http.post("/v1/auth/admin", json={"token": ADMIN_TOKEN})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def open_table(gw: Gateway, admin: str, table_id: str, **extra: Any) -> dict[str, Any]:
    answer = await gw.http.post(
        "/v1/tables", json={"table_id": table_id, **TABLE, **extra}, headers=bearer(admin)
    )
    assert answer.status_code == 201, answer.text
    host = gw.app.state.host
    for _ in range(500):  # the host's scan takes the new table (woken by the create)
        if host.owns(table_id):
            break
        await asyncio.sleep(0.01)
    assert host.owns(table_id)
    return dict(answer.json())


async def api_key(http: httpx.AsyncClient, admin: str, scopes: list[str]) -> str:
    created = await http.post(
        "/v1/admin/api-keys", json={"name": "test", "scopes": scopes}, headers=bearer(admin)
    )
    assert created.status_code == 201, created.text
    return str(created.json()["secret"])


async def view(http: httpx.AsyncClient, table_id: str) -> dict[str, Any]:
    answer = await http.get(f"/v1/tables/{table_id}")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


async def wait_for(http: httpx.AsyncClient, table_id: str, ready: Any) -> dict[str, Any]:
    for _ in range(500):
        current = await view(http, table_id)
        if ready(current):
            return current
        await asyncio.sleep(0.01)
    raise AssertionError(f"table {table_id} never reached the expected state: {current}")


def assert_error(answer: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert set(error) == {"code", "message", "request_id"}, error
    assert error["code"] == code
    assert error["message"]
    assert error["request_id"] == answer.headers["x-request-id"]
    return dict(error)


# -- public reads ----------------------------------------------------------------------


async def test_lobby_and_table_views_are_public(gateway: Gateway) -> None:
    http = gateway.http
    listed = await http.get("/v1/tables")
    assert listed.status_code == 200
    assert listed.json() == []

    await open_table(gateway, await admin_token(http), "pub-1", name="Public one")
    listed = await http.get("/v1/tables")  # no credentials
    assert listed.status_code == 200
    (row,) = listed.json()
    assert row["table_id"] == "pub-1"
    assert row["name"] == "Public one"
    assert (row["seated"], row["hand_in_play"], row["hands_played"]) == (0, False, 0)

    one = await view(http, "pub-1")
    assert one["table_id"] == "pub-1"
    assert one["status"] == "open"
    assert one["config"]["big_blind"] == 2
    assert one["seats"] == {}
    assert one["hand"] is None

    missing = await http.get("/v1/tables/no-such-table")
    assert "no-such-table" in assert_error(missing, 404, "not_found")["message"]
    for bad in ("x" * 33, "bad!id", "sp%20ace"):
        assert_error(await http.get(f"/v1/tables/{bad}"), 422, "invalid_request")


# -- creating tables -------------------------------------------------------------------


async def test_only_admins_open_tables(gateway: Gateway) -> None:
    http = gateway.http
    body = {"table_id": "adm-1", **TABLE}
    assert_error(await http.post("/v1/tables", json=body), 401, "unauthorized")
    _, player = await sign_in(http, gateway.container)
    assert_error(
        await http.post("/v1/tables", json=body, headers=bearer(player["access_token"])),
        403,
        "forbidden",
    )
    admin = await admin_token(http)
    key = await api_key(http, admin, ["tables:write"])
    assert_error(
        await http.post("/v1/tables", json=body, headers={"X-API-Key": key}), 403, "forbidden"
    )
    assert_error(await http.get("/v1/tables/adm-1"), 404, "not_found")  # nothing was made

    created = await http.post("/v1/tables", json=body, headers=bearer(admin))
    assert created.status_code == 201, created.text
    assert created.json()["table_id"] == "adm-1"
    assert created.json()["config"]["max_buy_in"] == 200

    again = await http.post("/v1/tables", json=body, headers=bearer(admin))
    assert "exists" in assert_error(again, 409, "table_error")["message"]

    # Settings each field accepts alone but the table refuses together.
    inverted = await http.post(
        "/v1/tables",
        json={"table_id": "adm-2", **TABLE, "min_buy_in": 300, "max_buy_in": 200},
        headers=bearer(admin),
    )
    assert 400 <= inverted.status_code < 500, inverted.text
    assert "buy-in range 300..200" in inverted.json()["error"]["message"]
    no_blind = await http.post(
        "/v1/tables", json={"table_id": "adm-3", **TABLE, "big_blind": 0}, headers=bearer(admin)
    )
    assert "big_blind" in assert_error(no_blind, 422, "invalid_request")["message"]
    for refused in ("adm-2", "adm-3"):
        assert_error(await http.get(f"/v1/tables/{refused}"), 404, "not_found")
    assert [t["table_id"] for t in (await http.get("/v1/tables")).json()] == ["adm-1"]


# -- a hand through the REST routes ----------------------------------------------------


async def test_two_players_play_a_hand_and_read_its_history(gateway: Gateway) -> None:
    http = gateway.http
    admin = await admin_token(http)
    await open_table(gateway, admin, "hu-1")

    players: dict[str, str] = {}  # lowercase address -> access token
    for n in range(2):
        address, tokens = await sign_in(http, gateway.container)
        me = address.lower()
        credited = await http.post(
            f"/v1/admin/players/{address}/credit",
            json={"amount": 1000, "transfer_id": f"credit-{me}"},
            headers=bearer(admin),
        )
        assert credited.status_code == 200, credited.text
        assert credited.json() == {"player": me, "currency": "CHIPS", "balance": 1000}
        joined = await http.post(
            "/v1/tables/hu-1/join",
            json={"seat": n, "buy_in": 100, "request_id": f"sit-{n}"},
            headers=bearer(tokens["access_token"]),
        )
        assert joined.status_code == 200, joined.text
        assert joined.json() == {"seat": n, "stack": 100, "status": "seated"}
        players[me] = tokens["access_token"]
    by_seat = list(players)

    for me, token in players.items():
        balance = await http.get("/v1/me/balance", headers=bearer(token))
        assert balance.json() == {"player": me, "currency": "CHIPS", "balance": 900}

    started = await wait_for(http, "hu-1", lambda v: v["hand"] is not None)
    hand = started["hand"]
    assert hand["seats"] == [0, 1]
    assert {s["player"] for s in started["seats"].values()} == set(players)

    cards: dict[str, list[str]] = {}
    for seat, me in enumerate(by_seat):
        mine = await http.get("/v1/tables/hu-1/cards", headers=bearer(players[me]))
        assert mine.status_code == 200, mine.text
        assert set(mine.json()) == {"cards"}
        private = mine.json()["cards"]
        assert private["hand_id"] == hand["hand_id"]
        assert private["seat"] == seat
        assert len(private["cards"]) == 2
        cards[me] = private["cards"]
    assert not set(cards[by_seat[0]]) & set(cards[by_seat[1]])
    _, stranger = await sign_in(http, gateway.container)
    nothing = await http.get("/v1/tables/hu-1/cards", headers=bearer(stranger["access_token"]))
    assert nothing.json() == {"cards": None}
    assert "cards" not in hand  # the public view shows no hole cards
    assert hand["board"] == []

    actor = by_seat[hand["actor_seat"]]
    waiting = by_seat[1 - hand["actor_seat"]]
    out_of_turn = await http.post(
        "/v1/tables/hu-1/actions", json={"action": "check_call"}, headers=bearer(players[waiting])
    )
    assert "turn" in assert_error(out_of_turn, 409, "illegal_action")["message"]
    assert await view(http, "hu-1") == started

    raise_to = hand["legal"]["min_to"]
    raised = await http.post(
        "/v1/tables/hu-1/actions",
        json={"action": "bet_raise", "amount": raise_to, "hand_id": hand["hand_id"]},
        headers=bearer(players[actor]),
    )
    assert raised.status_code == 200, raised.text
    after = await view(http, "hu-1")
    assert after["hand"]["actor_seat"] == by_seat.index(waiting)
    assert max(after["hand"]["bets"]) == raise_to

    folded = await http.post(
        "/v1/tables/hu-1/actions", json={"action": "fold"}, headers=bearer(players[waiting])
    )
    assert folded.status_code == 200, folded.text
    done = await wait_for(http, "hu-1", lambda v: v["hand"] is None and v["hands_played"] == 1)
    stacks = {s["player"]: s["stack"] for s in done["seats"].values()}
    assert sum(stacks.values()) == 200
    assert stacks[actor] > 100 > stacks[waiting]

    # Hand histories: any valid token, or an API key with hands:read.
    reader = await api_key(http, admin, ["hands:read"])
    other = await api_key(http, admin, ["wallet:read"])
    assert_error(await http.get("/v1/tables/hu-1/hands"), 401, "unauthorized")
    refused = await http.get("/v1/tables/hu-1/hands", headers={"X-API-Key": other})
    assert "hands:read" in assert_error(refused, 403, "forbidden")["message"]
    listed = await http.get("/v1/tables/hu-1/hands", headers={"X-API-Key": reader})
    assert listed.status_code == 200, listed.text
    (row,) = listed.json()
    hand_id = row["hand_id"]
    assert hand_id == hand["hand_id"]
    assert (row["table_id"], row["number"]) == ("hu-1", 0)

    for headers in (bearer(players[waiting]), {"X-API-Key": reader}):
        one = await http.get(f"/v1/hands/{hand_id}", headers=headers)
        assert one.status_code == 200, one.text
        assert one.json() == row
    record, deltas = row["record"], row["deltas"]
    assert set(deltas) == set(players)
    assert sum(deltas.values()) + row["rake"] == 0
    assert deltas[actor] > 0 > deltas[waiting]
    assert {p: 100 + d for p, d in deltas.items()} == stacks
    assert (record["hand_id"], record["table_id"]) == (hand_id, "hu-1")
    assert record["commitment"] == hand["commitment"]  # the seed shown before the deal
    dealt = {d["card"] for d in record["dealt"]}
    assert set(cards[actor]) | set(cards[waiting]) <= dealt

    assert_error(
        await http.get(f"/v1/hands/{hand_id}/phh", headers={"X-API-Key": other}), 403, "forbidden"
    )
    download = await http.get(f"/v1/hands/{hand_id}/phh", headers={"X-API-Key": reader})
    assert download.status_code == 200, download.text
    assert download.headers["content-type"].startswith("text/plain")
    disposition = download.headers["content-disposition"]
    assert disposition == f'attachment; filename="{hand_id}.phh"'
    assert download.text == record["history_phh"]
    history = phh.loads(download.text)
    assert history.players is not None
    assert set(history.players) == set(players)
    assert history.table == "hu-1"

    replay = await http.get(f"/v1/hands/{hand_id}/replay", headers={"X-API-Key": reader})
    assert replay.status_code == 200, replay.text
    replayed = replay.json()
    assert replayed["hand_id"] == hand_id
    assert replayed["complete"] is True
    assert replayed["agrees"] is not False
    assert dict(zip(replayed["players"], replayed["payoffs"], strict=True)) == deltas
    assert replayed["rake"] == row["rake"]

    unknown = "0" * 26
    assert_error(
        await http.get(f"/v1/hands/{unknown}", headers={"X-API-Key": reader}), 404, "not_found"
    )
    assert_error(
        await http.get("/v1/hands/not-a-ulid", headers={"X-API-Key": reader}),
        422,
        "invalid_request",
    )
    for token in players.values():  # still seated: the buy-in is at the table
        balance = await http.get("/v1/me/balance", headers=bearer(token))
        assert balance.json()["balance"] == 900


async def test_a_join_the_ledger_refuses_frees_the_seat(gateway: Gateway) -> None:
    http = gateway.http
    await open_table(gateway, await admin_token(http), "broke-1")
    _, tokens = await sign_in(http, gateway.container)
    joined = await http.post(
        "/v1/tables/broke-1/join",
        json={"seat": 3, "buy_in": 100, "request_id": "broke"},
        headers=bearer(tokens["access_token"]),
    )
    assert_error(joined, 409, "table_error")
    assert (await view(http, "broke-1"))["seats"] == {}
    out_of_range = await http.post(
        "/v1/tables/broke-1/join",
        json={"seat": 0, "buy_in": 500, "request_id": "big"},
        headers=bearer(tokens["access_token"]),
    )
    assert "40..200" in assert_error(out_of_range, 409, "table_error")["message"]


# -- limits and availability -----------------------------------------------------------


async def test_the_api_rate_limit_is_per_caller(tmp_path: Path) -> None:
    async with _gateway(tmp_path, api_rate_capacity=3, api_rate_per_second=0.01) as gw:
        await open_table(gw, await admin_token(gw.http), "rl-1")
        _, first = await sign_in(gw.http, gw.container)
        _, second = await sign_in(gw.http, gw.container)
        headers = bearer(first["access_token"])
        route = "/v1/tables/rl-1/cards"
        codes = [(await gw.http.get(route, headers=headers)).status_code for _ in "abc"]
        assert codes == [200, 200, 200]
        limited = await gw.http.get(route, headers=headers)
        assert_error(limited, 429, "rate_limited")
        assert int(limited.headers["retry-after"]) >= 1
        served = await gw.http.get(route, headers=bearer(second["access_token"]))
        assert served.status_code == 200, served.text  # its own bucket
        assert served.json() == {"cards": None}
        # Public reads are not counted against anyone.
        assert (await gw.http.get("/v1/tables/rl-1")).status_code == 200


async def test_a_new_player_has_a_zero_balance(gateway: Gateway) -> None:
    """A player signed in but never credited has no ledger account yet: 0, not an error."""
    _, tokens = await sign_in(gateway.http, gateway.container)
    answer = await gateway.http.get("/v1/me/balance", headers=bearer(tokens["access_token"]))
    assert answer.status_code == 200, answer.text
    assert answer.json()["balance"] == 0


async def test_a_table_no_host_deals_answers_503(gateway: Gateway) -> None:
    http = gateway.http
    await open_table(gateway, await admin_token(http), "orphan-1")
    _, tokens = await sign_in(http, gateway.container)
    await gateway.app.state.host.close()
    answer = await http.post(
        "/v1/tables/orphan-1/join",
        json={"seat": 0, "buy_in": 100, "request_id": "orphan"},
        headers=bearer(tokens["access_token"]),
    )
    assert_error(answer, 503, "table_unavailable")
    assert int(answer.headers["retry-after"]) >= 1
    assert (await view(http, "orphan-1"))["seats"] == {}  # the saved state is still readable


async def test_openapi_lists_the_poker_routes(gateway: Gateway) -> None:
    answer = await gateway.http.get("/openapi.json")
    assert answer.status_code == 200
    paths = answer.json()["paths"]
    expected = {
        "/v1/tables": {"get", "post"},
        "/v1/tables/{table_id}": {"get"},
        "/v1/tables/{table_id}/close": {"post"},
        "/v1/tables/{table_id}/join": {"post"},
        "/v1/tables/{table_id}/leave": {"post"},
        "/v1/tables/{table_id}/sit-out": {"post"},
        "/v1/tables/{table_id}/sit-in": {"post"},
        "/v1/tables/{table_id}/actions": {"post"},
        "/v1/tables/{table_id}/cards": {"get"},
        "/v1/tables/{table_id}/hands": {"get"},
        "/v1/hands/{hand_id}": {"get"},
        "/v1/hands/{hand_id}/phh": {"get"},
        "/v1/hands/{hand_id}/replay": {"get"},
        "/v1/me/balance": {"get"},
        "/v1/admin/players/{address}/credit": {"post"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert set(paths[path]) >= methods, path
        for method in methods:
            assert "poker" in paths[path][method]["tags"], (path, method)
    assert "text/plain" in paths["/v1/hands/{hand_id}/phh"]["get"]["responses"]["200"]["content"]


async def test_oversized_bodies_are_refused_with_413(gateway: Gateway) -> None:
    http = gateway.http
    _, tokens = await sign_in(http, gateway.container)
    big = {"seat": 0, "buy_in": 100, "request_id": "big", "padding": "x" * (2 * 1024 * 1024)}
    answer = await http.post(
        "/v1/tables/any-1/join", json=big, headers=bearer(tokens["access_token"])
    )
    assert_error(answer, 413, "payload_too_large")
    assert "1048576" in answer.json()["error"]["message"]


async def test_oversized_chunked_bodies_are_refused_with_413(gateway: Gateway) -> None:
    """No Content-Length to trust: the body is counted as it arrives."""
    http = gateway.http
    _, tokens = await sign_in(http, gateway.container)

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"seat": 0, "buy_in": 100, "request_id": "big", "padding": "'
        for _ in range(32):
            yield b"x" * 65536
        yield b'"}'

    answer = await http.post(
        "/v1/tables/any-1/join",
        content=chunks(),
        headers={**bearer(tokens["access_token"]), "Content-Type": "application/json"},
    )
    assert "content-length" not in answer.request.headers
    assert_error(answer, 413, "payload_too_large")
