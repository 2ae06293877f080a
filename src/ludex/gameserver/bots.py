"""Bots: players that sign in with a wallet, buy in and play over the gateway's stream.

Each bot is a real client of the public API: a fresh key signs a Sign-In with Ethereum
message (``/v1/auth/nonce``, ``/v1/auth/siwe``), the bot opens ``/v1/stream`` with its
access token, subscribes to its table and its private channel, joins with a ``join``
command and answers every ``turn`` for its seat with an ``act`` command. The strategy is
simple and loose (check or bet small when free, call small bets, fold to big ones,
raise now and then), enough to give the demo and the benchmark live hands.

Tables and chips come from the operator: :class:`AdminApi` uses the admin routes (an
admin JWT from ``LUDEX_ADMIN_TOKEN``); the in-process demo passes its own functions.

Every bot measures action-to-broadcast: from sending ``act`` to receiving its own
action on the table channel. :func:`run_bots` counts only a window that opens once every
bot is seated, so sign-in and buy-in are not in the figures. A bot may think before it
acts (``think_seconds``, drawn uniformly from half to one and a half times that), as a
player does; with no think time every table is always waiting on the server and the
run measures the most actions the server takes, not its latency at a given load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx
import structlog
import websockets
from eth_account import Account
from eth_account.messages import encode_defunct
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from ludex.errors import LudexError
from ludex.gateway.auth import siwe_message

log = structlog.get_logger(__name__)

ACTED_OPS: Final = frozenset({"fold", "check", "call", "bet_raise"})
CONNECT_ATTEMPTS: Final = 4
# A loaded server may close a pooled keep-alive connection just as a bot reuses it, or
# drop a handshake; sign-in and the stream connect start again (a fresh nonce each time).
TRANSIENT: Final = (httpx.TransportError, OSError, websockets.InvalidHandshake, TimeoutError)

Fund = Callable[[str, int], Awaitable[None]]
OpenTable = Callable[[dict[str, Any]], Awaitable[None]]
CpuProbe = Callable[[], float]
SEATED_WITHIN_S: Final = 120.0


class BotError(LudexError):
    """A bot could not sign in, fund, join or keep its connection."""


@dataclass
class BotStats:
    actions: int = 0
    refused: int = 0
    hands_seen: set[str] = field(default_factory=set)
    latencies_ms: list[float] = field(default_factory=list)


class AdminApi:
    """Tables and chips through the gateway's admin routes."""

    def __init__(self, http: httpx.AsyncClient, admin_token: str) -> None:
        self.http = http
        self.admin_token = admin_token
        self._jwt: str | None = None

    async def _headers(self) -> dict[str, str]:
        if self._jwt is None:
            answer = await self.http.post("/v1/auth/admin", json={"token": self.admin_token})
            if answer.status_code != 200:
                raise BotError(f"admin sign-in refused ({answer.status_code}): {answer.text[:200]}")
            self._jwt = answer.json()["access_token"]
        return {"Authorization": f"Bearer {self._jwt}"}

    async def open_table(self, settings: dict[str, Any]) -> None:
        answer = await self.http.post("/v1/tables", json=settings, headers=await self._headers())
        if answer.status_code not in (201, 409):
            raise BotError(f"creating table refused ({answer.status_code}): {answer.text[:200]}")

    async def fund(self, address: str, amount: int) -> None:
        answer = await self.http.post(
            f"/v1/admin/players/{address}/credit",
            json={"amount": amount, "transfer_id": f"bot-fund:{address.lower()}"},
            headers=await self._headers(),
        )
        if answer.status_code != 200:
            raise BotError(f"funding {address} refused ({answer.status_code}): {answer.text[:200]}")


class Bot:
    """One player at one table; :meth:`run` plays until ``stop`` is set."""

    def __init__(
        self,
        base_url: str,
        http: httpx.AsyncClient,
        table_id: str,
        seat: int,
        buy_in: int,
        *,
        siwe_domain: str,
        chain_id: int,
        rng: random.Random,
        think_seconds: float = 0.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = http
        self.table_id = table_id
        self.seat = seat
        self.buy_in = buy_in
        self.siwe_domain = siwe_domain
        self.chain_id = chain_id
        self.rng = rng
        self.think_seconds = think_seconds
        self.seated = asyncio.Event()
        self.wallet = Account.create()
        self.address = self.wallet.address.lower()
        self.stats = BotStats()
        self._sent: dict[str, float] = {}
        self._refs = 0
        self._join_ref = -1
        self._sittings = 0
        self._thinking: asyncio.Task[None] | None = None

    def reset_stats(self) -> None:
        """Start counting afresh (the measured window opens)."""
        self.stats = BotStats()
        self._sent.clear()

    async def sign_in(self) -> str:
        nonce = (await self.http.get("/v1/auth/nonce")).json()["nonce"]
        now = datetime.now(UTC).replace(microsecond=0)
        text = siwe_message(
            self.siwe_domain,
            self.wallet.address,
            f"http://{self.siwe_domain}/login",
            self.chain_id,
            nonce,
            now,
            now + timedelta(minutes=5),
        )
        signature = self.wallet.sign_message(encode_defunct(text=text)).signature.hex()
        answer = await self.http.post(
            "/v1/auth/siwe", json={"message": text, "signature": signature}
        )
        if answer.status_code != 200:
            raise BotError(f"sign-in refused ({answer.status_code}): {answer.text[:200]}")
        token: str = answer.json()["access_token"]
        return token

    async def _connect(self) -> Any:
        """Sign in and open the stream, again from the start after a transport error."""
        ws_url = self.base_url.replace("http", "ws", 1) + "/v1/stream"
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(CONNECT_ATTEMPTS),
            wait=wait_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception_type(TRANSIENT),
            reraise=True,
        ):
            with attempt:
                token = await self.sign_in()
                ws = await websockets.connect(ws_url, max_size=2**20, open_timeout=30)
                await ws.send(json.dumps({"op": "hello", "token": token}))
                return ws
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def run(self, stop: asyncio.Event) -> BotStats:
        async with await self._connect() as ws:
            await ws.send(json.dumps({"op": "subscribe", "channel": f"player:{self.address}"}))
            await ws.send(json.dumps({"op": "subscribe", "channel": f"table:{self.table_id}"}))
            await self._join(ws)
            while not stop.is_set():
                try:
                    async with asyncio.timeout(0.5):
                        raw = await ws.recv()
                except TimeoutError:
                    continue
                await self._on_frame(ws, json.loads(raw))
            if self._thinking is not None:
                self._thinking.cancel()
            with contextlib.suppress(websockets.ConnectionClosed, TimeoutError):
                leave = await self._send(ws, {"op": "leave", "table": self.table_id})
                async with asyncio.timeout(5):
                    while True:
                        frame = json.loads(await ws.recv())
                        if frame["type"] in ("ack", "error") and frame["data"].get("ref") == leave:
                            break
        return self.stats

    async def _join(self, ws: Any) -> None:
        self._join_ref = await self._send(
            ws,
            {
                "op": "join",
                "table": self.table_id,
                "seat": self.seat,
                "buy_in": self.buy_in,
                "request_id": f"b{self.address[2:14]}-{self._sittings}",
            },
        )

    async def _send(self, ws: Any, frame: dict[str, Any]) -> int:
        self._refs += 1
        frame["ref"] = self._refs
        await ws.send(json.dumps(frame))
        return self._refs

    async def _on_frame(self, ws: Any, frame: dict[str, Any]) -> None:
        kind, data = frame["type"], frame["data"]
        if kind == "ack":
            if data.get("ref") == self._join_ref:
                self.seated.set()
            return
        if kind == "error":
            if data.get("ref") == self._join_ref and data.get("code") == "table_unavailable":
                await asyncio.sleep(0.2)  # the table is being taken by a host; ask again
                await self._join(ws)
                return
            self.stats.refused += 1
            log.debug("bot.refused", bot=self.address, error=data)
            return
        if kind == "snapshot" and isinstance(data, dict) and data.get("hand"):
            hand = data["hand"]
            if hand.get("actor_seat") == self.seat and hand.get("legal"):
                await self._act(ws, hand["hand_id"], hand["legal"])
            return
        if kind == "turn" and data.get("seat") == self.seat and data.get("legal"):
            await self._act(ws, data["hand_id"], data["legal"])
        elif kind == "action" and data.get("seat") == self.seat and data.get("op") in ACTED_OPS:
            sent = self._sent.pop(data["hand_id"], None)
            if sent is not None:
                self.stats.latencies_ms.append((time.perf_counter() - sent) * 1000)
        elif kind == "hand_started":
            self.stats.hands_seen.add(data["hand_id"])
        elif kind == "left" and data.get("player") == self.address and not data.get("cash_out"):
            self._sittings += 1  # went broke: buy in again
            await self._join(ws)

    async def _act(self, ws: Any, hand_id: str, legal: dict[str, Any]) -> None:
        if self.think_seconds > 0:
            delay = self.think_seconds * (0.5 + self.rng.random())
            self._thinking = asyncio.create_task(self._act_later(ws, delay, hand_id, legal))
        else:
            await self._send_act(ws, hand_id, legal)

    async def _act_later(self, ws: Any, delay: float, hand_id: str, legal: dict[str, Any]) -> None:
        await asyncio.sleep(delay)
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._send_act(ws, hand_id, legal)

    async def _send_act(self, ws: Any, hand_id: str, legal: dict[str, Any]) -> None:
        action, amount = decide(legal, self.rng)
        frame: dict[str, Any] = {
            "op": "act",
            "table": self.table_id,
            "action": action,
            "hand_id": hand_id,
        }
        if amount is not None:
            frame["amount"] = amount
        self._sent[hand_id] = time.perf_counter()
        self.stats.actions += 1
        await self._send(ws, frame)


def decide(legal: dict[str, Any], rng: random.Random) -> tuple[str, int | None]:
    """A loose, simple strategy from the legal actions of a ``turn`` message."""
    call, min_to, max_to = legal.get("call"), legal.get("min_to"), legal.get("max_to")
    roll = rng.random()
    if min_to is not None and roll < 0.15:
        return "bet_raise", min_to if roll < 0.13 or max_to is None else max_to
    if call:
        return ("fold", None) if roll > 0.8 else ("check_call", None)
    return "check_call", None


@dataclass
class BotRun:
    tables: int
    players_per_table: int
    bots: list[Bot]
    elapsed_s: float
    think_seconds: float = 0.0
    bots_cpu_s: float = 0.0
    server_cpu_s: float | None = None

    def summary(self) -> dict[str, Any]:
        latencies = sorted(ms for b in self.bots for ms in b.stats.latencies_ms)

        def pct(q: float) -> float | None:
            if not latencies:
                return None
            return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 3)

        hands = {h for b in self.bots for h in b.stats.hands_seen}
        actions = sum(b.stats.actions for b in self.bots)
        summary: dict[str, Any] = {
            "tables": self.tables,
            "players_per_table": self.players_per_table,
            "think_ms": round(self.think_seconds * 1000, 1),
            "seconds": round(self.elapsed_s, 2),
            "hands": len(hands),
            "actions": actions,
            "actions_per_s": round(actions / max(self.elapsed_s, 1e-9), 1),
            "refused": sum(b.stats.refused for b in self.bots),
            "action_to_broadcast_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
            "bots_cpu_s": round(self.bots_cpu_s, 3),
        }
        if self.server_cpu_s is not None:
            summary["server_cpu_s"] = round(self.server_cpu_s, 3)
            summary["server_cpu_ms_per_action"] = round(
                self.server_cpu_s * 1000 / max(actions, 1), 3
            )
        return summary


async def run_bots(
    base_url: str,
    *,
    tables: int,
    players_per_table: int,
    seconds: float,
    open_table: OpenTable,
    fund: Fund,
    siwe_domain: str,
    chain_id: int,
    table_prefix: str = "bots",
    buy_in: int = 200,
    seed: int | None = None,
    stop: asyncio.Event | None = None,
    think_seconds: float = 0.0,
    server_cpu: CpuProbe | None = None,
) -> BotRun:
    """Open ``tables`` tables, seat ``players_per_table`` bots at each, then count
    ``seconds`` of play from when every bot is seated; ``server_cpu`` reads the server's
    CPU seconds so far, for its share of the window."""
    if not 1 <= tables <= 10_000 or not 2 <= players_per_table <= 10:
        raise BotError("tables must be 1..10000 and players per table 2..10")
    if not 0 <= think_seconds <= 60:
        raise BotError("think time must be 0..60 s")
    rng = random.Random(seed)
    stop = stop or asyncio.Event()  # the caller's: ends the run early
    done = asyncio.Event()  # ours: the bots leave (a caller's loop may run us again)
    limits = httpx.Limits(max_connections=200)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as http:
        bots: list[Bot] = []
        for t in range(tables):
            table_id = f"{table_prefix}-{t + 1}"
            await open_table(
                {
                    "table_id": table_id,
                    "name": f"Bots {t + 1}",
                    "seat_count": max(players_per_table, 2),
                    "small_blind": 1,
                    "big_blind": 2,
                    "min_buy_in": 40,
                    "max_buy_in": buy_in,
                    "action_seconds": 10.0,
                    "next_hand_seconds": 0.5,
                }
            )
            for seat in range(players_per_table):
                bot = Bot(
                    base_url,
                    http,
                    table_id,
                    seat,
                    buy_in,
                    siwe_domain=siwe_domain,
                    chain_id=chain_id,
                    rng=random.Random(rng.random()),
                    think_seconds=think_seconds,
                )
                await fund(bot.address, buy_in * 50)
                bots.append(bot)
        tasks = [asyncio.create_task(b.run(done)) for b in bots]
        try:
            await _wait_seated(bots, tasks, stop)
            for bot in bots:
                bot.reset_stats()
            run = BotRun(tables, players_per_table, bots, 0.0, think_seconds)
            started, cpu = time.perf_counter(), time.process_time()
            server_started = server_cpu() if server_cpu else None
            timer = asyncio.create_task(asyncio.sleep(seconds))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait([timer, stopping, *tasks], return_when=asyncio.FIRST_COMPLETED)
            run.elapsed_s = time.perf_counter() - started
            run.bots_cpu_s = time.process_time() - cpu
            if server_cpu and server_started is not None:
                run.server_cpu_s = server_cpu() - server_started
            timer.cancel()
            stopping.cancel()
        finally:
            done.set()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise BotError(f"{len(failures)} bot(s) failed; first: {failures[0]!r}")
        return run


async def _wait_seated(
    bots: list[Bot], tasks: list[asyncio.Task[BotStats]], stop: asyncio.Event
) -> None:
    """Until every bot's join is answered; a bot that ended or a stop ends it early."""
    deadline = time.monotonic() + SEATED_WITHIN_S
    while not all(b.seated.is_set() for b in bots):
        if stop.is_set() or any(t.done() for t in tasks):
            return
        if time.monotonic() > deadline:
            waiting = sum(1 for b in bots if not b.seated.is_set())
            raise BotError(f"{waiting} bot(s) not seated within {SEATED_WITHIN_S:.0f} s")
        await asyncio.sleep(0.05)
