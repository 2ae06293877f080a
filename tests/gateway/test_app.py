"""The gateway's ops routes against real embedded backends (and anvil)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from ludex.composition import Container, open_container
from ludex.config import Settings, load_settings
from ludex.gateway.app import SECURITY_HEADERS, create_app
from tests.conftest import service_url


def _settings(tmp_path: Path, chain_url: str, **extra: object) -> Settings:
    return load_settings(
        store_url=f"sqlite:///{tmp_path}/ludex.db",
        analytics_url=f"chdb://{tmp_path}/olap",
        bus_url="memory://",
        cache_url="memory://",
        chain_url=chain_url,
        data_dir=str(tmp_path),
        **extra,
    )


@pytest.fixture
async def container(tmp_path: Path) -> AsyncIterator[Container]:
    settings = _settings(tmp_path, service_url("anvil"))
    async with open_container(settings) as opened:
        yield opened


@pytest.fixture
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(container))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_readyz_reports_every_backend_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["ready"] is True
    assert {name: b["kind"] for name, b in body["backends"].items()} == {
        "store": "sqlite",
        "analytics": "chdb",
        "bus": "memory",
        "cache": "memory",
        "chain": "http",
    }
    assert all(b["ready"] and b["error"] is None for b in body["backends"].values())


async def test_readyz_names_the_backend_that_is_down(tmp_path: Path) -> None:
    settings = _settings(tmp_path, "http://127.0.0.1:1")
    async with open_container(settings) as opened:
        transport = httpx.ASGITransport(app=create_app(opened))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            response = await http.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["ready"] is False
    assert body["backends"]["chain"]["ready"] is False
    assert "unreachable" in body["backends"]["chain"]["error"]
    assert body["backends"]["store"]["ready"] is True


async def test_request_ids_and_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value
    for bad in ("x" * 65, "a b", "<script>", ""):
        answer = await client.get("/healthz", headers={"X-Request-ID": bad})
        assert len(answer.headers["X-Request-ID"]) == 26  # replaced by a fresh ULID


async def test_errors_have_one_json_shape(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert error["request_id"] == response.headers["X-Request-ID"]


async def test_metrics_count_requests(client: httpx.AsyncClient) -> None:
    await client.get("/healthz")
    text = (await client.get("/metrics")).text
    assert 'ludex_http_requests_total{method="GET",route="/healthz",status="200"}' in text


async def test_catalog_lists_schemas(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/events/catalog")).json()
    bet = next(e for e in body if e["type"] == "wallet.bet_placed")
    assert bet["topic"] == "ludex.wallet"
    assert "amount" in bet["schema"]["$defs"]["BetPlaced"]["properties"]
