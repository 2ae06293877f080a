"""Runs the gateway app under uvicorn inside ludex's own lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING

import structlog
import uvicorn

from ludex.gateway.app import create_app

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
            ws_per_message_deflate=settings.stream_compression,
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(self.config)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop``: the realtime hub (and its Redis fan-out) and, when
        ``LUDEX_GAMESERVER_ENABLED``, the table host start first and close last."""
        state = self.app.state
        await state.realtime.start()
        try:
            if self.container.settings.gameserver_enabled:
                await state.host.start()
            # Everything built so far lives as long as the process: keep the collector
            # from walking it on every full collection (long pauses under fan-out load).
            gc.freeze()
            try:
                await self._serve(stop)
            finally:
                await state.host.close()
        finally:
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
