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
