"""Fixtures the indexer tests share: a dedicated anvil, a client on it, an SQLite store
and an RpcSource with small batches (a module overrides one by defining its own)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.adapters.sql import SqlStore
from ludex.indexer.source import RpcSource
from tests.chain.vault_env import anvil_node
from tests.contract.sql_backends import started_store


@pytest.fixture
def node_url() -> Iterator[str]:
    with anvil_node() as url:
        yield url


@pytest.fixture
async def chain(node_url: str) -> AsyncIterator[JsonRpcChain]:
    client = JsonRpcChain(node_url)
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with started_store(f"sqlite:///{tmp_path}/index.db") as s:
        yield s


@pytest.fixture
async def source(node_url: str) -> AsyncIterator[RpcSource]:
    async with RpcSource([node_url], max_batch=7) as s:
        yield s
