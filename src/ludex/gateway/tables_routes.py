"""The poker REST routes: tables (list, view, create as admin, join, leave, sit out and
in, act), hand histories (record, PHH download, replay) and balances.

* Public: ``GET /v1/tables`` and ``GET /v1/tables/{id}`` (the lobby and a table's public
  view; the same as the ``table:ID`` channel's snapshot).
* Any valid token or API key with ``hands:read``: finished hands (their records reveal
  the seed, hence every card, by design of the provably fair shuffle).
* Players (bearer JWT from SIWE): join, leave, sit out, sit in, act, their own cards
  and balance. Admins: create and close tables, credit a player.

Every authenticated route shares a token bucket per caller (player, API key or admin)
on the KeyValue port; over it, 429 with ``Retry-After``. Errors use the gateway's one
JSON shape; a table dealt by no process right now answers 503 with ``Retry-After``.

No ``from __future__ import annotations``: FastAPI evaluates the route annotations.
"""

import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response
from pydantic import BaseModel, Field

from ludex.config import Settings
from ludex.gameserver.host import Command
from ludex.gameserver.lobby import Lobby
from ludex.gameserver.store import HandRow
from ludex.gameserver.table import TableConfig, TableError
from ludex.gateway.auth import IpAllowList, Principal, require
from ludex.gateway.auth_routes import refuse_if_limited
from ludex.ports.kv import KeyValue

TABLE_ID = r"^[A-Za-z0-9._-]{1,32}$"
HAND_ID = r"^[0-9A-Z]{26}$"
ADDRESS = r"^0x[0-9a-fA-F]{40}$"
REQUEST_ID = r"^[A-Za-z0-9_-]{1,20}$"

TableId = Annotated[str, Path(pattern=TABLE_ID, description="1 to 32 of A-Z a-z 0-9 . _ -")]
HandId = Annotated[str, Path(pattern=HAND_ID, description="a ULID")]
Address = Annotated[str, Path(pattern=ADDRESS)]


class CreateTable(BaseModel):
    table_id: str = Field(pattern=TABLE_ID)
    name: str = Field(default="", max_length=100)
    variant: Literal["NT", "PO"] = "NT"
    small_blind: int = Field(default=1, ge=0, le=10**12)
    big_blind: int = Field(default=2, ge=1, le=10**12)
    ante: int = Field(default=0, ge=0, le=10**12)
    seat_count: int = Field(default=6, ge=2, le=10)
    rake_basis_points: int = Field(default=0, ge=0, le=10_000)
    rake_cap: int | None = Field(default=None, ge=0, le=10**12)
    currency: str = Field(default="CHIPS", max_length=70)
    min_buy_in: int = Field(default=40, ge=1, le=10**15)
    max_buy_in: int = Field(default=200, ge=1, le=10**15)
    action_seconds: float = Field(default=15.0, gt=0, le=3600)
    time_bank_seconds: float = Field(default=30.0, ge=0, le=3600)
    time_bank_refill_seconds: float = Field(default=5.0, ge=0, le=3600)
    next_hand_seconds: float = Field(default=2.0, ge=0, le=600)


class Join(BaseModel):
    seat: int = Field(ge=0, le=9)
    buy_in: int = Field(ge=1, le=10**15)
    request_id: str = Field(
        pattern=REQUEST_ID, description="Yours, unique per sitting: a retry with it is safe"
    )


class Act(BaseModel):
    action: Literal["fold", "check", "call", "bet", "raise", "check_call", "bet_raise"]
    amount: int | None = Field(default=None, ge=0, le=10**15)
    hand_id: str | None = Field(default=None, pattern=HAND_ID)


class Credit(BaseModel):
    amount: int = Field(ge=1, le=10**15)
    currency: str = Field(default="CHIPS", max_length=70)
    transfer_id: str = Field(pattern=r"^[\x21-\x7e]{1,64}$")


def caller_limited(
    kv: KeyValue, capacity: int, per_second: float
) -> Callable[[Principal], Awaitable[Principal]]:
    """Wrap an auth dependency's principal with a token bucket per caller."""

    async def limit(principal: Principal) -> Principal:
        who = (
            f"{principal.via}:{principal.subject if principal.via == 'jwt' else principal.token_id}"
        )
        refuse_if_limited(await kv.rate_limit(f"rl:api:{who}", capacity, per_second), "you")
        return principal

    return limit


def _hand(row: HandRow) -> dict[str, Any]:
    return {
        "hand_id": row.hand_id,
        "table_id": row.table_id,
        "number": row.number,
        "deltas": row.deltas,
        "rake": row.rake,
        "completed_at": row.completed_at.isoformat(),
        "record": row.record,
    }


def create_tables_router(lobby: Lobby, kv: KeyValue, settings: Settings) -> APIRouter:
    router = APIRouter(tags=["poker"])
    limit = caller_limited(kv, settings.api_rate_capacity, settings.api_rate_per_second)
    admin_networks = IpAllowList(settings.admin_networks)
    player_auth = require("player")
    admin_auth = require("admin", allow=admin_networks)
    reader_auth = require(None)

    async def player(principal: Annotated[Principal, Depends(player_auth)]) -> str:
        return (await limit(principal)).subject.lower()

    async def admin(principal: Annotated[Principal, Depends(admin_auth)]) -> Principal:
        return await limit(principal)

    async def reader(principal: Annotated[Principal, Depends(reader_auth)]) -> Principal:
        if principal.via == "api_key" and "hands:read" not in principal.scopes:
            raise HTTPException(403, "this API key lacks the hands:read scope")
        return await limit(principal)

    Player = Annotated[str, Depends(player)]
    Admin = Annotated[Principal, Depends(admin)]
    Reader = Annotated[Principal, Depends(reader)]

    @router.get("/v1/tables", summary="Open tables (public)")
    async def tables() -> list[dict[str, Any]]:
        return await lobby.tables()

    @router.get("/v1/tables/{table_id}", summary="A table's public view (public)")
    async def table(table_id: TableId) -> dict[str, Any]:
        return await lobby.table(table_id)

    @router.get(
        "/v1/tables/{table_id}/presence", summary="Who watches a table through this process"
    )
    async def presence(table_id: TableId) -> dict[str, Any]:
        hub = lobby.host.hub
        if hub is None:
            return {"players": [], "spectators": 0}
        seen = hub.presence(f"table:{table_id}")
        return {"players": sorted(seen.players), "spectators": seen.spectators}

    @router.post("/v1/tables", status_code=201, summary="Open a table (admin)")
    async def create(body: CreateTable, _admin: Admin) -> dict[str, Any]:
        try:
            config = msgspec.convert(body.model_dump(), TableConfig)
        except msgspec.ValidationError as exc:
            raise TableError(f"table settings refused: {exc}") from None
        return await lobby.create_table(config)

    @router.post("/v1/tables/{table_id}/close", status_code=204, summary="Close a table (admin)")
    async def close(table_id: TableId, _admin: Admin) -> Response:
        await lobby.close_table(table_id)
        return Response(status_code=204)

    @router.post("/v1/tables/{table_id}/join", summary="Buy in and take a seat")
    async def join(table_id: TableId, body: Join, me: Player) -> dict[str, Any]:
        return await lobby.command(
            table_id,
            Command("join", me, seat=body.seat, amount=body.buy_in, request_id=body.request_id),
        )

    @router.post("/v1/tables/{table_id}/leave", summary="Cash out (now, or when the hand ends)")
    async def leave(table_id: TableId, me: Player) -> dict[str, Any]:
        return await lobby.command(table_id, Command("leave", me))

    @router.post("/v1/tables/{table_id}/sit-out", summary="Sit out from the next hand")
    async def sit_out(table_id: TableId, me: Player) -> dict[str, Any]:
        return await lobby.command(table_id, Command("sit_out", me))

    @router.post("/v1/tables/{table_id}/sit-in", summary="Come back from sitting out")
    async def sit_in(table_id: TableId, me: Player) -> dict[str, Any]:
        return await lobby.command(table_id, Command("sit_in", me))

    @router.post("/v1/tables/{table_id}/actions", summary="Act in the hand (or over the stream)")
    async def act(table_id: TableId, body: Act, me: Player) -> dict[str, Any]:
        return await lobby.command(
            table_id,
            Command("act", me, action=body.action, amount=body.amount, hand_id=body.hand_id),
        )

    @router.get("/v1/tables/{table_id}/cards", summary="Your hole cards in the hand in play")
    async def cards(table_id: TableId, me: Player) -> dict[str, Any]:
        return {"cards": await lobby.my_cards(table_id, me)}

    @router.get("/v1/tables/{table_id}/hands", summary="Finished hands, newest first")
    async def hands(
        table_id: TableId,
        _reader: Reader,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        before: Annotated[int | None, Query(ge=0)] = None,
    ) -> list[dict[str, Any]]:
        return [_hand(r) for r in await lobby.hands(table_id, limit=limit, before=before)]

    @router.get("/v1/hands/{hand_id}", summary="A finished hand: record, deltas, rake")
    async def hand(hand_id: HandId, _reader: Reader) -> dict[str, Any]:
        return _hand(await lobby.hand(hand_id))

    @router.get(
        "/v1/hands/{hand_id}/phh",
        summary="Download a finished hand as PHH",
        response_class=Response,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def hand_phh(hand_id: HandId, _reader: Reader) -> Response:
        row = await lobby.hand(hand_id)
        return Response(
            row.history_phh,
            media_type="text/plain; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{hand_id}.phh"'},
        )

    @router.get("/v1/hands/{hand_id}/replay", summary="Replay a hand's PHH through the engine")
    async def replay(hand_id: HandId, _reader: Reader) -> dict[str, Any]:
        return await lobby.replay(hand_id)

    @router.get("/v1/me/balance", summary="Your balance in a currency")
    async def my_balance(me: Player, currency: str = "CHIPS") -> dict[str, Any]:
        return {"player": me, "currency": currency, "balance": await lobby.balance(currency, me)}

    @router.post("/v1/admin/players/{address}/credit", summary="Credit a player (admin)")
    async def credit(address: Address, body: Credit, _admin: Admin) -> dict[str, Any]:
        player_id = address.lower()
        balance = await lobby.games.credit(body.currency, player_id, body.amount, body.transfer_id)
        return {"player": player_id, "currency": body.currency, "balance": balance}

    return router


class RateLimited(TableError):
    """Too many commands from one player over the stream."""


def stream_commands(
    lobby: Lobby, kv: KeyValue, settings: Settings
) -> Callable[[str, dict[str, Any]], Awaitable[Any]]:
    """The ``/v1/stream`` command handler: validate a frame, rate-limit, run it."""

    def text(request: dict[str, Any], name: str, pattern: str | None = None) -> str | None:
        value = request.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or (pattern is not None and not re.fullmatch(pattern, value)):
            raise TableError(f"{name} must be a string matching {pattern}")
        return value

    def integer(request: dict[str, Any], name: str) -> int | None:
        value = request.get(name)
        if value is None:
            return None
        if type(value) is not int:
            raise TableError(f"{name} must be an integer")
        return value

    async def run(player: str, request: dict[str, Any]) -> Any:
        decision = await kv.rate_limit(
            f"rl:stream:{player}", settings.stream_rate_capacity, settings.stream_rate_per_second
        )
        if not decision.allowed:
            raise RateLimited(f"too many commands; retry in {decision.retry_after:.1f} s")
        table_id = text(request, "table", TABLE_ID)
        if table_id is None:
            raise TableError("a command needs 'table'")
        command = Command(
            kind=str(request["op"]),
            player=player,
            seat=integer(request, "seat"),
            amount=integer(request, "amount" if request["op"] == "act" else "buy_in"),
            request_id=text(request, "request_id", REQUEST_ID),
            action=text(request, "action", r"[a-z_]{1,16}"),
            hand_id=text(request, "hand_id", HAND_ID),
        )
        return await lobby.command(table_id, command)

    return run
