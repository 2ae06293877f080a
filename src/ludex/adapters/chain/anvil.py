"""A local anvil node, started and stopped with ludex (the embedded chain default).

anvil comes from the npm package ``@foundry-rs/anvil`` (installed by ``make run``).
If a node already answers on the port, it is reused and left running on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import time
from pathlib import Path

import structlog

from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.errors import BackendUnavailable, ConfigError
from ludex.ports.chain import ChainClient

log = structlog.get_logger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (for a throw-away local node)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


async def set_balance(chain: ChainClient, address: str, wei: int) -> None:
    """Give ``address`` exactly ``wei`` of native coin (anvil's ``anvil_setBalance``)."""
    await chain.call("anvil_setBalance", [address, hex(wei)])


class AnvilChain(JsonRpcChain):
    """ChainClient backed by an anvil process this object owns."""

    def __init__(
        self,
        *,
        anvil_bin: str = "node_modules/.bin/anvil",
        port: int = 8545,
        chain_id: int = 31337,
        state_dir: Path | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        super().__init__(f"http://127.0.0.1:{port}")
        self.anvil_bin = anvil_bin
        self.port = port
        self.anvil_chain_id = chain_id
        self.state_dir = state_dir
        self.startup_timeout = startup_timeout
        self._process: asyncio.subprocess.Process | None = None

    def _binary(self) -> str:
        path = Path(self.anvil_bin)
        if path.exists():
            return str(path)
        found = shutil.which(self.anvil_bin) or shutil.which("anvil")
        if found:
            return found
        raise ConfigError(
            f"LUDEX_ANVIL_BIN: anvil not found at {self.anvil_bin!r}; run `make run` "
            "(it installs @foundry-rs/anvil with npm) or set LUDEX_CHAIN_URL to an RPC URL"
        )

    async def start(self) -> None:
        await super().start()
        with contextlib.suppress(BackendUnavailable):
            await self.chain_id()
            log.info("anvil.reused", port=self.port)
            return
        args = [
            self._binary(),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--chain-id",
            str(self.anvil_chain_id),
            "--silent",
        ]
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            args += ["--state", str(self.state_dir / "anvil-state.json")]
        self._process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.returncode is not None:
                err = b""
                if self._process.stderr is not None:
                    err = await self._process.stderr.read()
                raise BackendUnavailable(
                    f"anvil exited with code {self._process.returncode}: "
                    f"{err.decode(errors='replace').strip()[-500:]}"
                )
            try:
                await self.chain_id()
            except BackendUnavailable:
                await asyncio.sleep(0.1)
                continue
            log.info("anvil.started", port=self.port, pid=self._process.pid)
            return
        await self.close()
        raise BackendUnavailable(
            f"anvil did not answer on port {self.port} within {self.startup_timeout:.0f}s"
        )

    async def close(self) -> None:
        await super().close()
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
