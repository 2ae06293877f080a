"""Chain adapters: JSON-RPC over HTTP, and a local anvil node started for the embedded default."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from ludex.errors import ConfigError
from ludex.ports.chain import ChainClient


def create_chain(
    url: str,
    *,
    anvil_bin: str = "node_modules/.bin/anvil",
    anvil_port: int = 8545,
    state_dir: Path | None = None,
) -> ChainClient:
    """A chain client for ``url``: ``anvil://`` starts a local node, ``http(s)://`` connects."""
    scheme = urlsplit(url).scheme
    if scheme == "anvil":
        from ludex.adapters.chain.anvil import AnvilChain

        return AnvilChain(anvil_bin=anvil_bin, port=anvil_port, state_dir=state_dir)
    if scheme in {"http", "https"}:
        from ludex.adapters.chain.jsonrpc import JsonRpcChain

        return JsonRpcChain(url)
    raise ConfigError(f"chain URL {url!r} is not accepted; use anvil:// or http(s)://HOST:PORT")
