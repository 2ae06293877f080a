"""A minimal asynchronous Ethereum JSON-RPC client over HTTP (httpx).

Validates every answer at the edge: a response must carry our request id and
exactly one of ``result`` or ``error``; quantities must be 0x-hex. Anything else
becomes a :class:`~ludex.errors.ChainError`. Never logs the URL's credentials.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx

from ludex.config import redact_url
from ludex.errors import BackendUnavailable, ChainError, ChainRpcError


def parse_quantity(value: Any, what: str) -> int:
    """An Ethereum QUANTITY (0x-prefixed hex, no leading zeros required) as an int."""
    if not isinstance(value, str) or not value.startswith("0x") or len(value) < 3:
        raise ChainError(f"{what}: expected a 0x-hex quantity, got {value!r}")
    try:
        return int(value, 16)
    except ValueError:
        raise ChainError(f"{what}: expected a 0x-hex quantity, got {value!r}") from None


class JsonRpcChain:
    """ChainClient over HTTP JSON-RPC."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self._timeout = timeout
        self._ids = itertools.count(1)
        self._client: httpx.AsyncClient | None = None

    @property
    def display_url(self) -> str:
        return redact_url(self.url)

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def call(self, method: str, params: list[Any]) -> Any:
        if self._client is None:
            await self.start()
        assert self._client is not None
        request_id = next(self._ids)
        body = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        try:
            response = await self._client.post(self.url, json=body)
        except httpx.TransportError as exc:
            raise BackendUnavailable(
                f"chain node {self.display_url} unreachable ({method}): {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise ChainError(
                f"{method}: node {self.display_url} answered HTTP {response.status_code}"
            )
        try:
            answer = response.json()
        except ValueError:
            raise ChainError(f"{method}: node answered something that is not JSON") from None
        if not isinstance(answer, dict) or answer.get("id") != request_id:
            raise ChainError(f"{method}: answer does not match request id {request_id}")
        if "error" in answer:
            err = answer["error"]
            if isinstance(err, dict):
                code = err.get("code")
                data = err.get("data")
                raise ChainRpcError(
                    f"{method}: node error: {err.get('message')}",
                    code=code if isinstance(code, int) else None,
                    data=data if isinstance(data, str) else None,
                )
            raise ChainRpcError(f"{method}: node error: {err}")
        if "result" not in answer:
            raise ChainError(f"{method}: answer has neither result nor error")
        return answer["result"]

    async def chain_id(self) -> int:
        return parse_quantity(await self.call("eth_chainId", []), "eth_chainId")

    async def block_number(self) -> int:
        return parse_quantity(await self.call("eth_blockNumber", []), "eth_blockNumber")

    async def ping(self) -> None:
        await self.chain_id()
