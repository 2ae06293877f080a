"""Real-time stream fan-out: messages/s delivered and p50/p99 delivery latency of the
ludex ``/v1/stream`` WebSocket, against python-socketio on the same load.

For each scenario (N subscribers on one channel; N subscribers spread over T table
channels) and each backend, the run:

1. starts a server in its own process: uvicorn (the gateway's defaults: uvloop,
   httptools, the ``websockets`` sans-I/O protocol; for ludex the gateway's
   ``StreamProtocol`` subclass of it, which writes stream frames directly) on
   127.0.0.1 and a free port,
   serving either ludex's ``stream_endpoint`` on a :class:`~ludex.realtime.hub.Hub`
   over a ``MemoryHistory`` (what the gateway mounts at ``/v1/stream``) or a
   python-socketio ``AsyncServer`` (ASGI, rooms for channels). Both apps also answer
   ``POST /bench/publish`` and ``GET /bench/stats`` (bench only);
2. opens the subscribers from client processes with one minimal WebSocket client
   (an asyncio protocol, no library), the same code for both servers, so neither
   side pays for a heavier client. Ludex: ``hello`` with token null, ``subscribe``,
   wait for the ``ack``. Socket.IO: engine.io open, namespace connect, a ``join``
   event acknowledged once the server has put the socket in the room;
3. publishes, inside the server process, ``messages`` rounds of one message per
   channel (``hub.publish`` / ``sio.emit(..., to=channel)``), each carrying its send
   time (``time.time_ns``, the clock every process on the machine shares). The
   publisher is closed-loop: after each round it yields to the event loop, and waits
   while any connection has more than ``HIGH_WATER`` frames queued, so it runs as
   fast as the server can deliver without dropping anyone;
4. every client checks that each of its subscribers got every message of its
   channel exactly once and in order, and records receive time minus send time.

``delivered_per_s`` is deliveries over the time from the first publish to the last
receive. Latency is measured at full load, so it includes the time one message takes
to reach every subscriber of its channel (the fan-out of one message to 5,000
sockets is serial in one process). Server and clients share the machine's cores: the
JSON gives the CPU seconds each side used.

Nothing here is used by the gateway; this module never binds anything but 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import multiprocessing
import os
import resource
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection as Pipe
from typing import Any, Final, Literal, cast

import numpy as np

from ludex.bench._common import header, per_second, progress

Kind = Literal["ludex", "python-socketio"]
KINDS: Final[tuple[Kind, ...]] = ("ludex", "python-socketio")
HIGH_WATER: Final = 64
"""Frames queued on one connection above which the publisher pauses (the hub drops a
connection at 256)."""
CONNECT_CONCURRENCY: Final = 100
STALL_SECONDS: Final = 20.0
START_SECONDS: Final = 60.0
GOALS: Final = {"delivered_per_s": 100_000, "p99_ms": 50.0, "ahead_of": "python-socketio"}


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    subscribers: int
    channels: int
    messages: int

    def channel_names(self) -> list[str]:
        if self.channels == 1:
            return ["lobby"]
        return [f"table:{i}" for i in range(self.channels)]


GOAL_ACTION_P99_MS = 20.0
BOT_THINK_MS: Final = (500.0, 0.0)


@dataclass(frozen=True, slots=True)
class Options:
    subscribers: tuple[int, ...] = (1_000, 5_000)
    tables: int = 500
    table_subscribers: int | None = None
    """Subscribers spread over the tables (default: the largest of ``subscribers``)."""
    messages: int | None = None
    """Messages per channel (default: enough for ``deliveries`` per run)."""
    deliveries: int = 200_000
    client_processes: int | None = None
    peer: bool = True
    bot_tables: int = 200
    bot_players: int = 3
    bot_seconds: float = 20.0
    bot_think_ms: tuple[float, ...] = BOT_THINK_MS
    """One run per think time: paced bots give the latency at a load, 0 the ceiling."""

    def _messages(self, subscribers: int) -> int:
        return self.messages or max(1, -(-self.deliveries // subscribers))

    def scenarios(self) -> list[Scenario]:
        found = [Scenario(f"one_channel_{n}", n, 1, self._messages(n)) for n in self.subscribers]
        spread = self.table_subscribers or max(self.subscribers, default=0)
        if self.tables > 0 and spread > 0:
            found.append(
                Scenario(
                    f"{self.tables}_tables_{spread}", spread, self.tables, self._messages(spread)
                )
            )
        return found


QUICK: Final = Options(
    subscribers=(200,),
    tables=20,
    messages=20,
    bot_tables=5,
    bot_players=3,
    bot_seconds=5.0,
    bot_think_ms=(200.0,),
)


# --- the servers (each in its own process) -------------------------------------------


async def _publish_rounds(
    channels: Sequence[str],
    messages: int,
    send: Callable[[str, dict[str, int]], Awaitable[object]],
    backlog: Callable[[], int],
) -> dict[str, int]:
    """Closed-loop publisher: one message per channel per round, yielding after each;
    after a round, pause while any connection is more than HIGH_WATER frames behind."""
    started = time.time_ns()
    paused = 0
    for i in range(1, messages + 1):
        for channel in channels:
            await send(channel, {"t": time.time_ns(), "i": i})
            # as independent tables would: let this message go out before the next
            await asyncio.sleep(0)
        while backlog() > HIGH_WATER:
            paused += 1
            await asyncio.sleep(0.001)
    return {
        "started_ns": started,
        "finished_ns": time.time_ns(),
        "published": messages * len(channels),
        "pauses": paused,
    }


def _ludex_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route, WebSocketRoute

    from ludex.adapters.kv.memory import MemoryKeyValue
    from ludex.gateway.auth import AuthService
    from ludex.realtime import Hub, MemoryHistory
    from ludex.realtime.ws import stream_endpoint

    hub = Hub(MemoryHistory())
    auth = AuthService(MemoryKeyValue(), os.urandom(32), domain="localhost", chain_id=31337)

    def backlog(channels: Sequence[str]) -> int:
        return max((c.queued for ch in channels for c in hub.subscribers(ch)), default=0)

    async def publish(request: Request) -> JSONResponse:
        body = await request.json()
        channels: list[str] = body["channels"]

        async def send(channel: str, data: dict[str, int]) -> object:
            return await hub.publish(channel, "bench", data)

        return JSONResponse(
            await _publish_rounds(channels, body["messages"], send, lambda: backlog(channels))
        )

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({"cpu_s": time.process_time(), "dropped": hub.dropped})

    return Starlette(
        routes=[
            WebSocketRoute("/v1/stream", stream_endpoint(hub, auth)),
            Route("/bench/publish", publish, methods=["POST"]),
            Route("/bench/stats", stats),
        ]
    )


def _socketio_app() -> Any:
    import socketio  # type: ignore[import-untyped]
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    sio = socketio.AsyncServer(async_mode="asgi", logger=False, engineio_logger=False)

    @sio.on("join")  # type: ignore[untyped-decorator]
    async def join(sid: str, channel: str) -> bool:
        await sio.enter_room(sid, channel)
        return True

    def backlog() -> int:
        return max((s.queue.qsize() for s in sio.eio.sockets.values()), default=0)

    async def publish(request: Request) -> JSONResponse:
        body = await request.json()

        async def send(channel: str, data: dict[str, int]) -> object:
            return await sio.emit("m", data, to=channel)

        return JSONResponse(
            await _publish_rounds(body["channels"], body["messages"], send, backlog)
        )

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({"cpu_s": time.process_time(), "dropped": None})

    http = Starlette(
        routes=[
            Route("/bench/publish", publish, methods=["POST"]),
            Route("/bench/stats", stats),
        ]
    )
    return socketio.ASGIApp(sio, other_asgi_app=http)


def _serve(kind: Kind, pipe: Pipe) -> None:
    """Server process: bind a free port on 127.0.0.1, report it, serve until killed."""
    import uvicorn

    from ludex.gateway.server import settle_gc
    from ludex.realtime.transport import StreamProtocol

    app = _ludex_app() if kind == "ludex" else _socketio_app()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        limit_concurrency=20_000,
        backlog=4096,
        # ludex as the gateway serves it (direct frame writes); socketio on the stock
        # protocol, which is what it gets from uvicorn anywhere
        ws=StreamProtocol if kind == "ludex" else "auto",
    )
    pipe.send(sock.getsockname()[1])
    settle_gc()  # as ludex's GatewayServer does at start; both servers get it
    uvicorn.Server(config).run(sockets=[sock])


# --- the clients (a few processes, many sockets each) -------------------------------


class _Tally:
    """What one client process saw, over all its sockets."""

    def __init__(self, sockets: int) -> None:
        self.latencies_ns: list[int] = []
        self.pending = sockets
        self.finished = asyncio.Event()
        self.first_ns = 0
        self.last_ns = 0
        if sockets == 0:
            self.finished.set()

    def one_finished(self) -> None:
        self.pending -= 1
        if self.pending <= 0:
            self.finished.set()


class _Subscriber(asyncio.Protocol):
    """A minimal WebSocket client for one subscriber: upgrade, subscribe, count."""

    def __init__(self, kind: Kind, channel: str, expected: int, tally: _Tally) -> None:
        self.kind = kind
        self.channel = channel
        self.expected = expected
        self.tally = tally
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.upgraded = False
        self.fragments: bytearray | None = None
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received = 0
        self.last = 0
        self.in_order = True
        self.finished = False
        self.error: str | None = None

    # transport -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport, so no isinstance
        self.transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        path = "/v1/stream" if self.kind == "ludex" else "/socket.io/?EIO=4&transport=websocket"
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection closed ({exc or 'by the server'})")

    def _fail(self, reason: str) -> None:
        if self.error is None and not self.finished:
            self.error = reason
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{self.channel}: {reason}"))
        self._finish()

    def _finish(self) -> None:
        if not self.finished:
            self.finished = True
            self.tally.one_finished()

    def send_text(self, text: str) -> None:
        self.send_frame(text.encode(), opcode=1)

    def send_frame(self, payload: bytes, opcode: int) -> None:
        """One masked frame (clients must mask; RFC 6455 section 5.3)."""
        assert self.transport is not None
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            head = bytes([0x80 | opcode, 0x80 | size])
        else:
            head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(head + mask + masked)

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buf = self.buffer
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:end]).split(b"\r\n", 1)[0]
            del buf[: end + 4]
            if b" 101 " not in status:
                self._fail(f"upgrade refused: {status.decode(errors='replace')}")
                return
            self.upgraded = True
            if self.kind == "ludex":
                self.send_text('{"op":"hello","token":null}')
        pos, size = 0, len(buf)
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length, start = second & 0x7F, pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            if size - start < length:
                break
            payload = bytes(buf[start : start + length])
            pos = start + length
            opcode = first & 0x0F
            if opcode == 0 and self.fragments is not None:
                self.fragments += payload
                if first & 0x80:
                    payload, self.fragments = bytes(self.fragments), None
                    self._message(payload, now)
            elif opcode in (1, 2):
                if first & 0x80:
                    self._message(payload, now)
                else:
                    self.fragments = bytearray(payload)
            elif opcode == 9:
                self.send_frame(payload, opcode=10)  # pong
            elif opcode == 8:
                self._fail(f"closed by the server: {payload[2:].decode(errors='replace')}")
        del buf[:pos]

    # protocols -------------------------------------------------------------------

    def _delivered(self, number: int, sent_ns: int, now: int) -> None:
        self.received += 1
        if number != self.last + 1:
            self.in_order = False
        self.last = number
        tally = self.tally
        tally.latencies_ns.append(now - sent_ns)
        if not tally.first_ns:
            tally.first_ns = now
        tally.last_ns = now
        if self.received >= self.expected:
            self._finish()

    def _message(self, payload: bytes, now: int) -> None:
        if self.kind == "ludex":
            self._ludex(payload, now)
        else:
            self._socketio(payload, now)

    def _ludex(self, payload: bytes, now: int) -> None:
        frame = json.loads(payload)
        kind = frame["type"]
        if kind == "bench":
            data = frame["data"]
            ok = frame["channel"] == self.channel and data["i"] == self.received + 1
            self.in_order = self.in_order and ok
            self._delivered(frame["seq"], data["t"], now)
        elif kind == "welcome":
            self.send_text(json.dumps({"op": "subscribe", "channel": self.channel}))
        elif kind == "snapshot":
            self.last = frame["seq"]
        elif kind == "ack" and not self.ready.done():
            self.ready.set_result(None)
        elif kind in ("error", "gap"):
            self._fail(f"{kind}: {frame['data']}")

    def _socketio(self, payload: bytes, now: int) -> None:
        if payload.startswith(b"42"):
            event, data = json.loads(payload[2:])
            if event == "m":
                self._delivered(data["i"], data["t"], now)
        elif payload == b"2":
            self.send_text("3")  # engine.io ping -> pong
        elif payload.startswith(b"40"):
            self.send_text("420" + json.dumps(["join", self.channel]))
        elif payload.startswith(b"0"):
            self.send_text("40")  # engine.io open -> connect the default namespace
        elif payload.startswith(b"430") and not self.ready.done():
            self.ready.set_result(None)
        elif payload.startswith(b"44"):
            self._fail(f"socket.io connect refused: {payload.decode(errors='replace')}")


async def _client_run(
    kind: Kind, port: int, channels: Sequence[str], expected: int, pipe: Pipe
) -> None:
    loop = asyncio.get_running_loop()
    tally = _Tally(len(channels))
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    started = time.perf_counter()

    async def open_one(channel: str) -> _Subscriber:
        async with gate:
            _, sub = await loop.create_connection(
                lambda: _Subscriber(kind, channel, expected, tally), "127.0.0.1", port
            )
            await asyncio.wait_for(sub.ready, 30)
            return sub

    try:
        subs = await asyncio.gather(*(open_one(ch) for ch in channels))
    except (OSError, TimeoutError) as exc:
        pipe.send(("failed", f"could not connect every subscriber: {exc!r}"))
        return
    # the sockets and protocols live to the end: keep the collector from walking them
    # while latency is being measured (a client artefact, not the server's)
    gc.collect()
    gc.freeze()
    pipe.send(("ready", time.perf_counter() - started))
    cpu_before = time.process_time()
    waited_since = time.monotonic()
    while not tally.finished.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.finished.wait(), 1.0)
        quiet = (time.time_ns() - tally.last_ns) / 1e9 if tally.last_ns else None
        if (quiet is not None and quiet > STALL_SECONDS) or (
            quiet is None and time.monotonic() - waited_since > START_SECONDS
        ):
            break
    cpu = time.process_time() - cpu_before
    latencies_us = (np.asarray(tally.latencies_ns, dtype=np.int64) // 1000).tobytes()
    errors = sorted({s.error for s in subs if s.error and s.received < expected})
    pipe.send(
        (
            "result",
            {
                "received": [s.received for s in subs],
                "in_order": [s.in_order for s in subs],
                "latencies_us": latencies_us,
                "first_ns": tally.first_ns,
                "last_ns": tally.last_ns,
                "cpu_s": cpu,
                "errors": errors[:5],
            },
        )
    )
    for sub in subs:
        if sub.transport is not None:
            sub.transport.abort()


def _clients(kind: Kind, port: int, channels: list[str], expected: int, pipe: Pipe) -> None:
    """Client process: many subscribers on one event loop (uvloop when installed)."""
    try:
        import uvloop

        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_client_run(kind, port, channels, expected, pipe))


# --- one run: a backend on a scenario ---------------------------------------------


async def _recv(pipe: Pipe, timeout: float, what: str) -> Any:
    ready = await asyncio.to_thread(pipe.poll, timeout)
    if not ready:
        raise TimeoutError(f"bench: no {what} within {timeout:g} s")
    return pipe.recv()


def _latency(samples_us: np.ndarray[Any, np.dtype[np.int64]]) -> dict[str, float | None]:
    if samples_us.size == 0:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "samples": 0}
    p50, p99 = np.percentile(samples_us, [50, 99])
    return {
        "p50_ms": round(float(p50) / 1000, 3),
        "p99_ms": round(float(p99) / 1000, 3),
        "max_ms": round(float(samples_us.max()) / 1000, 3),
        "samples": int(samples_us.size),
    }


async def run_one(kind: Kind, scenario: Scenario, client_processes: int) -> dict[str, Any]:
    """Serve ``kind``, subscribe ``scenario.subscribers`` sockets, publish, count."""
    import httpx

    ctx = multiprocessing.get_context("spawn")
    channels = scenario.channel_names()
    server_pipe, child_pipe = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(kind, child_pipe), daemon=True)
    server.start()
    clients: list[multiprocessing.process.BaseProcess] = []
    pipes: list[Pipe] = []
    try:
        port: int = await _recv(server_pipe, 30, f"port from the {kind} server")
        # subscriber k listens to channel k mod T; the subscribers go round-robin to the
        # client processes, so each process holds about as many sockets of every channel.
        assignment = [channels[k % len(channels)] for k in range(scenario.subscribers)]
        workers = max(1, min(client_processes, scenario.subscribers))
        for w in range(workers):
            mine, theirs = ctx.Pipe()
            share = assignment[w::workers]
            proc = ctx.Process(
                target=_clients, args=(kind, port, share, scenario.messages, theirs), daemon=True
            )
            proc.start()
            clients.append(proc)
            pipes.append(mine)
        connect_s = 0.0
        for pipe in pipes:
            status, value = await _recv(pipe, 180, "ready signal from a client process")
            if status != "ready":
                raise RuntimeError(value)
            connect_s = max(connect_s, value)
        base = f"http://127.0.0.1:{port}/bench"
        async with httpx.AsyncClient(timeout=httpx.Timeout(600.0)) as http:
            before = (await http.get(f"{base}/stats")).json()
            published = (
                await http.post(
                    f"{base}/publish", json={"channels": channels, "messages": scenario.messages}
                )
            ).json()
            results = []
            for pipe in pipes:
                status, value = await _recv(pipe, 600, "result from a client process")
                if status != "result":
                    raise RuntimeError(value)
                results.append(value)
            after = (await http.get(f"{base}/stats")).json()
    finally:
        every: list[multiprocessing.process.BaseProcess] = [*clients, server]
        for each in every:
            if each.is_alive():
                each.terminate()
        for each in every:
            await asyncio.to_thread(each.join, 10)
            if each.is_alive():
                each.kill()
    expected = scenario.subscribers * scenario.messages
    received = [n for r in results for n in r["received"]]
    in_order = [ok for r in results for ok in r["in_order"]]
    delivered = sum(received)
    complete = sum(
        1 for n, ok in zip(received, in_order, strict=True) if n == scenario.messages and ok
    )
    last_ns = max(r["last_ns"] for r in results)
    seconds = max(1e-9, (last_ns - published["started_ns"]) / 1e9)
    samples = np.concatenate([np.frombuffer(r["latencies_us"], dtype=np.int64) for r in results])
    server_cpu = after["cpu_s"] - before["cpu_s"]
    entry: dict[str, Any] = {
        "expected": expected,
        "delivered": delivered,
        "subscribers_complete_in_order": complete,
        "all_in_order": all(in_order),
        "delivered_per_s": per_second(delivered, seconds),
        "seconds": round(seconds, 3),
        "latency": _latency(samples),
        "publish_seconds": round((published["finished_ns"] - published["started_ns"]) / 1e9, 3),
        "publisher_pauses": published["pauses"],
        "connect_seconds": round(connect_s, 3),
        "client_processes": workers,
        "cpu_seconds": {
            "server": round(server_cpu, 3),
            "clients": round(sum(r["cpu_s"] for r in results), 3),
        },
        "server_cpu_us_per_delivery": round(server_cpu / max(1, delivered) * 1e6, 2),
    }
    if after.get("dropped") is not None:
        entry["slow_consumers_dropped"] = after["dropped"]
    errors = sorted({e for r in results for e in r["errors"]})
    if errors:
        entry["errors"] = errors[:5]
    if delivered != expected or not all(in_order):
        entry["failed"] = (
            f"{delivered} of {expected} deliveries, {complete} of {scenario.subscribers} "
            "subscribers complete and in order"
        )
    return entry


# --- the whole benchmark ---------------------------------------------------------


def raise_nofile(needed: int) -> dict[str, Any]:
    """Raise this process's soft RLIMIT_NOFILE to the hard limit when ``needed`` file
    descriptors would not fit (children inherit it); says what it did."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    report: dict[str, Any] = {"needed": needed, "soft": soft, "hard": hard, "raised": False}
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = max(needed, 65_536) if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        report.update(soft=target, raised=True, raised_from=soft)
    return report


async def action_to_broadcast(options: Options) -> dict[str, Any]:
    """Action-to-broadcast p50/p99 with ``bot_tables`` tables of bots (issue 7's third
    figure; :mod:`ludex.bench.bots`), one run per think time (``think_<ms>ms``); a
    ``{"failed": reason}`` in any makes the command exit 1. The goal is judged on the
    paced runs: with no think time every table always waits on the server, so that run
    gives the most actions per second, and its latency is the queue."""
    if options.bot_tables <= 0:
        return {"skipped": "--bot-tables 0"}
    from ludex.bench.bots import action_to_broadcast as measure

    runs: dict[str, Any] = {}
    for think_ms in options.bot_think_ms:
        progress(
            f"realtime: {options.bot_tables} tables of {options.bot_players} bots thinking "
            f"{think_ms:g} ms, {options.bot_seconds:g} s"
        )
        result = await measure(
            options.bot_tables, options.bot_players, options.bot_seconds, think_ms / 1000
        )
        p99 = result.get("action_to_broadcast_ms", {}).get("p99")
        if p99 is not None and think_ms > 0:
            result["goal_p99_ms"] = GOAL_ACTION_P99_MS
            result["meets_goal"] = p99 < GOAL_ACTION_P99_MS
        runs[f"think_{think_ms:g}ms"] = result
    failed = [f"{name}: {r['failed']}" for name, r in runs.items() if "failed" in r]
    return {**runs, "failed": "; ".join(failed)} if failed else runs


def _goals(ours: dict[str, Any], theirs: dict[str, Any] | None) -> dict[str, bool | None]:
    if "failed" in ours:
        return {"delivered_per_s": False, "p99_ms": False, "ahead_of_peer": False}
    ahead = None
    if theirs is not None and "delivered_per_s" in theirs and "failed" not in theirs:
        ahead = ours["delivered_per_s"] > theirs["delivered_per_s"]
    return {
        "delivered_per_s": ours["delivered_per_s"] >= GOALS["delivered_per_s"],
        "p99_ms": ours["latency"]["p99_ms"] < GOALS["p99_ms"],
        "ahead_of_peer": ahead,
    }


async def run(options: Options = Options()) -> dict[str, Any]:
    """The benchmark's JSON: per backend and scenario, and a comparison."""
    scenarios = options.scenarios()
    cpus = os.cpu_count() or 1
    client_processes = options.client_processes or max(1, min(8, cpus - 1))
    largest = max((s.subscribers for s in scenarios), default=0)
    # server: one socket per subscriber; the biggest client process about as many / n.
    limits = raise_nofile(largest + 256)
    kinds = [k for k in KINDS if options.peer or k == "ludex"]
    backends: dict[str, dict[str, Any]] = {k: {"scenarios": {}} for k in kinds}
    comparison: dict[str, Any] = {}
    for scenario in scenarios:
        for kind in kinds:
            progress(
                f"realtime {scenario.name}: {kind}, {scenario.subscribers} subscribers on "
                f"{scenario.channels} channel(s), {scenario.messages} messages each"
            )
            try:
                entry = await run_one(kind, scenario, client_processes)
            except Exception as exc:
                entry = {"failed": f"{type(exc).__name__}: {exc}"}
            entry = {
                "subscribers": scenario.subscribers,
                "channels": scenario.channels,
                "messages_per_channel": scenario.messages,
                **entry,
            }
            backends[kind]["scenarios"][scenario.name] = entry
            if "failed" in entry:
                backends[kind]["failed"] = f"{scenario.name}: {entry['failed']}"
                progress(f"realtime {scenario.name}: {kind} FAILED: {entry['failed']}")
            else:
                progress(
                    f"realtime {scenario.name}: {kind} {entry['delivered_per_s']} deliveries/s, "
                    f"p99 {entry['latency']['p99_ms']} ms"
                )
        ours = backends["ludex"]["scenarios"][scenario.name]
        theirs = backends.get("python-socketio", {}).get("scenarios", {}).get(scenario.name)
        row: dict[str, Any] = {"goals_met": _goals(ours, theirs)}
        if theirs and "failed" not in ours and "failed" not in theirs:
            row["ludex_over_socketio"] = round(
                ours["delivered_per_s"] / max(1e-9, theirs["delivered_per_s"]), 2
            )
        comparison[scenario.name] = row
    broadcast = await action_to_broadcast(options)
    if "failed" in broadcast:
        backends["ludex"]["failed"] = f"action_to_broadcast: {broadcast['failed']}"
    return header(
        "realtime",
        method=(
            "closed-loop publisher inside the server process, one message per channel per "
            "round; raw WebSocket clients in separate processes; latency = receive "
            "time_ns - send time_ns, at full load"
        ),
        note=(
            "peer: python-socketio AsyncServer (ASGI) under the same uvicorn, a room per "
            "channel, sio.emit('m', data, to=channel) from the same publisher loop, read by "
            "the same raw WebSocket clients (engine.io v4 over websocket, no polling)"
        ),
        goals=GOALS,
        high_water_frames=HIGH_WATER,
        client_processes=client_processes,
        file_descriptors=limits,
        backends=backends,
        comparison=comparison,
        action_to_broadcast=broadcast,
    )
