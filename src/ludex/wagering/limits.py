"""Risk rules: which limits apply to a bet, and whether the bet breaks one.

Limits are data (rows of scope, key, name, value; see ``repository.py``). A limit
set on a *player* applies to that player's bets in every game; one set on a *game*
applies to every player's bets in that game (counted per player: a game's
``daily_loss`` is each player's loss in that game). When both apply the lower value
wins. A *provider* carries ``max_liability``: the sum of its open bets (stakes of
rounds not yet settled or rolled back).

=====================  =======================================================
name                   a bet of ``amount`` is refused when
=====================  =======================================================
``max_stake``          ``amount > value``
``max_round_exposure`` ``open stakes in this round + amount > value``
``daily_loss``         ``today's bets - wins (UTC day) + amount > value``
``bet_velocity``       ``bets in the last 60 s + 1 > value`` (bets per minute)
``max_liability``      ``provider's open stakes + amount > value``
=====================  =======================================================

Limits are checked in that order; the first breach is the answer and names its limit.

Pure: no I/O, no clock; the service fetches only the usage figures a present limit
needs and passes them in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

Scope = Literal["player", "game", "provider"]

LIMIT_NAMES: Final = (
    "max_stake",
    "max_round_exposure",
    "daily_loss",
    "bet_velocity",
    "max_liability",
)
SCOPES_OF: Final[dict[str, frozenset[str]]] = {
    "max_stake": frozenset({"player", "game"}),
    "max_round_exposure": frozenset({"player", "game"}),
    "daily_loss": frozenset({"player", "game"}),
    "bet_velocity": frozenset({"player", "game"}),
    "max_liability": frozenset({"provider"}),
}
VELOCITY_WINDOW_SECONDS: Final = 60
SUMMED: Final = frozenset({"daily_loss", "bet_velocity", "max_liability"})
"""The limits whose usage is summed over stored rows (the others read one round)."""


@dataclass(frozen=True, slots=True)
class Limit:
    """One limit row."""

    scope: str
    key: str
    name: str
    value: int


@dataclass(frozen=True, slots=True)
class Effective:
    """The limit that governs a bet for one name, and where it was set."""

    name: str
    value: int
    scope: str
    key: str


@dataclass(frozen=True, slots=True)
class Usage:
    """What a bet would add to; ``None`` where no limit needs the figure."""

    amount: int
    round_open_stakes: int | None = None
    daily_loss: int | None = None
    bets_last_minute: int | None = None
    provider_open_stakes: int | None = None


@dataclass(frozen=True, slots=True)
class Breach:
    """The limit a bet breaks: ``requested`` would exceed ``allowed``."""

    limit: str
    requested: int
    allowed: int
    scope: str
    key: str

    @property
    def message(self) -> str:
        return (
            f"{self.limit} set on {self.scope} {self.key!r}: {self.requested} would exceed "
            f"{self.allowed}"
        )


def check_definition(scope: str, name: str, value: int | None) -> str | None:
    """Why a limit cannot be set as given, or None."""
    if name not in SCOPES_OF:
        return f"unknown limit {name!r}; known: {', '.join(LIMIT_NAMES)}"
    if scope not in SCOPES_OF[name]:
        return f"{name} can be set on {' or '.join(sorted(SCOPES_OF[name]))}, not on {scope}"
    if value is not None and value < 0:
        return f"{name} must be >= 0, got {value}"
    return None


def effective_limits(
    limits: Iterable[Limit], *, player_id: str, game_id: str, provider_id: str
) -> dict[str, Effective]:
    """The governing (lowest) value per limit name for one bet."""
    wanted = {("player", player_id), ("game", game_id), ("provider", provider_id)}
    out: dict[str, Effective] = {}
    for limit in limits:
        if (limit.scope, limit.key) not in wanted or limit.scope not in SCOPES_OF.get(
            limit.name, frozenset()
        ):
            continue
        current = out.get(limit.name)
        if current is None or limit.value < current.value:
            out[limit.name] = Effective(limit.name, limit.value, limit.scope, limit.key)
    return out


def check_bet(limits: dict[str, Effective], usage: Usage) -> Breach | None:
    """The first limit the bet breaks, or None.

    Raises ValueError if a present limit's usage figure was not supplied (a bug in
    the caller, never a reason to let the bet through).
    """
    for name in LIMIT_NAMES:
        limit = limits.get(name)
        if limit is None:
            continue
        requested = _requested(name, usage)
        if requested > limit.value:
            return Breach(name, requested, limit.value, limit.scope, limit.key)
    return None


def _requested(name: str, usage: Usage) -> int:
    base: int | None
    if name == "max_stake":
        return usage.amount
    if name == "bet_velocity":
        if usage.bets_last_minute is None:
            raise ValueError("bet_velocity needs bets_last_minute")
        return usage.bets_last_minute + 1
    base = {
        "max_round_exposure": usage.round_open_stakes,
        "daily_loss": usage.daily_loss,
        "max_liability": usage.provider_open_stakes,
    }[name]
    if base is None:
        raise ValueError(f"{name} needs its usage figure")
    return base + usage.amount
