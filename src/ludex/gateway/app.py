"""The ASGI application: health, readiness, metrics, and the middleware every route shares.

Public routes (meant to be reachable without credentials): ``/healthz``, ``/readyz``
and ``/metrics`` (bind the port to a private interface in production). Every other
route added later is authenticated.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import structlog
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from ulid import ULID

from ludex import __version__
from ludex.errors import LudexError, PokerError
from ludex.events import catalog
from ludex.gateway.auth import AccessDenied, AuthError, AuthService
from ludex.gateway.auth_routes import create_auth_router
from ludex.ops import metrics
from ludex.ops.health import check_backends, report
from ludex.ops.logging import bind_ids
from ludex.realtime.ws import error_code

if TYPE_CHECKING:
    from ludex.composition import Container

log = structlog.get_logger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}


def error_body(code: str, message: str, request_id: str | None = None) -> dict[str, Any]:
    """The one JSON shape of every error answer."""
    body: dict[str, Any] = {"error": {"code": code, "message": message}}
    if request_id:
        body["error"]["request_id"] = request_id
    return body


class _TooLarge(StarletteHTTPException):
    """Raised while the body streams in; FastAPI passes HTTP exceptions to the handlers."""


class BodyLimit:
    """Refuse request bodies over ``max_bytes`` with 413, whether or not they declare a
    Content-Length (a chunked body is counted as it arrives)."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send, scope.get("state", {}).get("request_id"))
            return
        received = 0
        started = False

        async def counted() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(413, f"request bodies are limited to {self.max_bytes} bytes")
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:  # raised outside FastAPI's handlers (which answer it themselves)
            if not started:
                await self._refuse(send, scope.get("state", {}).get("request_id"))

    async def _refuse(self, send: Any, request_id: str | None) -> None:
        message = f"request bodies are limited to {self.max_bytes} bytes"
        body = json.dumps(error_body("payload_too_large", message, request_id)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def create_app(container: Container) -> FastAPI:
    app = FastAPI(
        title="ludex",
        version=__version__,
        description="Backend for real-time on-chain games.",
        docs_url="/docs",
        redoc_url=None,
    )
    app.state.container = container
    app.add_middleware(BodyLimit, max_bytes=container.settings.max_body_bytes)

    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        incoming = request.headers.get("x-request-id", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else str(ULID())
        request.state.request_id = request_id
        started = time.perf_counter()
        with bind_ids(request_id=request_id):
            response = await call_next(request)
            route = request.scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            metrics.HTTP_REQUESTS.labels(request.method, path, str(response.status_code)).inc()
            metrics.HTTP_LATENCY.labels(request.method, path).observe(elapsed)
            if path not in {"/healthz", "/metrics"}:
                log.info(
                    "http.request",
                    method=request.method,
                    path=path,
                    status=response.status_code,
                    ms=round(elapsed * 1000, 2),
                )
        response.headers["X-Request-ID"] = request_id
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            411: "length_required",
            413: "payload_too_large",
            429: "rate_limited",
        }.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail), getattr(request.state, "request_id", None)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            error_body("invalid_request", str(exc.errors()), request.state.request_id),
            status_code=422,
        )

    @app.exception_handler(LudexError)
    async def ludex_error(request: Request, exc: LudexError) -> JSONResponse:
        log.warning("http.ludex_error", error=type(exc).__name__, message=str(exc))
        return JSONResponse(
            error_body(type(exc).__name__, str(exc), request.state.request_id), status_code=400
        )

    @app.get("/healthz", tags=["ops"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/readyz", tags=["ops"], summary="Readiness: every backend and whether it answers")
    async def readyz() -> JSONResponse:
        body = report(await check_backends(container))
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    if container.settings.metrics_enabled:

        @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
        async def prometheus() -> Response:
            payload, content_type = metrics.render()
            return Response(payload, media_type=content_type)

    from ludex.wagering.api import create_router as wallet_router

    app.include_router(wallet_router(container.store, container.kv, container.settings))

    settings = container.settings
    auth = AuthService(
        container.kv,
        settings.jwt_secret.get_secret_value(),
        domain=settings.siwe_domain,
        chain_id=settings.siwe_chain_id,
        access_ttl=settings.access_token_seconds,
        refresh_ttl=settings.refresh_token_seconds,
    )
    app.state.auth = auth
    app.include_router(create_auth_router(auth, container.kv, settings))

    from ludex.gameserver.host import TableHost, TableUnavailable
    from ludex.gameserver.lobby import Lobby, NotFound
    from ludex.gameserver.relay import create_relay
    from ludex.gameserver.store import GameStore
    from ludex.gateway.tables_routes import create_tables_router, stream_commands
    from ludex.realtime.fanout import create_hub
    from ludex.realtime.ws import stream_endpoint

    host = TableHost(
        GameStore(container.store),
        container.kv,
        lease_seconds=settings.gameserver_lease_seconds,
        max_tables=settings.gameserver_max_tables,
    )
    realtime = create_hub(
        settings.cache_url,
        namespace=f"{settings.namespace}:ludex:rt:" if settings.namespace else "ludex:rt:",
        snapshot=host.snapshot,
    )
    host.hub = realtime.hub
    # Commands for tables dealt by another process go there over the same cache.
    relay = create_relay(
        settings.cache_url,
        host,
        namespace=f"{settings.namespace}:ludex:rt:" if settings.namespace else "ludex:rt:",
    )
    lobby = Lobby(host.games, host, relay)
    app.state.realtime, app.state.hub, app.state.host, app.state.lobby = (
        realtime,
        realtime.hub,
        host,
        lobby,
    )
    app.state.relay = relay
    app.include_router(create_tables_router(lobby, container.kv, settings))
    from ludex.gateway.graphql import create_graphql_router

    app.include_router(create_graphql_router(lobby, auth, realtime.hub, container.kv, settings))
    app.add_api_websocket_route(
        "/v1/stream",
        stream_endpoint(
            realtime.hub, auth, commands=stream_commands(lobby, container.kv, settings)
        ),
    )

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(
            error_body("not_found", str(exc), request.state.request_id), status_code=404
        )

    @app.exception_handler(TableUnavailable)
    async def unavailable(request: Request, exc: TableUnavailable) -> JSONResponse:
        return JSONResponse(
            error_body("table_unavailable", str(exc), request.state.request_id),
            status_code=503,
            headers={"Retry-After": "1"},
        )

    @app.exception_handler(PokerError)
    async def refused(request: Request, exc: PokerError) -> JSONResponse:
        return JSONResponse(
            error_body(error_code(exc), str(exc), request.state.request_id), status_code=409
        )

    @app.exception_handler(AuthError)
    async def unauthorized(request: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse(
            error_body("unauthorized", str(exc), request.state.request_id),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    @app.exception_handler(AccessDenied)
    async def forbidden(request: Request, exc: AccessDenied) -> JSONResponse:
        return JSONResponse(
            error_body("forbidden", str(exc), request.state.request_id), status_code=403
        )

    @app.get("/v1/events/catalog", tags=["events"], summary="Every event type and its schema")
    async def event_catalog() -> list[dict[str, Any]]:
        import msgspec

        return [
            {
                "type": spec.type,
                "version": spec.version,
                "topic": spec.topic,
                "description": spec.description,
                "schema": msgspec.json.schema(spec.payload),
            }
            for spec in catalog()
        ]

    return app
