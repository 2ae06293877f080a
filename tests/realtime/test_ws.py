"""The /v1/stream WebSocket through a real uvicorn server (stock protocol and the
gateway's direct-write StreamProtocol): hello, anonymous and player connections, JSON
and MessagePack, resume after a reconnect, private channels refused to others, oversized
frames and bad requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import uvicorn
import websockets
from websockets.exceptions import ConnectionClosed

from ludex.adapters.chain.anvil import free_port
from ludex.composition import open_container
from ludex.gateway.app import create_app
from ludex.gateway.auth import AuthService
from ludex.realtime import Hub
from ludex.realtime.transport import StreamProtocol
from tests.conftest import service_url
from tests.gateway.test_app import _settings


class Server:
    def __init__(self, url: str, hub: Hub, auth: AuthService, direct: bool) -> None:
        self.url = url
        self.hub = hub
        self.auth = auth
        self.direct = direct


@pytest.fixture(params=["asgi", "direct"])
async def server(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Server]:
    """The gateway under uvicorn: the stock protocol (every frame through ASGI, with
    permessage-deflate as uvicorn's default), or the gateway's StreamProtocol without
    compression (the direct write path; test_transport checks it is taken)."""
    direct = request.param == "direct"
    async with open_container(_settings(tmp_path, service_url("anvil"))) as container:
        app = create_app(container)
        port = free_port()
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ws=StreamProtocol if direct else "auto",
            ws_per_message_deflate=not direct,
        )
        running = uvicorn.Server(config)
        task = asyncio.create_task(running.serve())
        while not running.started:
            await asyncio.sleep(0.01)
        try:
            yield Server(f"ws://127.0.0.1:{port}/v1/stream", app.state.hub, app.state.auth, direct)
        finally:
            running.should_exit = True
            await task


async def frames(ws: Any, count: int, fmt: str = "json") -> list[dict[str, Any]]:
    got = []
    for _ in range(count):
        raw = await asyncio.wait_for(ws.recv(), 5)
        got.append(json.loads(raw) if fmt == "json" else msgpack.unpackb(raw))
    return got


async def send(ws: Any, body: dict[str, Any], fmt: str = "json") -> None:
    await ws.send(json.dumps(body) if fmt == "json" else msgpack.packb(body))


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_a_watcher_gets_channel_messages_in_its_format(server: Server, fmt: str) -> None:
    async with websockets.connect(f"{server.url}?format={fmt}") as ws:
        await send(ws, {"op": "hello", "token": None}, fmt)
        [welcome] = await frames(ws, 1, fmt)
        assert welcome["type"] == "welcome"
        assert welcome["data"]["player"] is None
        await send(ws, {"op": "subscribe", "channel": "table:7"}, fmt)
        *_, ack = await frames(ws, 2, fmt)  # the snapshot, then the ack
        assert ack["type"] == "ack"
        assert ack["channel"] == "table:7"
        for n in range(3):
            await server.hub.publish("table:7", "action", {"n": n})
        got = await frames(ws, 3, fmt)
        assert [m["data"]["n"] for m in got] == [0, 1, 2]
        assert [m["seq"] for m in got] == [ack["seq"] + 1, ack["seq"] + 2, ack["seq"] + 3]
        # through the gateway app's middleware, the direct path is found (or not)
        [conn] = server.hub.subscribers("table:7")
        assert (conn.sink is not None) is server.direct
        await send(ws, {"op": "ping"}, fmt)
        assert (await frames(ws, 1, fmt))[0]["type"] == "pong"


async def test_resume_after_a_reconnect_gets_exactly_the_missed_messages(server: Server) -> None:
    async with websockets.connect(server.url) as ws:
        await send(ws, {"op": "hello", "token": None})
        await frames(ws, 1)
        await send(ws, {"op": "subscribe", "channel": "lobby"})
        await frames(ws, 2)  # the snapshot and the ack
        await server.hub.publish("lobby", "table_opened", {"table": 1})
        [first] = await frames(ws, 1)
    for n in range(2, 5):  # published while the client is away
        await server.hub.publish("lobby", "table_opened", {"table": n})
    async with websockets.connect(server.url) as ws:
        await send(ws, {"op": "hello", "token": None})
        await frames(ws, 1)
        resume = {"epoch": first["epoch"], "seq": first["seq"]}
        await send(ws, {"op": "subscribe", "channel": "lobby", "resume": resume})
        got = await frames(ws, 4)
        assert [m["data"]["table"] for m in got[:3]] == [2, 3, 4]
        assert [m["seq"] for m in got[:3]] == [first["seq"] + 1, first["seq"] + 2, first["seq"] + 3]
        assert got[3]["type"] == "ack"
        assert got[3]["data"]["replayed"] == 3


async def test_private_channels_need_their_player_and_bad_input_is_answered(
    server: Server,
) -> None:
    address = "0xabc0000000000000000000000000000000000001"
    tokens = await server.auth.issue_tokens(address, ["player"])
    async with websockets.connect(server.url) as ws:
        await send(ws, {"op": "hello", "token": None})
        await frames(ws, 1)
        await send(ws, {"op": "subscribe", "channel": f"player:{address}"})
        [refused] = await frames(ws, 1)
        assert refused["type"] == "error"
        assert refused["data"]["code"] == "forbidden"
        await send(ws, {"op": "subscribe", "channel": "nowhere"})
        assert (await frames(ws, 1))[0]["data"]["code"] == "bad_request"
        await ws.send("{not json")
        assert (await frames(ws, 1))[0]["data"]["code"] == "bad_frame"
        await ws.send(json.dumps({"op": "ping", "pad": "x" * 20_000}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1009

    async with websockets.connect(server.url) as ws:
        await send(ws, {"op": "hello", "token": tokens.access_token})
        [welcome] = await frames(ws, 1)
        player = welcome["data"]["player"]
        assert player == address
        await send(ws, {"op": "subscribe", "channel": f"player:{player}"})
        *_, ack = await frames(ws, 2)
        assert ack["type"] == "ack"
        await server.hub.send_private(player, "hole_cards", {"cards": ["As", "Kd"]})
        [private] = await frames(ws, 1)
        assert private["data"] == {"cards": ["As", "Kd"]}

    async with websockets.connect(server.url) as ws:
        await send(ws, {"op": "hello", "token": tokens.access_token + "x"})
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4401
