"""A demo producer for ``make run``: shows the whole event path working on one laptop.

Every few seconds it records a bet for a demo player through the transactional
outbox (operational store), so the relay publishes it to the bus and the analytics
sink writes it to ClickHouse; every summary interval it logs what analytics holds.
It never runs unless asked (``ludex run --demo`` or ``LUDEX_DEMO=true``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import TYPE_CHECKING

import structlog

from ludex.adapters.sql.outbox import add_to_outbox
from ludex.events import BetPlaced, GameFinalized, new_event

if TYPE_CHECKING:
    from ludex.composition import Container

log = structlog.get_logger(__name__)

SUMMARY_SQL = "SELECT type, count() AS events FROM events FINAL GROUP BY type ORDER BY type"


class DemoProducer:
    def __init__(
        self,
        container: Container,
        *,
        interval: float = 1.0,
        summary_every: float = 10.0,
        seed: int | None = None,
    ) -> None:
        self.container = container
        self.interval = interval
        self.summary_every = summary_every
        self._random = random.Random(seed)  # demo data only; never used for cards or keys
        self._round = 0

    async def produce_once(self) -> None:
        self._round += 1
        player = f"demo-player-{self._random.randint(1, 5)}"
        amount = self._random.randint(1, 100) * 100
        round_id = f"demo-round-{self._round}"
        bet = BetPlaced(
            player_id=player,
            provider="demo",
            game_id="demo-slots",
            round_id=round_id,
            transaction_id=f"demo-tx-{self._round}",
            amount=amount,
            currency="CHIPS",
            balance_after=1_000_000 - amount,
        )
        done = GameFinalized(
            provider="demo",
            game_id="demo-slots",
            round_id=round_id,
            player_id=player,
            total_bet=amount,
            total_win=0,
            currency="CHIPS",
        )
        async with self.container.store.transaction() as session:
            await add_to_outbox(
                session,
                new_event(bet, key=player, producer="demo"),
                new_event(done, key=player, producer="demo"),
            )

    async def summary(self) -> None:
        rows = await self.container.analytics.query(SUMMARY_SQL)
        log.info("demo.summary", analytics_events={r["type"]: int(r["events"]) for r in rows})

    async def run(self, stop: asyncio.Event) -> None:
        log.info("demo.started", interval=self.interval)
        loop = asyncio.get_running_loop()
        next_summary = loop.time() + self.summary_every
        while not stop.is_set():
            await self.produce_once()
            if loop.time() >= next_summary:
                await self.summary()
                next_summary = loop.time() + self.summary_every
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)


class DemoTables:
    """Live poker for ``make run``: a few tables of bots playing over the local gateway.

    Tables and chips are opened in-process (the operator's side); the bots themselves
    are real clients: they sign in with SIWE and play over ``/v1/stream``.
    """

    def __init__(self, container: Container, *, tables: int, players_per_table: int) -> None:
        self.container = container
        self.tables = tables
        self.players_per_table = players_per_table

    async def run(self, stop: asyncio.Event) -> None:
        import httpx

        from ludex.gameserver.bots import BotError, run_bots
        from ludex.gameserver.store import GameStore
        from ludex.gameserver.table import TableConfig, TableError

        games = GameStore(self.container.store)
        s = self.container.settings
        base = f"http://127.0.0.1:{s.http_port}"

        async def open_table(settings: dict[str, object]) -> None:
            import msgspec

            with contextlib.suppress(TableError):  # opened by an earlier run
                await games.create_table(msgspec.convert(settings, TableConfig))

        async def fund(address: str, amount: int) -> None:
            await games.credit("CHIPS", address, amount, f"demo-fund:{address}")

        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(200):  # the gateway starts alongside us
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/healthz")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
        while not stop.is_set():
            try:
                run = await run_bots(
                    base,
                    tables=self.tables,
                    players_per_table=self.players_per_table,
                    seconds=300.0,
                    open_table=open_table,
                    fund=fund,
                    siwe_domain=s.siwe_domain,
                    chain_id=s.siwe_chain_id,
                    table_prefix="demo",
                    stop=stop,
                )
                log.info("demo.tables", **run.summary())
            except BotError as exc:
                log.warning("demo.tables_failed", error=str(exc))
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(5):
                        await stop.wait()
