"""Runs the gateway app under uvicorn inside ludex's own lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

import structlog
import uvicorn

from ludex.gateway.app import create_app
from ludex.realtime.transport import StreamProtocol

if TYPE_CHECKING:
    from ludex.composition import Container

log = structlog.get_logger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ludex's lifespan owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve_or_raise(self) -> None:
        try:
            await self.serve()
        except SystemExit:  # uvicorn exits the process when it cannot bind
            raise OSError(
                f"gateway could not listen on {self.config.host}:{self.config.port} "
                "(port in use? set LUDEX_HTTP_PORT)"
            ) from None


GC_THRESHOLDS: Final = (10_000, 50, 1_000)
"""Young collections every 10,000 net allocations (not 700), full ones rarely."""


def settle_gc() -> None:
    """Tune the collector for a long-lived server, once it has started.

    Everything built so far lives as long as the process: freezing it keeps every
    collection from walking it. A busy gateway allocates thousands of short-lived
    containers per second (frames, futures, rows) that reference counting frees
    anyway; with CPython's default thresholds (700, 10, 10) the collector ran several
    times a second and its full passes paused the loop for 50 to 150 ms, the largest
    part of the action-to-broadcast p99 with 200 tables of bots (``ludex bench
    realtime``). Fewer, larger young passes and rare full ones keep cycles collected
    (their memory lives a little longer) without those pauses.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class GatewayServer:
    def __init__(self, container: Container) -> None:
        self.container = container
        settings = container.settings
        self.app = create_app(container)
        self.config = uvicorn.Config(
            self.app,
            host=settings.http_host,
            port=settings.http_port,
            lifespan="off",  # backends are opened by ludex.composition, not by uvicorn
            log_config=None,
            access_log=False,
            server_header=False,
            limit_concurrency=10_000,
            ws=StreamProtocol,  # stream frames skip ASGI (ludex.realtime.transport)
            ws_per_message_deflate=settings.stream_compression,
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(self.config)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop``: the realtime hub (and its Redis fan-out), the command
        relay and, when ``LUDEX_GAMESERVER_ENABLED``, the table host start first and
        close last (the host before the relay: its tables' commands are served until
        it lets them go)."""
        state = self.app.state
        await state.realtime.start()
        try:
            await state.relay.start()
            if self.container.settings.gameserver_enabled:
                await state.host.start()
            settle_gc()
            try:
                await self._serve(stop)
            finally:
                await state.host.close()
        finally:
            await state.relay.close()  # never raises; a no-op if it did not start
            await state.realtime.close()

    async def _serve(self, stop: asyncio.Event) -> None:
        serving = asyncio.create_task(self.server.serve_or_raise())
        stopping = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if serving in done:
            stopping.cancel()
            serving.result()
            return
        self.server.should_exit = True
        await serving
