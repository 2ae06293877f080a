"""The authentication routes through the real app (embedded backends): SIWE sign-in,
refresh, logout, admin login, API keys, RBAC, the admin allow-list, rate limits and
the one error shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from ludex.composition import Container, open_container
from ludex.gateway.app import create_app
from ludex.gateway.auth import siwe_message
from tests.conftest import service_url
from tests.gateway.test_app import _settings

ADMIN_TOKEN = "an-admin-token-for-tests-only"


@pytest.fixture
async def container(tmp_path: Path) -> AsyncIterator[Container]:
    settings = _settings(
        tmp_path,
        service_url("anvil"),
        admin_token=ADMIN_TOKEN,
        auth_rate_capacity=1000,
    )
    async with open_container(settings) as opened:
        yield opened


def client_for(container: Container, host: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(container), client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
async def client(container: Container) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(container) as http:
        yield http


async def sign_in(client: httpx.AsyncClient, container: Container) -> tuple[str, dict[str, Any]]:
    wallet = Account.create()
    nonce = (await client.get("/v1/auth/nonce")).json()["nonce"]
    now = datetime.now(UTC).replace(microsecond=0)
    s = container.settings
    text = siwe_message(
        s.siwe_domain,
        wallet.address,
        f"http://{s.siwe_domain}/login",
        s.siwe_chain_id,
        nonce,
        now,
        now + timedelta(minutes=5),
    )
    signature = wallet.sign_message(encode_defunct(text=text)).signature.hex()
    answer = await client.post("/v1/auth/siwe", json={"message": text, "signature": signature})
    assert answer.status_code == 200, answer.text
    return wallet.address, answer.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_sign_in_refresh_and_logout(client: httpx.AsyncClient, container: Container) -> None:
    address, tokens = await sign_in(client, container)
    me = await client.get("/v1/me", headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json() == {"subject": address, "via": "jwt", "roles": ["player"], "scopes": []}

    renewed = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert renewed.status_code == 200
    again = await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert again.status_code == 401  # rotated: the old one is spent
    assert again.json()["error"]["code"] == "unauthorized"
    assert again.headers["www-authenticate"] == "Bearer"

    access = renewed.json()["access_token"]
    assert (await client.post("/v1/auth/logout", headers=bearer(access))).status_code == 204
    revoked = await client.get("/v1/me", headers=bearer(access))
    assert revoked.status_code == 401
    assert revoked.json()["error"]["code"] == "unauthorized"


async def test_tampered_missing_and_replayed_credentials_get_401(
    client: httpx.AsyncClient, container: Container
) -> None:
    _, tokens = await sign_in(client, container)
    token = tokens["access_token"]
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for headers in ({}, bearer(f"{head}.{payload}.{flipped}"), {"Authorization": "Basic x"}):
        answer = await client.get("/v1/me", headers=headers)
        assert answer.status_code == 401, headers
        assert set(answer.json()["error"]) >= {"code", "message"}
    nonce = (await client.get("/v1/auth/nonce")).json()["nonce"]
    bad = await client.post("/v1/auth/siwe", json={"message": f"nonce {nonce}", "signature": "0x"})
    assert bad.status_code == 401
    oversized = await client.post("/v1/auth/siwe", json={"message": "x" * 9000, "signature": "0x"})
    assert oversized.status_code == 422
    assert oversized.json()["error"]["code"] == "invalid_request"


async def test_admin_login_api_keys_and_roles(
    client: httpx.AsyncClient, container: Container
) -> None:
    refused = await client.post("/v1/auth/admin", json={"token": "wrong"})
    assert refused.status_code == 401
    admin = (await client.post("/v1/auth/admin", json={"token": ADMIN_TOKEN})).json()
    _, player = await sign_in(client, container)

    body = {"name": "reporting", "scopes": ["tables:read"]}
    forbidden = await client.post(
        "/v1/admin/api-keys", json=body, headers=bearer(player["access_token"])
    )
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "forbidden"

    created = await client.post(
        "/v1/admin/api-keys", json=body, headers=bearer(admin["access_token"])
    )
    assert created.status_code == 201
    key = created.json()
    me = await client.get("/v1/me", headers={"X-API-Key": key["secret"]})
    assert me.json()["via"] == "api_key"
    assert me.json()["scopes"] == ["tables:read"]

    gone = await client.delete(
        f"/v1/admin/api-keys/{key['key_id']}", headers=bearer(admin["access_token"])
    )
    assert gone.status_code == 204
    assert (await client.get("/v1/me", headers={"X-API-Key": key["secret"]})).status_code == 401
    again = await client.delete(
        f"/v1/admin/api-keys/{key['key_id']}", headers=bearer(admin["access_token"])
    )
    assert again.status_code == 404

    # The same admin token from outside the admin networks is refused before anything.
    async with client_for(container, host="203.0.113.9") as outside:
        away = await outside.post(
            "/v1/admin/api-keys", json=body, headers=bearer(admin["access_token"])
        )
        assert away.status_code == 403
        login = await outside.post("/v1/auth/admin", json={"token": ADMIN_TOKEN})
        assert login.status_code == 403


async def test_auth_routes_are_rate_limited_per_address(tmp_path: Path) -> None:
    settings = _settings(
        tmp_path, service_url("anvil"), auth_rate_capacity=3, auth_rate_per_second=0.01
    )
    async with open_container(settings) as container:
        async with client_for(container) as client:
            codes = [(await client.get("/v1/auth/nonce")).status_code for _ in range(4)]
            assert codes == [200, 200, 200, 429]
            limited = await client.get("/v1/auth/nonce")
            assert limited.json()["error"]["code"] == "rate_limited"
            assert int(limited.headers["retry-after"]) >= 1
        async with client_for(container, host="198.51.100.7") as other:
            assert (await other.get("/v1/auth/nonce")).status_code == 200  # its own bucket
