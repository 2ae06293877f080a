"""The composition root: build every port and service from ``Settings``.

``build`` only constructs objects (no I/O); ``open_container`` opens the backends in
one lifespan and closes them in reverse order, whatever happens. The CLI's ``run``
and ``serve`` commands are thin wrappers around ``run_services``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import structlog

from ludex.adapters.bus import create_bus
from ludex.adapters.chain import create_chain
from ludex.adapters.kv import create_key_value
from ludex.adapters.olap import create_analytics
from ludex.adapters.sql import create_store
from ludex.config import Settings
from ludex.ports.bus import EventBus
from ludex.ports.chain import ChainClient
from ludex.ports.kv import KeyValue
from ludex.ports.olap import AnalyticsStore
from ludex.ports.store import OperationalStore

log = structlog.get_logger(__name__)


@dataclass
class Container:
    """Every port, built from one Settings object."""

    settings: Settings
    store: OperationalStore
    analytics: AnalyticsStore
    bus: EventBus
    kv: KeyValue
    chain: ChainClient

    def ports(self) -> dict[str, object]:
        return {
            "store": self.store,
            "analytics": self.analytics,
            "bus": self.bus,
            "cache": self.kv,
            "chain": self.chain,
        }


def build(settings: Settings) -> Container:
    """Construct (but do not open) every backend chosen by the settings' URLs."""
    return Container(
        settings=settings,
        store=create_store(settings.store_url, pool_size=settings.store_pool_size),
        analytics=create_analytics(settings.analytics_url),
        bus=create_bus(
            settings.bus_url,
            partitions=settings.bus_partitions,
            namespace=settings.namespace,
        ),
        kv=create_key_value(
            settings.cache_url,
            namespace=f"{settings.namespace}:ludex:" if settings.namespace else "ludex:",
        ),
        chain=create_chain(
            settings.chain_url,
            anvil_bin=settings.anvil_bin,
            anvil_port=settings.anvil_port,
            state_dir=Path(settings.data_dir) / "anvil",
        ),
    )


@contextlib.asynccontextmanager
async def open_container(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Container]:
    """Open every backend (migrating the store), yield, then close all in reverse order."""
    container = build(settings)
    async with contextlib.AsyncExitStack() as stack:
        for name, start, close in (
            ("cache", container.kv.start, container.kv.close),
            ("store", container.store.start, container.store.close),
            ("analytics", container.analytics.start, container.analytics.close),
            ("bus", container.bus.start, container.bus.close),
            ("chain", container.chain.start, container.chain.close),
        ):
            await start()
            stack.push_async_callback(close)
            log.info("backend.opened", port=name, kind=settings.backends()[name])
        if migrate:
            await container.store.migrate()
        yield container


class Service(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


ServiceFactory = Callable[[Container], Service]


def _gateway(container: Container) -> Service:
    from ludex.gateway.server import GatewayServer

    return GatewayServer(container)


def _outbox_relay(container: Container) -> Service:
    from ludex.services.outbox_relay import OutboxRelay

    s = container.settings
    return OutboxRelay(
        container.store,
        container.bus,
        container.kv,
        batch_size=s.outbox_batch_size,
        poll_interval=s.outbox_poll_interval,
        lease_seconds=s.outbox_lease_seconds,
    )


def _analytics_sink(container: Container) -> Service:
    from ludex.services.analytics_sink import AnalyticsSink

    return AnalyticsSink(container.bus, container.analytics)


def _demo(container: Container) -> Service:
    from ludex.services.demo import DemoProducer

    s = container.settings
    return DemoProducer(container, interval=s.demo_interval, summary_every=s.demo_summary_every)


def _demo_tables(container: Container) -> Service:
    from ludex.services.demo import DemoTables

    s = container.settings
    return DemoTables(container, tables=s.demo_tables, players_per_table=s.demo_players_per_table)


def _deposit_watcher(container: Container) -> Service:
    from ludex.services.deposit_watcher import watcher_service

    return watcher_service(container.store, container.chain, container.settings)


def _settlement(container: Container) -> Service:
    from ludex.services.settlement import ConfiguredSettlement

    return ConfiguredSettlement(container)


def _indexer(container: Container) -> Service:
    from ludex.indexer.workers import indexer_service

    return indexer_service(container.store, container.kv, container.settings, container.analytics)


SERVICES: dict[str, ServiceFactory] = {
    "gateway": _gateway,
    "outbox-relay": _outbox_relay,
    "analytics-sink": _analytics_sink,
    "demo": _demo,
    "demo-tables": _demo_tables,
    "deposit-watcher": _deposit_watcher,
    "settlement": _settlement,
    "indexer": _indexer,
}
"""Every service ``ludex serve NAME`` can run alone; ``ludex run`` runs all but the demo
unless asked."""


async def run_services(
    settings: Settings,
    names: Sequence[str],
    *,
    stop: asyncio.Event | None = None,
    with_http: bool = True,
    on_ready: Callable[[Container], Awaitable[None]] | None = None,
) -> None:
    """Open the container, run the named services until ``stop`` or a signal, then close."""
    unknown = [n for n in names if n not in SERVICES]
    if unknown:
        raise ValueError(f"unknown service(s) {unknown}; choose from {sorted(SERVICES)}")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    selected = list(names)
    if with_http and "gateway" not in selected:
        selected.insert(0, "gateway")  # health and metrics for every process
    async with open_container(settings) as container:
        services = {name: SERVICES[name](container) for name in selected}
        if on_ready is not None:
            await on_ready(container)
        log.info("services.started", services=selected)
        try:
            async with asyncio.TaskGroup() as group:
                for name, service in services.items():
                    group.create_task(_supervised(name, service, stop), name=name)
        finally:
            log.info("services.stopped", services=selected)


async def _supervised(name: str, service: Service, stop: asyncio.Event) -> None:
    """Run one service; if it fails, log and stop the others (the process exits non-zero)."""
    try:
        await service.run(stop)
    except Exception:
        log.exception("service.failed", service=name)
        stop.set()
        raise
