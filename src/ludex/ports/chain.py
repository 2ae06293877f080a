"""ChainClient port: the few JSON-RPC calls the foundation needs; the indexer and
settlement issues grow it."""

from __future__ import annotations

from typing import Any, Protocol


class ChainClient(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def chain_id(self) -> int: ...

    async def block_number(self) -> int: ...

    async def call(self, method: str, params: list[Any]) -> Any:
        """One JSON-RPC call; errors become ChainError-derived LudexErrors."""
        ...
