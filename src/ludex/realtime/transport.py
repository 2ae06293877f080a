"""A direct write path for stream frames: uvicorn's WebSocket protocol plus a frame sink.

Sending one frame through ASGI costs a chain of awaits per frame: Starlette's
``WebSocket.send``, every middleware's wrapped ``send``, uvicorn's ``send`` (which
checks the handshake state and awaits ``writable``), then websockets frames the
payload and uvicorn writes it. For a stream that fans one message out to thousands of
sockets that chain, not the socket write, was most of the server's CPU per delivery.

:class:`StreamProtocol` is uvicorn's default WebSocket protocol
(``websockets_sansio_impl.WebSocketsSansIOProtocol``) with one addition: once the
handshake has been read it puts a :class:`DirectFrames` sink in the ASGI scope as the
server extension ``scope["extensions"]["ludex.frames"] = {"sink": sink}`` (ASGI
extension values are dicts). The sink writes bytes that are already WebSocket frames
straight to the transport. Server-to-client frames are never masked, so the frame of a
message is the same bytes for every connection: the hub frames a message once per
encoding (text opcode for JSON, binary for MessagePack) and writes that one byte
string to every subscriber (:func:`ws_frame`).

What keeps this safe next to the websockets state machine, which still does
everything else (handshake, reading, pings and pongs, close):

* Every write, ours and uvicorn's, is one synchronous ``transport.write`` of whole
  frames, and uvicorn drains websockets' output right after each of its own sends, so
  writes interleave only at frame boundaries.
* :meth:`DirectFrames.write` refuses (returns False) once a close frame was sent or
  the transport is closing; the caller then stops writing.
* A sink is usable only after the application accepted the handshake, and never when
  the peer negotiated permessage-deflate: our frames would not be compressed (legal,
  RFC 7692 lets a sender skip compression per message, but the operator asked for
  compression). Such connections keep using the ASGI path.
* Backpressure stays the transport's: :attr:`DirectFrames.paused` follows uvicorn's
  ``pause_writing``/``resume_writing`` (the transport's write buffer above its
  high-water mark); while it is set, the hub queues instead of writing.

Other ASGI servers, and Starlette's TestClient, have no ``ludex.frames`` extension:
the stream then sends everything through ASGI as before.

This module reads and sets attributes of uvicorn's protocol (``close_sent``,
``writable``, ``conn``, ``queue``, ``close_timer`` ...), not a public API: uvicorn is
pinned in uv.lock, and tests/realtime/test_transport.py runs the path against the
installed version, so an upgrade that changes them fails there first.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any, Final

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState, ProtocolError

FRAMES_EXTENSION: Final = "ludex.frames"
"""The ASGI scope extension holding ``{"sink": DirectFrames}``."""

_FIN_TEXT: Final = 0x81
_FIN_BINARY: Final = 0x82


def ws_frame(payload: bytes, binary: bool) -> bytes:
    """One unmasked, unfragmented server-to-client frame (RFC 6455 5.2) carrying
    ``payload``: the same bytes websockets' ``Frame.serialize(mask=False)`` gives."""
    length = len(payload)
    head = _FIN_BINARY if binary else _FIN_TEXT
    if length < 126:
        return bytes((head, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", head, 126, length) + payload
    return struct.pack("!BBQ", head, 127, length) + payload


class DirectFrames:
    """Writes already-framed bytes to one connection's transport, bypassing ASGI.

    ``written`` counts the writes that went this way (tests and operators can see
    that the direct path is taken).
    """

    __slots__ = ("_protocol", "_transport", "deflate", "paused", "written")

    def __init__(self, protocol: StreamProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self.deflate = bool(protocol.conn.extensions)
        """The peer negotiated an extension (permessage-deflate): frames must go
        through websockets, so this sink is not :attr:`usable`."""
        self.paused = False
        self.written = 0

    @property
    def usable(self) -> bool:
        """The handshake was accepted, the connection is open, no extension is active."""
        protocol = self._protocol
        return (
            protocol.handshake_complete
            and protocol.initial_response is None
            and not self.deflate
            and self._open()
        )

    def _open(self) -> bool:
        return not (self._protocol.close_sent or self._transport.is_closing())

    def frame(self, payload: bytes, binary: bool) -> bytes:
        """The wire bytes of one message; depends only on ``payload`` and ``binary``."""
        return ws_frame(payload, binary)

    def write(self, data: bytes) -> bool:
        """Write whole frames now; False when the connection is closing or closed (or
        the sink is not usable: deflate), and nothing was written."""
        if self.deflate or self._protocol.close_sent or self._transport.is_closing():
            return False
        self._transport.write(data)
        self.written += 1
        return True

    def buffered(self) -> int:
        """Bytes written but not yet taken by the kernel."""
        return self._transport.get_write_buffer_size()

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its low-water mark (or the
        connection is gone)."""
        await self._protocol.writable.wait()

    def close(self, code: int, reason: str) -> None:
        """Send a close frame without waiting for the buffer to drain.

        uvicorn's ASGI ``websocket.close`` first awaits ``writable``: a client that
        stopped reading would never get its close. This is that close without the
        wait. The transport is closed when the peer answers; a peer that does not
        answer within uvicorn's close timeout is cut off (aborted: a graceful close
        would wait for a buffer that a client which stopped reading never drains).
        """
        protocol = self._protocol
        if not self._open() or not protocol.handshake_complete:
            return
        try:
            protocol.conn.send_close(code, reason)
        except (InvalidState, ProtocolError):
            return
        protocol.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        self._transport.write(b"".join(protocol.conn.data_to_send()))
        protocol.close_sent = True
        if protocol.read_paused:
            protocol.read_paused = False
            self._transport.resume_reading()
        protocol.close_timer = protocol.loop.call_later(
            protocol.close_timeout, self._transport.abort
        )


class StreamProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol that offers a :class:`DirectFrames` sink in the scope.

    Pass the class as ``uvicorn.Config(ws=StreamProtocol)``; everything else behaves
    as the stock protocol.
    """

    sink: DirectFrames | None = None

    async def run_asgi(self) -> None:
        # handle_connect built the scope (and negotiated extensions) just before
        # scheduling this task; the application has not seen the scope yet.
        self.sink = DirectFrames(self)
        self.scope.setdefault("extensions", {})[FRAMES_EXTENSION] = {"sink": self.sink}
        await super().run_asgi()

    def pause_writing(self) -> None:
        super().pause_writing()
        if self.sink is not None:
            self.sink.paused = True

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.sink is not None:
            self.sink.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.sink is not None:
            self.sink.paused = False  # nothing will drain now; writers must not wait


def frame_sink(scope: Mapping[str, Any]) -> DirectFrames | None:
    """The connection's usable sink from an ASGI scope, or None (use ASGI)."""
    entry = (scope.get("extensions") or {}).get(FRAMES_EXTENSION)
    sink = entry.get("sink") if isinstance(entry, dict) else None
    return sink if isinstance(sink, DirectFrames) and sink.usable else None
