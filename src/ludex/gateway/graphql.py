"""The GraphQL edge of the gateway (Strawberry): the REST poker queries and commands as
one typed schema, plus subscriptions to a table's channel and to the player's balance.

* **Queries**: ``tables``, ``table(id)``, ``hand(id)``, ``hands(tableId, limit, before)``,
  ``me``, ``myBalance(currency)``, ``myCards(tableId)``.
* **Mutations**: ``join``, ``leave``, ``sitOut``, ``sitIn``, ``act`` (players) and
  ``createTable`` (admins).
* **Subscriptions** (graphql-transport-ws): ``tableEvents(tableId)`` relays every
  message of the ``table:ID`` channel through a :class:`~ludex.realtime.hub.Hub`
  connection (a ``snapshot`` first); ``myBalance(currency)`` polls the Lobby every
  ``balance_poll_seconds`` and yields the balance now and whenever it changes.

Everything goes through the :class:`~ludex.gameserver.lobby.Lobby`, exactly as the REST
routes do, with the same rules: ``tables`` and ``table`` are public, finished hands need
any valid token or an API key with ``hands:read``, player fields the ``player`` role,
``createTable`` the ``admin`` role from ``settings.admin_networks``. Credentials are a
bearer token or ``X-API-Key`` header; over a WebSocket, the ``connection_init`` payload
``{"token": ...}`` (or the upgrade request's headers). Credentials that are sent are
always checked, even for public fields, and an API key needs ``tables:read`` for the
table fields. Each authenticated operation takes one token from the caller's REST
bucket (:func:`~ludex.gateway.tables_routes.caller_limited`).

Errors come back as GraphQL errors whose ``extensions.code`` is the REST error code
(``not_found``, ``table_error``, ``illegal_action``, ``table_unavailable``,
``unauthorized``, ``forbidden``, ``rate_limited``, ``invalid_request``); any other
exception is logged and answered as ``internal_error`` without its message. Operations
are bounded: depth (``max_depth``), aliases, tokens and the request body size.

Never: game rules or SQL here (the Lobby's), nor a credential in a log or an error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Final, NewType, cast

import msgspec
import strawberry
import structlog
from fastapi import HTTPException
from graphql import GraphQLError
from graphql.language import IntValueNode, ValueNode
from pydantic import ValidationError
from starlette.requests import HTTPConnection
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import MaskErrors, MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.scalars import JSON
from strawberry.schema.config import StrawberryConfig
from strawberry.types import ExecutionContext
from strawberry.types.unset import UnsetType

from ludex.config import Settings
from ludex.errors import LudexError, PokerError
from ludex.gameserver.host import Command
from ludex.gameserver.lobby import Lobby
from ludex.gameserver.store import HandRow
from ludex.gameserver.table import TableConfig, TableError
from ludex.gateway.auth import AccessDenied, AuthError, AuthService, IpAllowList, Principal
from ludex.gateway.tables_routes import (
    HAND_ID,
    TABLE_ID,
    Act,
    CreateTable,
    Join,
    RateLimited,
    caller_limited,
)
from ludex.ports.kv import KeyValue
from ludex.realtime.history import RealtimeError
from ludex.realtime.hub import Hub, decode_frame
from ludex.realtime.ws import error_code

log = structlog.get_logger(__name__)

MAX_BODY: Final = 64 * 1024
"""Largest GraphQL request body accepted over HTTP, in bytes."""
MAX_DEPTH: Final = 8
MAX_ALIASES: Final = 15
MAX_TOKENS: Final = 2000
MAX_SUBSCRIPTIONS: Final = 20
"""Per WebSocket connection."""


class InvalidRequest(LudexError):
    """An argument does not validate (GraphQL code ``invalid_request``, REST's 422)."""


# --- scalars ---------------------------------------------------------------------------

BigInt = NewType("BigInt", int)
"""Chip amounts, balances and sequence numbers: integers beyond GraphQL's 32-bit Int."""


def _parse_big_int(value: object) -> int:
    if type(value) is not int:
        raise ValueError(f"BigInt must be an integer, got {type(value).__name__}")
    return value


def _parse_big_int_literal(node: ValueNode, _variables: dict[str, Any] | None = None) -> int:
    if not isinstance(node, IntValueNode):
        raise ValueError("BigInt must be an integer literal")
    return int(node.value)


_BIG_INT = strawberry.scalar(
    name="BigInt",
    description=(
        "An integer of any size, written as a JSON number (exact in JavaScript up to 2^53): "
        "chip amounts in minor units, balances, sequence numbers."
    ),
    serialize=int,
    parse_value=_parse_big_int,
    parse_literal=_parse_big_int_literal,
)


# --- types -----------------------------------------------------------------------------


@strawberry.enum
class Variant(Enum):
    NT = "NT"
    PO = "PO"


@strawberry.enum
class Action(Enum):
    FOLD = "fold"
    CHECK = "check"
    CALL = "call"
    BET = "bet"
    RAISE = "raise"
    CHECK_CALL = "check_call"
    BET_RAISE = "bet_raise"


@strawberry.type(description="A table as the lobby lists it.")
class TableSummary:
    table_id: str
    name: str
    variant: Variant
    small_blind: BigInt
    big_blind: BigInt
    currency: str
    seat_count: int
    seated: int
    hand_in_play: bool
    hands_played: int


@strawberry.type(description="A table's fixed settings.")
class TableSettings:
    table_id: str
    name: str
    variant: Variant
    small_blind: BigInt
    big_blind: BigInt
    ante: BigInt
    seat_count: int
    rake_basis_points: int
    rake_cap: BigInt | None
    currency: str
    min_buy_in: BigInt
    max_buy_in: BigInt
    action_seconds: float
    time_bank_seconds: float
    time_bank_refill_seconds: float
    next_hand_seconds: float


@strawberry.type
class SeatView:
    seat: int
    player: str
    stack: BigInt
    status: str = strawberry.field(description="buying_in or seated")
    sitting_out: bool
    time_bank: float


@strawberry.type(description="The actor's options: call amount and the raise-to range.")
class LegalActions:
    call: BigInt
    min_to: BigInt | None
    max_to: BigInt | None


@strawberry.type(description="The hand in play: public information only.")
class HandInPlay:
    hand_id: str
    number: int
    commitment: str
    seats: list[int]
    stacks: list[BigInt]
    bets: list[BigInt]
    pot: BigInt
    board: list[str]
    actor_seat: int | None
    deadline: float | None = strawberry.field(description="Unix seconds")
    legal: LegalActions | None


@strawberry.type(description="A table's public view (the table channel's snapshot).")
class TableView:
    table_id: str
    status: str
    settings: TableSettings
    seats: list[SeatView]
    button_seat: int | None
    hands_played: int
    hand: HandInPlay | None


@strawberry.type
class Delta:
    player: str
    delta: BigInt


@strawberry.type(description="A finished hand; its record reveals the seed and every card.")
class Hand:
    hand_id: str
    table_id: str
    number: int
    deltas: list[Delta]
    rake: BigInt
    completed_at: datetime
    record_hash: str
    record: JSON = strawberry.field(description="The sealed hand record (docs/gameserver.md)")
    phh: str = strawberry.field(description="The hand history in PHH")


@strawberry.type
class Caller:
    subject: str
    via: str
    roles: list[str]
    scopes: list[str]


@strawberry.type
class Balance:
    player: str
    currency: str
    balance: BigInt


@strawberry.type(description="Your hole cards in the hand in play.")
class HoleCards:
    hand_id: str
    seat: int
    cards: list[str]


@strawberry.type
class Seated:
    table_id: str
    seat: int
    stack: BigInt
    status: str


@strawberry.type(description="The table took the command.")
class Accepted:
    table_id: str
    command: str


@strawberry.type(description="One message of the table:ID channel (snapshot and gap included).")
class TableEvent:
    channel: str
    type: str
    epoch: str
    seq: BigInt
    data: JSON


@strawberry.input
class CreateTableInput:
    table_id: str
    name: str = ""
    variant: Variant = Variant.NT
    small_blind: BigInt = BigInt(1)
    big_blind: BigInt = BigInt(2)
    ante: BigInt = BigInt(0)
    seat_count: int = 6
    rake_basis_points: int = 0
    rake_cap: BigInt | None = None
    currency: str = "CHIPS"
    min_buy_in: BigInt = BigInt(40)
    max_buy_in: BigInt = BigInt(200)
    action_seconds: float = 15.0
    time_bank_seconds: float = 30.0
    time_bank_refill_seconds: float = 5.0
    next_hand_seconds: float = 2.0


# --- mapping the Lobby's views to the types, once --------------------------------------


def _summary(row: dict[str, Any]) -> TableSummary:
    return TableSummary(
        table_id=row["table_id"],
        name=row["name"],
        variant=Variant(row["variant"]),
        small_blind=row["small_blind"],
        big_blind=row["big_blind"],
        currency=row["currency"],
        seat_count=row["seat_count"],
        seated=row["seated"],
        hand_in_play=row["hand_in_play"],
        hands_played=row["hands_played"],
    )


def _table(view: dict[str, Any]) -> TableView:
    c = view["config"]
    hand = view["hand"]
    legal = hand["legal"] if hand is not None else None
    return TableView(
        table_id=view["table_id"],
        status=view["status"],
        settings=TableSettings(
            table_id=c["table_id"],
            name=c["name"],
            variant=Variant(c["variant"]),
            small_blind=c["small_blind"],
            big_blind=c["big_blind"],
            ante=c["ante"],
            seat_count=c["seat_count"],
            rake_basis_points=c["rake_basis_points"],
            rake_cap=c["rake_cap"],
            currency=c["currency"],
            min_buy_in=c["min_buy_in"],
            max_buy_in=c["max_buy_in"],
            action_seconds=c["action_seconds"],
            time_bank_seconds=c["time_bank_seconds"],
            time_bank_refill_seconds=c["time_bank_refill_seconds"],
            next_hand_seconds=c["next_hand_seconds"],
        ),
        seats=[
            SeatView(
                seat=int(number),
                player=s["player"],
                stack=s["stack"],
                status=s["status"],
                sitting_out=s["sitting_out"],
                time_bank=s["time_bank"],
            )
            for number, s in view["seats"].items()
        ],
        button_seat=view["button_seat"],
        hands_played=view["hands_played"],
        hand=None
        if hand is None
        else HandInPlay(
            hand_id=hand["hand_id"],
            number=hand["number"],
            commitment=hand["commitment"],
            seats=list(hand["seats"]),
            stacks=list(hand["stacks"]),
            bets=list(hand["bets"]),
            pot=hand["pot"],
            board=list(hand["board"]),
            actor_seat=hand["actor_seat"],
            deadline=hand["deadline"],
            legal=None
            if legal is None
            else LegalActions(call=legal["call"], min_to=legal["min_to"], max_to=legal["max_to"]),
        ),
    )


def _hand(row: HandRow) -> Hand:
    return Hand(
        hand_id=row.hand_id,
        table_id=row.table_id,
        number=row.number,
        deltas=[Delta(player=p, delta=BigInt(d)) for p, d in sorted(row.deltas.items())],
        rake=BigInt(row.rake),
        completed_at=row.completed_at,
        record_hash=str(row.record.get("record_hash", "")),
        record=JSON(row.record),
        phh=row.history_phh,
    )


# --- context, credentials and access ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Edge:
    lobby: Lobby
    auth: AuthService
    hub: Hub
    limit: Callable[[Principal], Awaitable[Principal]]
    admin_networks: IpAllowList
    balance_poll_seconds: float


class GraphQLContext(BaseContext):
    """Per HTTP request, or per WebSocket connection (``connection_params`` set)."""

    def __init__(self, edge: _Edge) -> None:
        super().__init__()
        self.edge = edge
        self.principal: Principal | None = None
        self.resolved = False
        self.charged = False

    @property
    def websocket(self) -> bool:
        return self.request is not None and self.request.scope["type"] == "websocket"


Info = strawberry.Info[GraphQLContext, None]


async def _credentials(ctx: GraphQLContext) -> Principal | None:
    """The caller, or None for anonymous; AuthError for bad or conflicting credentials.

    Cached for an HTTP request; on a WebSocket checked at each subscription start, so an
    expired or revoked token cannot open new subscriptions on an old connection.
    """
    if ctx.resolved and not ctx.websocket:
        return ctx.principal
    headers = ctx.request.headers if ctx.request is not None else None
    bearer = headers.get("authorization") if headers is not None else None
    api_key = headers.get("x-api-key") if headers is not None else None
    params = ctx.connection_params if isinstance(ctx.connection_params, dict) else {}
    if params.get("token") is not None:
        token = params["token"]
        if not isinstance(token, str) or not token.strip():
            raise AuthError("connection_init token must be a non-empty string")
        bearer = f"Bearer {token}"
    if bearer and api_key:
        raise AuthError("send either a bearer token or an API key, not both")
    principal: Principal | None = None
    if bearer:
        scheme, _, token = bearer.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("Authorization must be 'Bearer <token>'")
        principal = await ctx.edge.auth.verify(token.strip())
    elif api_key:
        principal = await ctx.edge.auth.check_api_key(api_key, None)
    ctx.principal, ctx.resolved = principal, True
    return principal


async def _charge(ctx: GraphQLContext, principal: Principal) -> None:
    """One token of the caller's REST bucket per operation (per HTTP request, or per
    subscription start on a WebSocket)."""
    if ctx.charged and not ctx.websocket:
        return
    try:
        await ctx.edge.limit(principal)
    except HTTPException as exc:
        if exc.status_code != 429:
            raise
        raise RateLimited(str(exc.detail)) from None
    ctx.charged = True


async def _optional(info: Info, scope: str) -> Principal | None:
    """Public fields: anonymous is fine; sent credentials must be valid, and an API key
    must carry ``scope``."""
    principal = await _credentials(info.context)
    if principal is None:
        return None
    if principal.via == "api_key" and scope not in principal.scopes:
        raise AccessDenied(f"this API key lacks the {scope} scope")
    await _charge(info.context, principal)
    return principal


async def _authenticated(info: Info) -> Principal:
    principal = await _credentials(info.context)
    if principal is None:
        raise AuthError("credentials required: a bearer token or an X-API-Key")
    return principal


async def _reader(info: Info) -> Principal:
    """Any valid token, or an API key with ``hands:read`` (as ``GET /v1/hands/...``)."""
    principal = await _authenticated(info)
    if principal.via == "api_key" and "hands:read" not in principal.scopes:
        raise AccessDenied("this API key lacks the hands:read scope")
    await _charge(info.context, principal)
    return principal


async def _player(info: Info) -> str:
    """The signed-in player's address (lower case)."""
    principal = await _authenticated(info)
    if principal.via != "jwt" or "player" not in principal.roles:
        raise AccessDenied("this needs the role 'player': sign in with your wallet")
    await _charge(info.context, principal)
    return principal.subject.lower()


async def _admin(info: Info) -> Principal:
    ctx = info.context
    client = ctx.request.client if ctx.request is not None else None
    if not ctx.edge.admin_networks.allows(client.host if client else None):
        raise AccessDenied("admin operations are not reachable from your address")
    principal = await _authenticated(info)
    if principal.via != "jwt" or "admin" not in principal.roles:
        raise AccessDenied("this needs the role 'admin'")
    await _charge(info.context, principal)
    return principal


def _matching(name: str, value: str, pattern: str) -> str:
    if not re.fullmatch(pattern, value):
        raise InvalidRequest(f"{name} must match {pattern}")
    return value


def _invalid(exc: ValidationError) -> InvalidRequest:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return InvalidRequest(f"{where}: {first['msg']}")


# --- the schema ------------------------------------------------------------------------


async def _tables(info: Info) -> list[TableSummary]:
    await _optional(info, "tables:read")
    return [_summary(row) for row in await info.context.edge.lobby.tables()]


async def _table_view(info: Info, id: str) -> TableView:
    await _optional(info, "tables:read")
    table_id = _matching("id", id, TABLE_ID)
    return _table(await info.context.edge.lobby.table(table_id))


async def _finished_hand(info: Info, id: str) -> Hand:
    await _reader(info)
    return _hand(await info.context.edge.lobby.hand(_matching("id", id, HAND_ID)))


async def _finished_hands(
    info: Info, table_id: str, limit: int = 50, before: int | None = None
) -> list[Hand]:
    await _reader(info)
    _matching("tableId", table_id, TABLE_ID)
    if not 1 <= limit <= 200 or (before is not None and before < 0):
        raise InvalidRequest("limit must be 1..200 and before >= 0")
    rows = await info.context.edge.lobby.hands(table_id, limit=limit, before=before)
    return [_hand(row) for row in rows]


async def _me(info: Info) -> Caller:
    principal = await _authenticated(info)
    await _charge(info.context, principal)
    return Caller(
        subject=principal.subject,
        via=principal.via,
        roles=sorted(principal.roles),
        scopes=sorted(principal.scopes),
    )


def _check_currency(currency: str) -> str:
    if not 1 <= len(currency) <= 70:
        raise InvalidRequest("currency must be 1 to 70 characters")
    return currency


async def _balance(info: Info, currency: str = "CHIPS") -> Balance:
    me = await _player(info)
    balance = await info.context.edge.lobby.balance(_check_currency(currency), me)
    return Balance(player=me, currency=currency, balance=BigInt(balance))


async def _my_cards(info: Info, table_id: str) -> HoleCards | None:
    me = await _player(info)
    view = await info.context.edge.lobby.my_cards(_matching("tableId", table_id, TABLE_ID), me)
    if view is None:
        return None
    return HoleCards(hand_id=view["hand_id"], seat=view["seat"], cards=list(view["cards"]))


@strawberry.type
class Query:
    tables: list[TableSummary] = strawberry.field(
        resolver=_tables, description="Open tables (public; API keys need tables:read)."
    )
    table: TableView = strawberry.field(
        resolver=_table_view,
        description="A table's public view (public; API keys need tables:read).",
    )
    hand: Hand = strawberry.field(
        resolver=_finished_hand,
        description="A finished hand (any valid token, or an API key with hands:read).",
    )
    hands: list[Hand] = strawberry.field(
        resolver=_finished_hands,
        description="A table's finished hands, newest first (the same access as hand).",
    )
    me: Caller = strawberry.field(
        resolver=_me, description="Who is calling (any valid token or API key)."
    )
    my_balance: Balance = strawberry.field(
        resolver=_balance, description="Your balance in a currency (player)."
    )
    my_cards: HoleCards | None = strawberry.field(
        resolver=_my_cards,
        description="Your hole cards in the hand in play; null when you are not in it.",
    )


async def _command(info: Info, table_id: str, command: Command) -> dict[str, Any]:
    return await info.context.edge.lobby.command(_matching("tableId", table_id, TABLE_ID), command)


async def _join(info: Info, table_id: str, seat: int, buy_in: BigInt, request_id: str) -> Seated:
    me = await _player(info)
    try:
        body = Join(seat=seat, buy_in=buy_in, request_id=request_id)
    except ValidationError as exc:
        raise _invalid(exc) from None
    command = Command("join", me, seat=body.seat, amount=body.buy_in, request_id=body.request_id)
    answer = await _command(info, table_id, command)
    return Seated(
        table_id=table_id, seat=answer["seat"], stack=answer["stack"], status=answer["status"]
    )


async def _leave(info: Info, table_id: str) -> Accepted:
    await _command(info, table_id, Command("leave", await _player(info)))
    return Accepted(table_id=table_id, command="leave")


async def _sit_out(info: Info, table_id: str) -> Accepted:
    await _command(info, table_id, Command("sit_out", await _player(info)))
    return Accepted(table_id=table_id, command="sit_out")


async def _sit_in(info: Info, table_id: str) -> Accepted:
    await _command(info, table_id, Command("sit_in", await _player(info)))
    return Accepted(table_id=table_id, command="sit_in")


async def _act(
    info: Info,
    table_id: str,
    action: Action,
    amount: BigInt | None = None,
    hand_id: str | None = None,
) -> Accepted:
    me = await _player(info)
    try:
        body = Act(action=action.value, amount=amount, hand_id=hand_id)
    except ValidationError as exc:
        raise _invalid(exc) from None
    command = Command("act", me, action=body.action, amount=body.amount, hand_id=body.hand_id)
    await _command(info, table_id, command)
    return Accepted(table_id=table_id, command="act")


async def _create_table(info: Info, input: CreateTableInput) -> TableView:
    await _admin(info)
    fields = {f.name: getattr(input, f.name) for f in dataclasses.fields(input)}
    fields["variant"] = input.variant.value
    try:
        body = CreateTable(**fields)
    except ValidationError as exc:
        raise _invalid(exc) from None
    try:
        config = msgspec.convert(body.model_dump(), TableConfig)
    except msgspec.ValidationError as exc:
        raise TableError(f"table settings refused: {exc}") from None
    return _table(await info.context.edge.lobby.create_table(config))


@strawberry.type
class Mutation:
    join: Seated = strawberry.mutation(
        resolver=_join, description="Buy in and take a seat; a retry with requestId is safe."
    )
    leave: Accepted = strawberry.mutation(
        resolver=_leave, description="Cash out (now, or when the hand ends)."
    )
    sit_out: Accepted = strawberry.mutation(
        resolver=_sit_out, description="Sit out from the next hand."
    )
    sit_in: Accepted = strawberry.mutation(
        resolver=_sit_in, description="Come back from sitting out."
    )
    act: Accepted = strawberry.mutation(
        resolver=_act,
        description="Act in the hand in play; handId refuses a command meant for another hand.",
    )
    create_table: TableView = strawberry.mutation(
        resolver=_create_table, description="Open a table (admin, from the admin networks)."
    )


async def _table_events(info: Info, table_id: str) -> AsyncGenerator[TableEvent, None]:
    principal = await _optional(info, "tables:read")
    edge = info.context.edge
    await edge.lobby.table(_matching("tableId", table_id, TABLE_ID))  # not_found first
    player = principal.subject.lower() if principal and "player" in principal.roles else None
    hub = edge.hub
    connection = hub.connect(encoding="json", player_id=player)
    try:
        await hub.subscribe(connection, f"table:{table_id}")
        while (frame := await connection.receive()) is not None:
            envelope = decode_frame(frame, "json")
            yield TableEvent(
                channel=str(envelope["channel"]),
                type=str(envelope["type"]),
                epoch=str(envelope["epoch"]),
                seq=BigInt(cast(int, envelope["seq"])),
                data=JSON(envelope["data"]),
            )
    finally:
        hub.disconnect(connection)


async def _balance_changes(info: Info, currency: str = "CHIPS") -> AsyncGenerator[Balance, None]:
    me = await _player(info)
    _check_currency(currency)
    principal = info.context.principal
    expires_at = principal.expires_at if principal is not None else None
    edge = info.context.edge
    last: int | None = None
    while True:
        if expires_at is not None and time.time() >= expires_at:
            raise AuthError("access token has expired; subscribe again with a fresh one")
        balance = await edge.lobby.balance(currency, me)
        if balance != last:
            last = balance
            yield Balance(player=me, currency=currency, balance=BigInt(balance))
        await asyncio.sleep(edge.balance_poll_seconds)


@strawberry.type
class Subscription:
    table_events: AsyncGenerator[TableEvent, None] = strawberry.subscription(
        resolver=_table_events,
        description=(
            "Every message of the table:ID channel, a snapshot first. Completes when the "
            "hub drops this stream (too slow a client): subscribe again."
        ),
    )
    my_balance: AsyncGenerator[Balance, None] = strawberry.subscription(
        resolver=_balance_changes,
        description=(
            "Your balance now and whenever it changes (read every balance_poll_seconds); "
            "ends with unauthorized when the access token expires."
        ),
    )


# --- errors ----------------------------------------------------------------------------


def _code(exc: BaseException) -> str | None:
    """The REST error code for a domain error; None for an unexpected exception."""
    if isinstance(exc, AuthError):
        return "unauthorized"
    if isinstance(exc, AccessDenied):
        return "forbidden"
    if isinstance(exc, InvalidRequest):
        return "invalid_request"
    if isinstance(exc, PokerError):
        return error_code(exc)  # not_found, table_error, illegal_action, rate_limited ...
    if isinstance(exc, RealtimeError):
        return "invalid_request"
    if isinstance(exc, LudexError):
        return type(exc).__name__  # as REST answers other LudexErrors
    return None


class _ErrorCodes(MaskErrors):
    """Give every error ``extensions.code``; hide the message of unexpected ones."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=lambda _: True, error_message="internal error")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        original = error.original_error
        if isinstance(original, GraphQLError) and original.original_error is not None:
            original = original.original_error
        if original is None:  # syntax, validation, depth: the client's document
            code: str | None = (error.extensions or {}).get("code") or "invalid_request"
        else:
            code = _code(original)
        if code is None:
            masked = super().anonymise_error(error)
            masked.extensions = {"code": "internal_error"}
            return masked
        return GraphQLError(
            error.message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={**(error.extensions or {}), "code": code},
        )


class _Schema(strawberry.Schema):
    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        """Log unexpected errors with their cause; refusals are the client's business."""
        for error in errors:
            original = error.original_error
            if original is not None and _code(original) is None:
                log.error(
                    "graphql.error",
                    error=f"{type(original).__name__}: {original}",
                    path=error.path,
                    exc_info=original,
                )


def create_schema(*, max_depth: int = MAX_DEPTH) -> strawberry.Schema:
    return _Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map={BigInt: _BIG_INT}),
        # Factories, not instances: an extension may keep state for one operation.
        extensions=[
            lambda: QueryDepthLimiter(max_depth=max_depth),
            lambda: MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            _ErrorCodes,
        ],
    )


class _Router(GraphQLRouter[GraphQLContext, None]):
    async def on_ws_connect(self, context: GraphQLContext) -> UnsetType | dict[str, object] | None:
        """Refuse a bad token at ``connection_init`` (close 4403); none is a spectator."""
        try:
            await _credentials(context)
        except (AuthError, AccessDenied):
            raise ConnectionRejectionError() from None
        return await super().on_ws_connect(context)


def create_graphql_router(
    lobby: Lobby,
    auth: AuthService,
    hub: Hub,
    kv: KeyValue,
    settings: Settings,
    *,
    max_depth: int = MAX_DEPTH,
    max_body: int = MAX_BODY,
    balance_poll_seconds: float = 0.5,
    path: str = "/graphql",
) -> GraphQLRouter[GraphQLContext, None]:
    """The router serving ``path`` (POST queries and mutations, WebSocket subscriptions
    over graphql-transport-ws). Include it without a prefix: the path is the route's
    own, so logs and metrics label requests with it."""
    if not (math.isfinite(balance_poll_seconds) and balance_poll_seconds > 0):
        raise InvalidRequest("balance_poll_seconds must be a positive number")
    edge = _Edge(
        lobby=lobby,
        auth=auth,
        hub=hub,
        limit=caller_limited(kv, settings.api_rate_capacity, settings.api_rate_per_second),
        admin_networks=IpAllowList(settings.admin_networks),
        balance_poll_seconds=balance_poll_seconds,
    )

    async def context(connection: HTTPConnection) -> GraphQLContext:
        if connection.scope["type"] == "http":
            length = connection.headers.get("content-length")
            if connection.scope.get("method") == "POST" and length is None:
                raise HTTPException(411, "send the GraphQL request with a Content-Length")
            if length is not None and (not length.isdigit() or int(length) > max_body):
                raise HTTPException(413, f"a GraphQL request is at most {max_body} bytes")
        return GraphQLContext(edge)

    return _Router(
        create_schema(max_depth=max_depth),
        path=path,
        context_getter=context,
        graphql_ide=None,
        allow_queries_via_get=False,
        max_subscriptions_per_connection=MAX_SUBSCRIPTIONS,
        tags=["graphql"],
    )
