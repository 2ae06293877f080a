"""The provider API's wire shapes: request bodies, the one response shape, status codes.

Requests are validated strictly (pydantic, ``extra="forbid"``, integers must be JSON
integers): amounts are integer minor units, ids are short printable strings. The
response is always ``{"status": CODE, ...}``; :data:`HTTP_STATUS` maps each code to
the HTTP status it travels with (200 for every business outcome, 401/403 for
authentication, 400 for malformed requests, 500 when the service failed).

Pure: declarations and hashing only; this module must never do I/O.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field


class Status(StrEnum):
    """Every status code the provider API answers with (docs/provider-api.md)."""

    OK = "OK"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    EXPIRED = "EXPIRED"
    NONCE_REUSED = "NONCE_REUSED"
    PROVIDER_BLOCKED = "PROVIDER_BLOCKED"
    INVALID_REQUEST = "INVALID_REQUEST"
    DUPLICATE_DIFFERENT_PAYLOAD = "DUPLICATE_DIFFERENT_PAYLOAD"
    INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
    LIMIT_REACHED = "LIMIT_REACHED"
    UNKNOWN_PLAYER = "UNKNOWN_PLAYER"
    PLAYER_BLOCKED = "PLAYER_BLOCKED"
    UNKNOWN_TRANSACTION = "UNKNOWN_TRANSACTION"
    UNKNOWN_ROUND = "UNKNOWN_ROUND"
    ROUND_CLOSED = "ROUND_CLOSED"
    ROLLED_BACK = "ROLLED_BACK"
    INTERNAL_ERROR = "INTERNAL_ERROR"


STATUS_DESCRIPTIONS: Final[dict[Status, str]] = {
    Status.OK: "Done (or a duplicate of a request that was done: the first answer again).",
    Status.INVALID_SIGNATURE: "Missing or malformed auth headers, unknown provider, or the "
    "HMAC does not match the body. Nothing changed.",
    Status.EXPIRED: "X-Ludex-Timestamp is outside the accepted window (past or future). "
    "Nothing changed.",
    Status.NONCE_REUSED: "This X-Ludex-Nonce was already used. Nothing changed.",
    Status.PROVIDER_BLOCKED: "The provider is blocked by the operator. Nothing changed.",
    Status.INVALID_REQUEST: "The body is not valid JSON for this endpoint, or the request "
    "contradicts what it refers to. Nothing changed.",
    Status.DUPLICATE_DIFFERENT_PAYLOAD: "This transaction_id was already used with a "
    "different body. Nothing changed.",
    Status.INSUFFICIENT_FUNDS: "The player's available balance (in `balance`) is below the "
    "amount. Nothing changed.",
    Status.LIMIT_REACHED: "A risk limit refused the bet; `limit` names it. Nothing changed.",
    Status.UNKNOWN_PLAYER: "No such player. Nothing changed.",
    Status.PLAYER_BLOCKED: "The player is blocked. Nothing changed.",
    Status.UNKNOWN_TRANSACTION: "The referenced bet_transaction_id is unknown. Nothing changed.",
    Status.UNKNOWN_ROUND: "A win for a round with no accepted bet. Nothing changed.",
    Status.ROUND_CLOSED: "The round is settled; no more bets, wins or rollbacks. Nothing changed.",
    Status.ROLLED_BACK: "The transaction (or every bet of the round) was rolled back. "
    "Nothing changed.",
    Status.INTERNAL_ERROR: "The wallet failed; retry with the same transaction_id.",
}

HTTP_STATUS: Final[dict[Status, int]] = {
    Status.INVALID_SIGNATURE: 401,
    Status.EXPIRED: 401,
    Status.NONCE_REUSED: 401,
    Status.PROVIDER_BLOCKED: 403,
    Status.INVALID_REQUEST: 400,
    Status.INTERNAL_ERROR: 500,
}
"""HTTP status per code; every code not listed travels with 200."""

CURRENCY: Final = "CHIPS"
MAX_AMOUNT: Final = 10**15

Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@-]+$")]
Amount = Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)]
Currency = Literal["CHIPS"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def payload_hash(self, kind: str) -> str:
        """SHA-256 of the canonical request (kind + fields in model order).

        Whitespace and key order of the raw body do not matter: a retry that
        re-serializes the same values is the same payload.
        """
        return hashlib.sha256(f"{kind}\n{self.model_dump_json()}".encode()).hexdigest()


class BalanceRequest(_Request):
    """``POST /provider/v1/balance``."""

    player_id: Identifier


class BetRequest(_Request):
    """``POST /provider/v1/bet``: debit the player."""

    player_id: Identifier
    game_id: Identifier
    round_id: Identifier
    transaction_id: Identifier
    amount: Annotated[int, Field(strict=True, gt=0, le=MAX_AMOUNT)]
    currency: Currency


class WinRequest(_Request):
    """``POST /provider/v1/win``: credit the player (amount 0 settles a lost round)."""

    player_id: Identifier
    game_id: Identifier
    round_id: Identifier
    transaction_id: Identifier
    amount: Amount
    currency: Currency
    bet_transaction_id: Identifier | None = None
    round_closed: bool = True


class RollbackRequest(_Request):
    """``POST /provider/v1/rollback``: reverse a bet, exactly once."""

    player_id: Identifier
    transaction_id: Identifier
    rolled_back_transaction_id: Identifier
    round_id: Identifier | None = None


class WalletResponse(BaseModel):
    """The one response shape of the provider API."""

    model_config = ConfigDict(frozen=True)

    status: Status
    balance: int | None = None
    currency: str | None = None
    transaction_id: str | None = None
    limit: str | None = None
    message: str | None = None

    def to_json(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


def refusal(status: Status, message: str, **fields: object) -> WalletResponse:
    """A non-OK answer."""
    return WalletResponse.model_validate({"status": status, "message": message, **fields})


class LimitChange(BaseModel):
    """``PUT /admin/v1/limits``: set (``value``) or remove (``value: null``) one limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scope: Literal["player", "game", "provider"]
    key: Identifier
    name: Literal["max_stake", "max_round_exposure", "daily_loss", "bet_velocity", "max_liability"]
    value: Annotated[int, Field(strict=True, ge=0, le=MAX_AMOUNT)] | None
    actor: Annotated[str, Field(min_length=1, max_length=64)] = "admin-api"


class LimitView(BaseModel):
    """One limit as the admin API lists it."""

    scope: str
    key: str
    name: str
    value: int
