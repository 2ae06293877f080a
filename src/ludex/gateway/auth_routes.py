"""The authentication routes of the gateway (``/v1/auth/*``, ``/v1/me``,
``/v1/admin/api-keys``) and the per-IP rate limit every one of them shares.

The rules live in :mod:`ludex.gateway.auth` (SIWE, tokens, API keys, roles); this module
only maps HTTP to them:

* ``GET /v1/auth/nonce`` - a one-time nonce for a Sign-In with Ethereum message;
* ``POST /v1/auth/siwe`` - the signed EIP-4361 message for an access and a refresh token;
* ``POST /v1/auth/refresh`` - a refresh token for a new pair (the old one stops working);
* ``POST /v1/auth/logout`` - revoke the calling access token;
* ``POST /v1/auth/admin`` - the operator's ``LUDEX_ADMIN_TOKEN`` for an admin access token
  (compared in constant time);
* ``GET /v1/me`` - who the caller is (any role or API key);
* ``POST /v1/admin/api-keys`` and ``DELETE /v1/admin/api-keys/{key_id}`` - API keys,
  for admins reaching the gateway from ``LUDEX_ADMIN_NETWORKS``.

Rate limit: a token bucket per client address on the KeyValue port (so it holds across
gateway processes); over it, 429 with ``Retry-After``.

No ``from __future__ import annotations`` here: FastAPI evaluates the route annotations,
which name dependencies local to :func:`create_auth_router`.
"""

import hmac
import math
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from ludex.config import Settings
from ludex.gateway.auth import AuthError, AuthService, IpAllowList, Principal, Tokens, require
from ludex.ports.kv import KeyValue, RateDecision

MAX_SIWE_MESSAGE = 8192
MAX_SIGNATURE = 200


class SiweRequest(BaseModel):
    message: str = Field(min_length=1, max_length=MAX_SIWE_MESSAGE)
    signature: str = Field(min_length=1, max_length=MAX_SIGNATURE)


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class AdminLoginRequest(BaseModel):
    token: str = Field(min_length=1, max_length=1024)


class ApiKeyRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    scopes: list[str] = Field(min_length=1, max_length=50)


def _tokens(tokens: Tokens) -> dict[str, Any]:
    return {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "token_type": tokens.token_type,
        "expires_in": tokens.expires_in,
    }


def refuse_if_limited(decision: RateDecision, who: str) -> None:
    """429 with ``Retry-After`` (whole seconds) when the token bucket said no."""
    if not decision.allowed:
        raise HTTPException(
            429,
            f"too many requests from {who}; retry in {decision.retry_after:.1f} s",
            headers={"Retry-After": str(max(1, math.ceil(decision.retry_after)))},
        )


def rate_limited(
    kv: KeyValue, name: str, capacity: int, per_second: float
) -> Callable[[Request], Awaitable[None]]:
    """A dependency: a token bucket per client address for the route group ``name``."""

    async def dependency(request: Request) -> None:
        host = request.client.host if request.client else "unknown"
        refuse_if_limited(await kv.rate_limit(f"rl:{name}:ip:{host}", capacity, per_second), host)

    return dependency


def create_auth_router(service: AuthService, kv: KeyValue, settings: Settings) -> APIRouter:
    limit = Depends(
        rate_limited(kv, "auth", settings.auth_rate_capacity, settings.auth_rate_per_second)
    )
    router = APIRouter(tags=["auth"], dependencies=[limit])
    admin_networks = IpAllowList(settings.admin_networks)
    any_caller = require(None)
    admin = require("admin", allow=admin_networks)

    @router.get("/v1/auth/nonce", summary="A one-time nonce for a SIWE message")
    async def nonce() -> dict[str, str]:
        return {"nonce": await service.new_nonce()}

    @router.post("/v1/auth/siwe", summary="Sign in with a signed EIP-4361 message")
    async def siwe(body: SiweRequest) -> dict[str, Any]:
        return _tokens(await service.sign_in(body.message, body.signature))

    @router.post("/v1/auth/refresh", summary="A new token pair for a refresh token")
    async def refresh(body: RefreshRequest) -> dict[str, Any]:
        return _tokens(await service.refresh(body.refresh_token))

    @router.post("/v1/auth/logout", status_code=204, summary="Revoke the calling access token")
    async def logout(principal: Annotated[Principal, Depends(any_caller)]) -> Response:
        if principal.via != "jwt":
            raise AuthError("logout revokes an access token; API keys are revoked by an admin")
        await service.revoke(principal.token_id, expires_at=principal.expires_at)
        return Response(status_code=204)

    @router.post("/v1/auth/admin", summary="Exchange the operator's admin token for an admin JWT")
    async def admin_login(body: AdminLoginRequest, request: Request) -> dict[str, Any]:
        host = request.client.host if request.client else None
        if not admin_networks.allows(host):
            raise HTTPException(403, "this route is not reachable from your address")
        expected = settings.admin_token
        if expected is None or not hmac.compare_digest(
            body.token.encode(), expected.get_secret_value().encode()
        ):
            raise AuthError("admin token refused")
        return _tokens(await service.issue_tokens("admin", ["admin"]))

    @router.get("/v1/me", summary="Who the caller is")
    async def me(principal: Annotated[Principal, Depends(any_caller)]) -> dict[str, Any]:
        return {
            "subject": principal.subject,
            "via": principal.via,
            "roles": sorted(principal.roles),
            "scopes": sorted(principal.scopes),
        }

    @router.post("/v1/admin/api-keys", status_code=201, summary="Create an API key (admin)")
    async def create_key(
        body: ApiKeyRequest, _admin: Annotated[Principal, Depends(admin)]
    ) -> dict[str, Any]:
        key = await service.create_api_key(body.name, body.scopes)
        return {
            "key_id": key.key_id,
            "name": key.name,
            "scopes": sorted(key.scopes),
            "secret": key.secret,
        }

    @router.delete(
        "/v1/admin/api-keys/{key_id}", status_code=204, summary="Revoke an API key (admin)"
    )
    async def revoke_key(key_id: str, _admin: Annotated[Principal, Depends(admin)]) -> Response:
        if not await service.revoke_api_key(key_id):
            raise HTTPException(404, f"no API key {key_id!r}")
        return Response(status_code=204)

    return router
