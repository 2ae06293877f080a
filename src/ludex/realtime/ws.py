"""The WebSocket transport of the stream: ``/v1/stream`` on the gateway.

One connection multiplexes channels. ``?format=json`` (text frames, the default) or
``?format=msgpack`` (binary frames) is chosen per connection. The protocol (docs/realtime.md):

1. The client's first frame is ``{"op": "hello", "token": <access token or null>}``
   within ``hello_seconds``. A valid token makes the connection the player's (it may
   read ``player:<its address>``); ``null`` is an anonymous watcher. A bad token closes
   the socket with 4401.
2. Then any of ``{"op": "subscribe", "channel": C, "resume": {"epoch": E, "seq": N}}``
   (``resume`` optional), ``{"op": "unsubscribe", "channel": C}`` and
   ``{"op": "ping"}``. Each gets one reply on the envelope ``{channel, epoch, seq, type,
   data}``: ``ack`` (with the channel's position), ``pong``, or ``error`` (``data`` holds
   ``code`` and ``message``; the connection stays open). Channel messages, ``gap`` and
   ``snapshot`` frames come from the hub.
3. A signed-in player may also send game commands (``join``, ``leave``, ``sit_out``,
   ``sit_in``, ``act``, with ``table`` and the command's fields, and an optional
   ``ref`` echoed in the reply); the gateway's ``commands`` handler runs them and the
   reply is ``ack`` (``data.result``) or ``error`` with a code (``illegal_action``,
   ``table_error``, ``table_unavailable``, ``rate_limited`` ...) to that player only.
4. A client frame larger than ``max_frame`` bytes closes with 1009; no frame for
   ``idle_seconds`` closes with 1001 (send ``ping``); a client too slow to take its
   frames is dropped by the hub and closed with 4008.

Outgoing frames take one of two paths. Under uvicorn with
:class:`~ludex.realtime.transport.StreamProtocol` (the gateway's server) the scope
carries a direct write path: the hub writes each frame, framed once per encoding, to
the socket while it publishes, and the per-connection writer task only flushes what
queued while the socket was paused. Elsewhere (other ASGI servers, Starlette's
TestClient, or a client that negotiated permessage-deflate) every frame goes through
ASGI ``websocket.send`` from the writer task. Clients cannot tell them apart.

Transport only: subscriptions, history and fan-out are :class:`~ludex.realtime.hub.Hub`'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgpack  # type: ignore[import-untyped]
from starlette.websockets import WebSocket, WebSocketDisconnect

from ludex.errors import LudexError
from ludex.gateway.auth import AuthError, AuthService
from ludex.realtime.history import JsonValue, RealtimeError
from ludex.realtime.hub import (
    ENCODINGS,
    SLOW_CONSUMER,
    ChannelForbidden,
    Connection,
    Encoding,
    Hub,
)
from ludex.realtime.hub import encode_frame as encode
from ludex.realtime.transport import DirectFrames, frame_sink

CLOSE_TOO_BIG: Final = 1009
CLOSE_IDLE: Final = 1001
CLOSE_PROTOCOL: Final = 1008
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_SLOW: Final = 4008


CommandHandler = Callable[[str, dict[str, Any]], Awaitable[JsonValue]]
"""Runs a game command (``op`` in :data:`COMMAND_OPS`) for the authenticated player."""

COMMAND_OPS: Final = frozenset({"join", "leave", "sit_out", "sit_in", "act"})


def error_code(exc: Exception) -> str:
    """``IllegalAction`` -> ``illegal_action``: the code clients see for a refusal."""
    name = type(exc).__name__
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


class _Refused(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _reply(
    msg_type: str,
    data: JsonValue,
    channel: str | None = None,
    epoch: str | None = None,
    seq: int | None = None,
) -> dict[str, JsonValue]:
    """A reply on the stream's one envelope."""
    return {"channel": channel, "epoch": epoch, "seq": seq, "type": msg_type, "data": data}


async def _first(*waits: Awaitable[None]) -> None:
    """Wait until one of ``waits`` is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def stream_endpoint(
    hub: Hub,
    auth: AuthService,
    *,
    max_frame: int = 16_384,
    hello_seconds: float = 10.0,
    idle_seconds: float = 60.0,
    commands: CommandHandler | None = None,
) -> Callable[[WebSocket], Awaitable[None]]:
    """The ``/v1/stream`` handler (see the module docstring)."""

    async def receive(websocket: WebSocket, encoding: Encoding, timeout: float) -> dict[str, Any]:
        try:
            message = await asyncio.wait_for(websocket.receive(), timeout)
        except TimeoutError:
            raise _Refused(CLOSE_IDLE, f"no frame for {timeout:.0f} s; send ping") from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        raw: bytes | None = message.get("bytes")
        if raw is None:
            text = message.get("text")
            raw = text.encode() if isinstance(text, str) else None
        if raw is None:
            raise _Refused(CLOSE_PROTOCOL, "empty frame")
        if len(raw) > max_frame:
            raise _Refused(CLOSE_TOO_BIG, f"frame of {len(raw)} bytes; the limit is {max_frame}")
        try:
            decoded = json.loads(raw) if encoding == "json" else msgpack.unpackb(raw, raw=False)
        except (ValueError, msgpack.UnpackException) as exc:
            return {"op": None, "_error": f"not a {encoding} object: {exc}"}
        if not isinstance(decoded, dict):
            return {"op": None, "_error": "a frame must be an object with an 'op'"}
        return decoded

    async def send(websocket: WebSocket, frame: bytes, encoding: Encoding) -> None:
        if encoding == "json":
            await websocket.send_text(frame.decode())
        else:
            await websocket.send_bytes(frame)

    async def hello(websocket: WebSocket, encoding: Encoding) -> str | None:
        first = await receive(websocket, encoding, hello_seconds)
        if first.get("op") != "hello":
            raise _Refused(CLOSE_PROTOCOL, "the first frame must be {'op': 'hello', 'token': ...}")
        token = first.get("token")
        if token is None:
            return None
        if not isinstance(token, str):
            raise _Refused(CLOSE_UNAUTHORIZED, "token must be a string or null")
        try:
            principal = await auth.verify(token)
        except AuthError as exc:
            raise _Refused(CLOSE_UNAUTHORIZED, str(exc)[:120]) from None
        if "player" not in principal.roles:
            return None
        return principal.subject.lower()

    async def handle(connection: Connection, request: dict[str, Any]) -> dict[str, JsonValue]:
        op = request.get("op")
        if "_error" in request:
            return _reply("error", {"code": "bad_frame", "message": request["_error"]})
        channel = request.get("channel")
        if op in COMMAND_OPS:
            return await command(connection, op, request)
        try:
            if op == "ping":
                return _reply("pong", None)
            if op == "subscribe" and isinstance(channel, str):
                resume = request.get("resume")
                point: tuple[str, int] | None = None
                if resume is not None:
                    if not (
                        isinstance(resume, dict)
                        and isinstance(resume.get("epoch"), str)
                        and isinstance(resume.get("seq"), int)
                        and not isinstance(resume.get("seq"), bool)
                    ):
                        raise RealtimeError("resume must be {'epoch': str, 'seq': int}")
                    point = (resume["epoch"], resume["seq"])
                done = await hub.subscribe(connection, channel, point)
                return _reply(
                    "ack",
                    {"op": "subscribe", "replayed": done.replayed},
                    channel,
                    epoch=done.position.epoch,
                    seq=done.position.seq,
                )
            if op == "unsubscribe" and isinstance(channel, str):
                hub.unsubscribe(connection, channel)
                return _reply("ack", {"op": "unsubscribe"}, channel)
            raise RealtimeError(
                f"unknown op {op!r}; use subscribe / unsubscribe (with a channel) or ping"
            )
        except RealtimeError as exc:
            code = "forbidden" if isinstance(exc, ChannelForbidden) else "bad_request"
            return _reply("error", {"code": code, "message": str(exc)}, channel)

    async def command(
        connection: Connection, op: str, request: dict[str, Any]
    ) -> dict[str, JsonValue]:
        ref = request.get("ref")
        ref = ref if isinstance(ref, str | int) and not isinstance(ref, bool) else None
        if commands is None:
            return _reply(
                "error", {"code": "bad_request", "message": f"{op} is not served here", "ref": ref}
            )
        if connection.player_id is None:
            return _reply(
                "error",
                {
                    "code": "unauthorized",
                    "message": "sign in (hello with a token) to play",
                    "ref": ref,
                },
            )
        try:
            result = await commands(connection.player_id, request)
        except LudexError as exc:
            return _reply("error", {"code": error_code(exc), "message": str(exc), "ref": ref})
        return _reply("ack", {"op": op, "ref": ref, "result": result})

    async def endpoint(websocket: WebSocket) -> None:
        requested = websocket.query_params.get("format", "json")
        await websocket.accept()
        if requested not in ENCODINGS:
            await websocket.close(CLOSE_PROTOCOL, f"format must be one of {list(ENCODINGS)}")
            return
        encoding: Encoding = "json" if requested == "json" else "msgpack"
        connection: Connection | None = None
        writer: asyncio.Task[None] | None = None
        try:
            player = await hello(websocket, encoding)
            # uvicorn with StreamProtocol offers a direct write path (not with deflate)
            sink = frame_sink(websocket.scope)
            connection = hub.connect(encoding=encoding, player_id=player, sink=sink)
            await send(
                websocket,
                encode(
                    _reply("welcome", {"player": player, "connection": connection.id}), encoding
                ),
                encoding,
            )

            async def write(conn: Connection = connection) -> None:
                while (frame := await conn.receive()) is not None:
                    await send(websocket, frame, encoding)
                code = CLOSE_SLOW if conn.close_reason == SLOW_CONSUMER else 1000
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await websocket.close(code, conn.close_reason or "closed")

            async def write_direct(sink: DirectFrames, conn: Connection = connection) -> None:
                # The hub writes frames itself while the socket keeps up; this task
                # only sends what queued while the socket was paused, in one write.
                while await conn.queued_or_closed():
                    if sink.paused:
                        await _first(sink.drain(), conn.wait_closed())
                        continue
                    if not sink.write(conn.take_all()):
                        break
                code = CLOSE_SLOW if conn.close_reason == SLOW_CONSUMER else 1000
                sink.close(code, conn.close_reason or "closed")

            writer = asyncio.create_task(write() if sink is None else write_direct(sink))
            while not connection.closed:
                request = await receive(websocket, encoding, idle_seconds)
                reply = await handle(connection, request)
                if not connection.closed:
                    connection.send_control(encode(reply, encoding))
        except _Refused as refused:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(refused.code, refused.reason)
        except WebSocketDisconnect:
            pass
        finally:
            if connection is not None:
                hub.disconnect(connection, "client gone")
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, RuntimeError, WebSocketDisconnect):
                    await writer

    return endpoint
