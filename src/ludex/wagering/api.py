"""HTTP edge of the wallet: ``POST /provider/v1/{balance,bet,win,rollback}`` and the admin
limits endpoints (``GET``/``PUT /admin/v1/limits``).

A provider request is read raw (the signature covers the exact bytes), its auth
headers checked (:mod:`ludex.wagering.signing`, then the provider's secret, the
window and the nonce through :class:`~ludex.wagering.service.WalletService`), its
body validated, and the wallet answers ``{"status": CODE, ...}``. Every request,
refused ones included, is then stored raw with its answer and timing in
``provider_requests``, in a transaction of its own (after the business
transaction, so a refused request is logged and changes nothing else).

The admin endpoints take ``Authorization: Bearer <LUDEX_ADMIN_TOKEN>`` (constant-time
comparison; 401 when missing, wrong, or when no token is configured). This is a
stop-gap: the gateway issue replaces it with JWT and roles.

This module must never log a request body or a secret, and never answer a provider
with anything but the documented response shape.
"""

from __future__ import annotations

import hmac
import time
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, SecretStr, ValidationError

from ludex.config import Settings
from ludex.errors import LudexError, WageringError
from ludex.ports.kv import KeyValue
from ludex.ports.store import OperationalStore
from ludex.wagering.models import (
    HTTP_STATUS,
    STATUS_DESCRIPTIONS,
    BalanceRequest,
    BetRequest,
    LimitChange,
    LimitView,
    RollbackRequest,
    Status,
    WalletResponse,
    WinRequest,
    refusal,
)
from ludex.wagering.service import WalletService
from ludex.wagering.signing import PROVIDER_HEADER, AuthFailure, parse_headers

log = structlog.get_logger(__name__)

_HIDDEN_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
MAX_BODY_BYTES: Final = 16 * 1024

_ENDPOINTS: Final[dict[str, tuple[type[BaseModel], str, str]]] = {
    "balance": (BalanceRequest, "Player balance", "The player's available balance."),
    "bet": (
        BetRequest,
        "Place a bet (debit)",
        "Debit `amount` from the player for a round. Idempotent by `transaction_id`.",
    ),
    "win": (
        WinRequest,
        "Settle a win (credit)",
        "Credit `amount` (0 for a lost round) to the player. Needs an open round with an "
        "accepted bet; `round_closed` (default true) settles the round.",
    ),
    "rollback": (
        RollbackRequest,
        "Roll back a bet",
        "Reverse a bet exactly once. A rollback of an unseen transaction id is acknowledged "
        "and that id is refused if it arrives later.",
    ),
}


def _responses() -> dict[int | str, dict[str, Any]]:
    by_http: dict[int, list[Status]] = {}
    for status in Status:
        by_http.setdefault(HTTP_STATUS.get(status, 200), []).append(status)
    return {
        code: {
            "model": WalletResponse,
            "description": "; ".join(f"`{s.value}`: {STATUS_DESCRIPTIONS[s]}" for s in statuses),
        }
        for code, statuses in sorted(by_http.items())
    }


def _signature_headers() -> list[dict[str, Any]]:
    return [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"}, **extra}
        for name, extra in (
            ("X-Ludex-Provider", {"description": "Your provider id."}),
            ("X-Ludex-Timestamp", {"description": "Unix seconds when signed."}),
            ("X-Ludex-Nonce", {"description": "8-128 chars [A-Za-z0-9._-], used once."}),
            (
                "X-Ludex-Signature",
                {
                    "description": 'hex HMAC-SHA256(secret, timestamp + "\\n" + nonce + "\\n" '
                    "+ raw body)"
                },
            ),
        )
    ]


def create_router(store: OperationalStore, kv: KeyValue, settings: Settings) -> APIRouter:
    """The provider and admin routes over a WalletService built from the ports."""
    service = WalletService(
        store,
        kv,
        timestamp_window=settings.provider_timestamp_window,
        cache_seconds=settings.wallet_cache_seconds,
        secrets_key=settings.secrets_key,
        producer=settings.service_name,
    )
    router = APIRouter()

    async def handle(request: Request, endpoint: str) -> Response:
        started = time.perf_counter()
        received_at = datetime.now(UTC)
        body = await request.body()
        headers = request.headers
        claimed = headers.get(PROVIDER_HEADER)
        response = await _answer(service, endpoint, headers, body)
        http_status = HTTP_STATUS.get(response.status, 200)
        content = response.to_json()
        duration_ms = (time.perf_counter() - started) * 1000
        try:
            await service.log_request(
                received_at=received_at,
                provider_id=claimed,
                endpoint=endpoint,
                headers={k: v for k, v in headers.items() if k.lower() not in _HIDDEN_HEADERS},
                body=body,
                http_status=http_status,
                status=response.status.value,
                response=content,
                duration_ms=duration_ms,
            )
        except LudexError as exc:
            # The answer stands (the business transaction is committed); the gap is logged.
            log.error("wallet.request_log_failed", endpoint=endpoint, error=str(exc))
        return Response(content=content, status_code=http_status, media_type="application/json")

    for endpoint, (model, summary, description) in _ENDPOINTS.items():
        router.add_api_route(
            f"/provider/v1/{endpoint}",
            _route(handle, endpoint),
            methods=["POST"],
            tags=["provider"],
            summary=summary,
            description=description + " See docs/provider-api.md.",
            response_model=WalletResponse,
            responses=_responses(),
            openapi_extra={
                "parameters": _signature_headers(),
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": model.model_json_schema()}},
                },
            },
            name=f"provider_{endpoint}",
        )

    admin_token: SecretStr | None = settings.admin_token

    def admin_refusal(request: Request) -> JSONResponse | None:
        from ludex.gateway.app import error_body

        given = request.headers.get("authorization", "")
        scheme, _, token = given.partition(" ")
        request_id = getattr(request.state, "request_id", None)
        if admin_token is None:
            return JSONResponse(
                error_body("unauthorized", "admin API disabled: set LUDEX_ADMIN_TOKEN", request_id),
                status_code=401,
            )
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.encode(), admin_token.get_secret_value().encode()
        ):
            return JSONResponse(
                error_body("unauthorized", "missing or wrong admin token", request_id),
                status_code=401,
            )
        return None

    @router.put(
        "/admin/v1/limits",
        tags=["admin"],
        summary="Set or remove a risk limit (audited)",
        description="`Authorization: Bearer <LUDEX_ADMIN_TOKEN>`. `value: null` removes the "
        "limit. Every change is written to the audit log with the old and new value.",
        responses={401: {"description": "missing or wrong admin token"}},
    )
    async def put_limit(change: LimitChange, request: Request) -> Any:
        refused = admin_refusal(request)
        if refused is not None:
            return refused
        try:
            old, new = await service.set_limit(change)
        except WageringError as exc:
            from ludex.gateway.app import error_body

            return JSONResponse(
                error_body("invalid_limit", str(exc), getattr(request.state, "request_id", None)),
                status_code=400,
            )
        return {
            "scope": change.scope,
            "key": change.key,
            "name": change.name,
            "old": old,
            "new": new,
        }

    @router.get(
        "/admin/v1/limits",
        tags=["admin"],
        summary="Every risk limit",
        response_model=list[LimitView],
        responses={401: {"description": "missing or wrong admin token"}},
    )
    async def get_limits(request: Request) -> Any:
        refused = admin_refusal(request)
        if refused is not None:
            return refused
        return [
            LimitView(scope=x.scope, key=x.key, name=x.name, value=x.value)
            for x in await service.list_limits()
        ]

    return router


def _route(handler: Any, endpoint: str) -> Any:
    async def route(request: Request) -> Response:
        response: Response = await handler(request, endpoint)
        return response

    route.__name__ = f"provider_{endpoint}"
    return route


async def _answer(
    service: WalletService, endpoint: str, headers: Any, body: bytes
) -> WalletResponse:
    try:
        if len(body) > MAX_BODY_BYTES:
            return refusal(Status.INVALID_REQUEST, f"body larger than {MAX_BODY_BYTES} bytes")
        auth = parse_headers(headers)
        if isinstance(auth, AuthFailure):
            return refusal(auth.status, auth.message)
        failure = await service.authenticate(auth, body)
        if failure is not None:
            return refusal(failure.status, failure.message)
        model = _ENDPOINTS[endpoint][0]
        try:
            parsed = model.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            return refusal(Status.INVALID_REQUEST, problems)
        if isinstance(parsed, BalanceRequest):
            return await service.balance(auth.provider, parsed)
        if isinstance(parsed, BetRequest):
            return await service.bet(auth.provider, parsed)
        if isinstance(parsed, WinRequest):
            return await service.win(auth.provider, parsed)
        assert isinstance(parsed, RollbackRequest)
        return await service.rollback(auth.provider, parsed)
    except LudexError as exc:
        log.error("wallet.failed", endpoint=endpoint, error=type(exc).__name__, message=str(exc))
        return refusal(Status.INTERNAL_ERROR, "the wallet failed; retry with the same ids")
