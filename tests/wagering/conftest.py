"""A wallet on a real store (SQLite, PostgreSQL, MySQL), served by the gateway app.

``wallet`` gives a :class:`Harness`: the FastAPI app of ``ludex.gateway.app`` over a
started, migrated SqlStore in a fresh database, an in-memory KeyValue and bus, one
registered provider (``studio``, with its secret) and helpers that sign requests
the way a provider must.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from ludex import ledger
from ludex.adapters.kv import create_key_value
from ludex.adapters.sql import SqlStore
from ludex.adapters.sql.tables import outbox, provider_requests, provider_transactions
from ludex.composition import build
from ludex.config import Settings, load_settings
from ludex.gateway.app import create_app
from ludex.ports.kv import KeyValue
from ludex.wagering.service import WalletService, player_account, provider_account
from ludex.wagering.signing import sign
from tests.contract.sql_backends import BACKENDS, fresh_database, started_store

ADMIN_TOKEN = "admin-token-for-tests-0123456789"


@dataclass
class Harness:
    store: SqlStore
    kv: KeyValue
    settings: Settings
    service: WalletService
    client: httpx.AsyncClient
    provider: str
    secret: str

    async def add_player(self, balance: int = 1000, player_id: str | None = None) -> str:
        player_id = player_id or f"p-{uuid.uuid4().hex[:10]}"
        await self.service.add_player(player_id, balance=balance, actor="test")
        return player_id

    def signed_headers(
        self,
        body: bytes,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        nonce: str | None = None,
        provider: str | None = None,
    ) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        nonce = nonce or uuid.uuid4().hex
        return {
            "Content-Type": "application/json",
            "X-Ludex-Provider": provider or self.provider,
            "X-Ludex-Timestamp": ts,
            "X-Ludex-Nonce": nonce,
            "X-Ludex-Signature": sign(secret or self.secret, ts, nonce, body),
        }

    async def raw(self, endpoint: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post(f"/provider/v1/{endpoint}", content=body, headers=headers)

    async def call(
        self, endpoint: str, payload: dict[str, Any], **sign_args: Any
    ) -> dict[str, Any]:
        body = json.dumps(payload).encode()
        response = await self.raw(endpoint, body, self.signed_headers(body, **sign_args))
        data: dict[str, Any] = response.json()
        data["_http"] = response.status_code
        return data

    async def bet(
        self, player: str, amount: int, tx: str, round_id: str = "r1", game: str = "slots"
    ) -> dict[str, Any]:
        return await self.call(
            "bet",
            {
                "player_id": player,
                "game_id": game,
                "round_id": round_id,
                "transaction_id": tx,
                "amount": amount,
                "currency": "CHIPS",
            },
        )

    async def win(
        self,
        player: str,
        amount: int,
        tx: str,
        round_id: str = "r1",
        game: str = "slots",
        **extra: Any,
    ) -> dict[str, Any]:
        return await self.call(
            "win",
            {
                "player_id": player,
                "game_id": game,
                "round_id": round_id,
                "transaction_id": tx,
                "amount": amount,
                "currency": "CHIPS",
                **extra,
            },
        )

    async def rollback(self, player: str, tx: str, target: str, **extra: Any) -> dict[str, Any]:
        return await self.call(
            "rollback",
            {
                "player_id": player,
                "transaction_id": tx,
                "rolled_back_transaction_id": target,
                **extra,
            },
        )

    async def balance(self, player: str) -> int:
        async with self.store.transaction() as session:
            return (await ledger.balance(session, player_account(player))).balance

    async def float_balance(self) -> int:
        async with self.store.transaction() as session:
            return (await ledger.balance(session, provider_account(self.provider))).balance

    async def count(self, table: Any) -> int:
        async with self.store.transaction() as session:
            return int(await session.scalar(select(func.count()).select_from(table)) or 0)

    async def snapshot(self, *players: str) -> tuple[Any, ...]:
        """Everything a refused request must leave unchanged."""
        return (
            tuple([await self.balance(p) for p in players]),
            await self.float_balance(),
            await self.count(provider_transactions),
            await self.count(outbox),
        )

    async def logged(self) -> int:
        return await self.count(provider_requests)


def wallet_settings(url: str, **extra: Any) -> Settings:
    return load_settings(
        store_url=url,
        analytics_url="chdb://:memory:",
        bus_url="memory://",
        cache_url="memory://",
        chain_url="http://127.0.0.1:9",
        wallet_cache_seconds=0,
        admin_token=ADMIN_TOKEN,
        **extra,
    )


@asynccontextmanager
async def open_harness(url: str) -> AsyncIterator[Harness]:
    settings = wallet_settings(url)
    async with started_store(url) as store:
        kv = create_key_value("memory://")
        await kv.start()
        container = replace(build(settings), store=store, kv=kv)
        app = create_app(container)
        service = WalletService(store, kv, cache_seconds=0, producer="test")
        secret = await service.add_provider("studio", "Studio", actor="test")
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield Harness(store, kv, settings, service, client, "studio", secret)
        finally:
            await kv.close()


@pytest.fixture(params=BACKENDS)
async def wallet(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    async with fresh_database(request.param, tmp_path) as url, open_harness(url) as harness:
        yield harness
