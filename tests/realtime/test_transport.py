"""The stream's direct write path (``ludex.realtime.transport``) through real uvicorn
servers on 127.0.0.1: the same frames as the ASGI path, replies in order with channel
frames (also while the socket is paused), slow consumers dropped alone, resume and
private channels, and the ASGI fallback when permessage-deflate is negotiated.

Every test that needs the direct path checks the sink's write counter, so a silent
fallback to ASGI fails it."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
import uvicorn
import websockets
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode

from ludex.adapters.chain.anvil import free_port
from ludex.adapters.kv.memory import MemoryKeyValue
from ludex.gateway.auth import AuthService
from ludex.realtime import Connection, Hub, MemoryHistory
from ludex.realtime.hub import SLOW_CONSUMER
from ludex.realtime.transport import DirectFrames, StreamProtocol, ws_frame
from ludex.realtime.ws import stream_endpoint

BIG = "x" * 8_000  # a few of these fill a socket buffer quickly


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65_535, 65_536, 70_000])
@pytest.mark.parametrize("binary", [False, True])
def test_frames_are_what_websockets_would_write(length: int, binary: bool) -> None:
    payload = os.urandom(length)
    opcode = Opcode.BINARY if binary else Opcode.TEXT
    assert ws_frame(payload, binary) == Frame(opcode, payload).serialize(mask=False)


class Stack:
    def __init__(self, hub: Hub, auth: AuthService) -> None:
        self.hub = hub
        self.auth = auth
        self.app = Starlette(routes=[WebSocketRoute("/v1/stream", stream_endpoint(hub, auth))])

    @asynccontextmanager
    async def serve(self, ws: Any, deflate: bool = False) -> AsyncIterator[str]:
        port = free_port()
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ws=ws,
            ws_per_message_deflate=deflate,
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            yield f"ws://127.0.0.1:{port}/v1/stream"
        finally:
            server.should_exit = True
            await task


@pytest.fixture
def stack() -> Callable[..., Stack]:
    def make(max_queue: int = 256) -> Stack:
        auth = AuthService(MemoryKeyValue(), os.urandom(32), domain="localhost", chain_id=31337)
        return Stack(Hub(MemoryHistory(max_messages=5_000), max_queue=max_queue), auth)

    return make


def decode(raw: str | bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(raw) if isinstance(raw, str) else msgpack.unpackb(raw)
    return value


async def request(ws: Any, body: dict[str, Any], fmt: str) -> None:
    await ws.send(json.dumps(body) if fmt == "json" else msgpack.packb(body))


async def recv(ws: Any, count: int) -> list[str | bytes]:
    return [await asyncio.wait_for(ws.recv(), 5) for _ in range(count)]


async def hello(ws: Any, fmt: str, token: str | None = None) -> dict[str, Any]:
    await request(ws, {"op": "hello", "token": token}, fmt)
    [welcome] = await recv(ws, 1)
    return decode(welcome)


async def read_until_closed(ws: Any) -> ConnectionClosed:
    while True:
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed as closed:
            return closed


def connection(hub: Hub, channel: str, conn_id: str) -> Connection:
    [found] = [c for c in hub.subscribers(channel) if c.id == conn_id]
    return found


def sink_of(conn: Connection) -> DirectFrames:
    assert isinstance(conn.sink, DirectFrames), "the direct path is not in use"
    return conn.sink


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_direct_frames_are_byte_identical_to_asgi_and_replies_keep_their_place(
    stack: Callable[..., Stack], fmt: str
) -> None:
    s = stack()
    async with (
        s.serve(StreamProtocol) as direct_url,
        s.serve("auto") as asgi_url,
        websockets.connect(f"{direct_url}?format={fmt}", compression=None) as direct,
        websockets.connect(f"{asgi_url}?format={fmt}", compression=None) as asgi,
    ):
        ids = {}
        for name, ws in (("direct", direct), ("asgi", asgi)):
            ids[name] = (await hello(ws, fmt))["data"]["connection"]
            await request(ws, {"op": "subscribe", "channel": "table:1"}, fmt)
            assert [decode(f)["type"] for f in await recv(ws, 2)] == ["snapshot", "ack"]
        got: dict[str, list[str | bytes]] = {"direct": [], "asgi": []}
        for round_ in range(4):
            for n in range(5):
                await s.hub.publish("table:1", "action", {"n": n, "round": round_, "é": "ü"})
            for name, ws in (("direct", direct), ("asgi", asgi)):
                await request(ws, {"op": "ping"}, fmt)
                got[name] += await recv(ws, 6)
        # Same bytes, same frame type (text for JSON, binary for MessagePack).
        assert got["direct"] == got["asgi"]
        assert all(isinstance(f, str if fmt == "json" else bytes) for f in got["direct"])
        envelopes = [decode(f) for f in got["direct"]]
        # Each pong comes after the five messages published before its ping.
        assert [e["type"] for e in envelopes] == (["action"] * 5 + ["pong"]) * 4
        seqs = [e["seq"] for e in envelopes if e["type"] == "action"]
        assert seqs == list(range(seqs[0], seqs[0] + 20))
        direct_sink = sink_of(connection(s.hub, "table:1", ids["direct"]))
        assert direct_sink.written == 2 + 20 + 4  # snapshot, ack, messages, pongs
        assert connection(s.hub, "table:1", ids["asgi"]).sink is None


async def test_frames_queued_while_the_socket_is_paused_go_out_in_order(
    stack: Callable[..., Stack],
) -> None:
    s = stack(max_queue=10_000)
    async with (
        s.serve(StreamProtocol) as url,
        # max_queue=1: the client stops reading its socket when it does not recv
        websockets.connect(url, compression=None, max_queue=1) as ws,
    ):
        conn_id = (await hello(ws, "json"))["data"]["connection"]
        await request(ws, {"op": "subscribe", "channel": "lobby"}, "json")
        await recv(ws, 2)
        sink = sink_of(connection(s.hub, "lobby", conn_id))
        conn = connection(s.hub, "lobby", conn_id)
        published = 0
        while not sink.paused:
            assert published < 5_000, "the socket never paused"
            await s.hub.publish("lobby", "big", {"n": published, "pad": BIG})
            published += 1
            await asyncio.sleep(0)
        for _ in range(3):
            await s.hub.publish("lobby", "big", {"n": published, "pad": BIG})
            published += 1
        assert conn.queued == 3
        await request(ws, {"op": "ping"}, "json")
        for _ in range(500):  # the server reads the ping and queues the pong
            if conn.queued == 4:
                break
            await asyncio.sleep(0.01)
        assert conn.queued == 4
        await s.hub.publish("lobby", "big", {"n": published, "pad": BIG})
        published += 1
        writes = sink.written
        envelopes = [decode(f) for f in await recv(ws, published + 1)]
        assert [e["data"]["n"] for e in envelopes if e["type"] == "big"] == list(range(published))
        assert [e["type"] for e in envelopes[-2:]] == ["pong", "big"]
        assert conn.queued == 0
        assert sink.written == writes + 1  # the whole backlog in one write
        assert not conn.closed


async def test_a_client_that_stops_reading_is_dropped_alone(
    stack: Callable[..., Stack],
) -> None:
    s = stack(max_queue=8)
    async with (
        s.serve(StreamProtocol) as url,
        websockets.connect(url, compression=None, max_queue=1) as stuck,
        websockets.connect(url, compression=None, max_size=None) as reader,
    ):
        stuck_id = (await hello(stuck, "json"))["data"]["connection"]
        reader_id = (await hello(reader, "json"))["data"]["connection"]
        for ws in (stuck, reader):
            await request(ws, {"op": "subscribe", "channel": "lobby"}, "json")
            await recv(ws, 2)
        stuck_conn = connection(s.hub, "lobby", stuck_id)
        reader_sink = sink_of(connection(s.hub, "lobby", reader_id))
        received: list[int] = []

        async def read() -> None:
            while True:
                envelope = decode(await reader.recv())
                received.append(envelope["data"]["n"])

        reading = asyncio.create_task(read())
        published = 0
        while not stuck_conn.closed:
            assert published < 5_000, "the stuck client was never dropped"
            await s.hub.publish("lobby", "big", {"n": published, "pad": BIG})
            published += 1
            await asyncio.sleep(0)
        for _ in range(20):  # the reader is unaffected
            await s.hub.publish("lobby", "big", {"n": published, "pad": BIG})
            published += 1
            await asyncio.sleep(0)
        for _ in range(500):
            if len(received) == published:
                break
            await asyncio.sleep(0.01)
        reading.cancel()
        assert received == list(range(published))
        assert stuck_conn.close_reason == SLOW_CONSUMER
        assert s.hub.dropped == 1
        assert [c.id for c in s.hub.subscribers("lobby")] == [reader_id]
        assert reader_sink.written >= published
        # The stuck client gets its close (4008) after what was already on its way.
        closed = await read_until_closed(stuck)
        assert closed.rcvd is not None
        assert closed.rcvd.code == 4008


async def test_resume_and_private_channels_on_the_direct_path(
    stack: Callable[..., Stack],
) -> None:
    s = stack()
    alice = "0xa000000000000000000000000000000000000001"
    bob = "0xb000000000000000000000000000000000000002"
    alice_token = (await s.auth.issue_tokens(alice, ["player"])).access_token
    bob_token = (await s.auth.issue_tokens(bob, ["player"])).access_token
    async with s.serve(StreamProtocol) as url:
        async with websockets.connect(url, compression=None) as ws:
            await hello(ws, "json")
            await request(ws, {"op": "subscribe", "channel": "lobby"}, "json")
            await recv(ws, 2)
            await s.hub.publish("lobby", "opened", {"table": 1})
            first = decode((await recv(ws, 1))[0])
        for n in range(2, 5):
            await s.hub.publish("lobby", "opened", {"table": n})
        async with (
            websockets.connect(f"{url}?format=msgpack", compression=None) as a,
            websockets.connect(url, compression=None) as b,
        ):
            a_id = (await hello(a, "msgpack", alice_token))["data"]["connection"]
            await hello(b, "json", bob_token)
            resume = {"epoch": first["epoch"], "seq": first["seq"]}
            await request(a, {"op": "subscribe", "channel": "lobby", "resume": resume}, "msgpack")
            got = [decode(f) for f in await recv(a, 4)]
            assert [m["data"]["table"] for m in got[:3]] == [2, 3, 4]
            assert [m["seq"] for m in got[:3]] == [first["seq"] + n for n in (1, 2, 3)]
            assert (got[3]["type"], got[3]["data"]["replayed"]) == ("ack", 3)
            for ws, fmt, player in ((a, "msgpack", alice), (b, "json", bob)):
                await request(ws, {"op": "subscribe", "channel": f"player:{player}"}, fmt)
                assert decode((await recv(ws, 2))[1])["type"] == "ack"
            await request(b, {"op": "subscribe", "channel": f"player:{alice}"}, "json")
            assert decode((await recv(b, 1))[0])["data"]["code"] == "forbidden"
            await s.hub.send_private(alice, "hole_cards", {"cards": ["As", "Kd"]})
            assert decode((await recv(a, 1))[0])["data"] == {"cards": ["As", "Kd"]}
            await request(b, {"op": "ping"}, "json")
            assert decode((await recv(b, 1))[0])["type"] == "pong"  # nothing before it
            assert sink_of(connection(s.hub, f"player:{alice}", a_id)).written > 0


async def test_permessage_deflate_falls_back_to_asgi(stack: Callable[..., Stack]) -> None:
    s = stack()
    async with (
        s.serve(StreamProtocol, deflate=True) as url,
        websockets.connect(url) as compressed,  # offers permessage-deflate: negotiated
        websockets.connect(url, compression=None) as plain,
    ):
        ids = {}
        for name, ws in (("compressed", compressed), ("plain", plain)):
            ids[name] = (await hello(ws, "json"))["data"]["connection"]
            await request(ws, {"op": "subscribe", "channel": "lobby"}, "json")
            await recv(ws, 2)
        assert compressed.protocol.extensions  # deflate is on for this one
        for n in range(10):
            await s.hub.publish("lobby", "action", {"n": n, "pad": "abc" * 100})
        for ws in (compressed, plain):
            got = [decode(f) for f in await recv(ws, 10)]
            assert [m["data"]["n"] for m in got] == list(range(10))
        assert connection(s.hub, "lobby", ids["compressed"]).sink is None
        assert sink_of(connection(s.hub, "lobby", ids["plain"])).written == 12
