"""The composition root on production backends: the same outbox → bus → analytics path
the demo shows on embedded defaults, here through PostgreSQL or MariaDB, Kafka and Redis."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest

from ludex.composition import SERVICES, build, open_container
from ludex.config import load_settings
from ludex.ops.health import check_backends
from ludex.services.analytics_sink import AnalyticsSink
from ludex.services.demo import DemoProducer
from ludex.services.outbox_relay import OutboxRelay
from tests.conftest import service_url
from tests.contract.sql_backends import fresh_database


@pytest.mark.parametrize("store", ["postgres", "mysql"])
async def test_events_flow_through_production_backends(store: str, tmp_path: Path) -> None:
    async with fresh_database(store, tmp_path) as store_url:
        settings = load_settings(
            store_url=store_url,
            analytics_url=f"chdb://{tmp_path}/olap",
            bus_url=service_url("kafka"),
            namespace=f"t-{uuid.uuid4().hex[:8]}",
            cache_url=service_url("redis"),
            chain_url=service_url("anvil"),
        )
        async with open_container(settings) as container:
            health = {h.port: h for h in await check_backends(container, timeout=10)}
            assert all(h.ready for h in health.values()), health
            assert {p: h.kind for p, h in health.items()} == {
                "store": "postgresql" if store == "postgres" else "mysql",
                "analytics": "chdb",
                "bus": "kafka",
                "cache": "redis",
                "chain": "http",
            }
            demo = DemoProducer(container, seed=7)
            for _ in range(3):
                await demo.produce_once()
            relay = SERVICES["outbox-relay"](container)
            sink = SERVICES["analytics-sink"](container)
            assert isinstance(relay, OutboxRelay)
            assert isinstance(sink, AnalyticsSink)
            assert await relay.run_once() == 6
            written = 0
            async with asyncio.timeout(60):
                while written < 6:
                    written += await sink.run_once()
            rows = await container.analytics.query(
                "SELECT type, count() AS n FROM events FINAL GROUP BY type ORDER BY type"
            )
            assert {r["type"]: int(r["n"]) for r in rows} == {
                "game.finalized": 3,
                "wallet.bet_placed": 3,
            }
            await sink.close()


def test_build_opens_nothing() -> None:
    """Building the container must not connect anywhere (nothing listens on port 1)."""
    container = build(
        load_settings(
            store_url="postgresql://u:p@127.0.0.1:1/x",
            bus_url="kafka://127.0.0.1:1",
            cache_url="redis://127.0.0.1:1/0",
            chain_url="http://127.0.0.1:1",
        )
    )
    assert set(container.ports()) == {"store", "analytics", "bus", "cache", "chain"}
