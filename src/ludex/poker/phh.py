"""Read and write hand histories in PHH, the Poker Hand History standard (TOML).

The standard is at https://phh.readthedocs.io: a hand is a TOML document whose
``variant``, ``antes``, ``blinds_or_straddles``, ``min_bet``, ``starting_stacks`` and
``actions`` fields (the required set depends on the variant) rebuild the hand, and whose
optional fields (``players``, ``finishing_stacks``, ``seats``, ``event``, ``year`` ...)
describe it. Players are ``p1 .. pN`` in position order: ``p1`` is the small blind and
``pN`` the button (heads-up, the standard reverses the blinds: ``p2`` is the button).

:func:`loads` maps the text once, at the edge, to a frozen :class:`HandHistory` with
exact integer amounts and typed actions (:data:`Action`); :func:`dumps` writes one back
in the standard's field order, with tomli-w formatting every value. Malformed input
raises :class:`~ludex.errors.HandHistoryError` naming the field, or the index (0-based,
as in the ``actions`` array) and text of the action.

Amounts are chips and chips are integers: a float amount is accepted only when it is a
whole number (``3.0``); ``1259450.25`` is refused with a hint to scale the hand to its
smallest unit, and ``inf`` (an unknown stack) is refused because nothing can be replayed
from it. Player indices in typed actions are 0-based (``p1`` is player 0).

:func:`replay` plays a history through the ludex engine (imported lazily, so reading
and writing never load it) and compares the result with ``finishing_stacks``;
:func:`from_operations` writes the history of a hand the engine played.

Pure: no I/O (callers read and write the files), no clock, no randomness.
"""

from __future__ import annotations

import datetime
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

import tomli_w

from ludex.errors import CardError, HandHistoryError
from ludex.poker.cards import card

if TYPE_CHECKING:  # the engine is imported lazily: reading and writing PHH do not need it
    from ludex.poker.operations import Operation
    from ludex.poker.rules import GameConfig
    from ludex.poker.state import State

UNKNOWN_CARD: Final = "??"

REQUIRED_FIELDS: Final[Mapping[str, tuple[str, ...]]] = {
    "FT": ("antes", "blinds_or_straddles", "small_bet", "big_bet"),
    "NT": ("antes", "blinds_or_straddles", "min_bet"),
    "NS": ("antes", "blinds_or_straddles", "min_bet"),
    "PO": ("antes", "blinds_or_straddles", "min_bet"),
    "FO/8": ("antes", "blinds_or_straddles", "small_bet", "big_bet"),
    "F7S": ("antes", "bring_in", "small_bet", "big_bet"),
    "F7S/8": ("antes", "bring_in", "small_bet", "big_bet"),
    "FR": ("antes", "bring_in", "small_bet", "big_bet"),
    "N2L1D": ("antes", "blinds_or_straddles", "min_bet"),
    "F2L3D": ("antes", "blinds_or_straddles", "small_bet", "big_bet"),
    "FB": ("antes", "blinds_or_straddles", "small_bet", "big_bet"),
}
"""The variant codes of the standard and the structure fields each one requires
(``variant``, ``starting_stacks`` and ``actions`` are required by all)."""

_STRUCTURE_FIELDS: Final = ("blinds_or_straddles", "bring_in", "small_bet", "big_bet", "min_bet")


# -- actions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DealHole:
    """``d dh pN cards``: hole cards (``??`` when unknown) dealt to a player."""

    player: int
    cards: tuple[str, ...]
    commentary: str | None = None


@dataclass(frozen=True, slots=True)
class DealBoard:
    """``d db cards``: community cards."""

    cards: tuple[str, ...]
    commentary: str | None = None


@dataclass(frozen=True, slots=True)
class PostBringIn:
    """``pN pb``: the bring-in (stud games)."""

    player: int
    commentary: str | None = None


@dataclass(frozen=True, slots=True)
class Fold:
    """``pN f``."""

    player: int
    commentary: str | None = None


@dataclass(frozen=True, slots=True)
class CheckOrCall:
    """``pN cc``."""

    player: int
    commentary: str | None = None


@dataclass(frozen=True, slots=True)
class CompleteBetOrRaiseTo:
    """``pN cbr amount``: complete, bet or raise *to* ``amount`` (the street total)."""

    player: int
    amount: int
    commentary: str | None = None


@dataclass(frozen=True, slots=True)
class StandPatOrDiscard:
    """``pN sd [cards]``: draw games; no cards means standing pat."""

    player: int
    cards: tuple[str, ...] = ()
    commentary: str | None = None


@dataclass(frozen=True, slots=True)
class ShowOrMuck:
    """``pN sm [cards|-]``: no cards means a muck; ``-`` shows the cards already dealt."""

    player: int
    cards: tuple[str, ...] = ()
    shows_dealt: bool = False
    commentary: str | None = None

    @property
    def mucks(self) -> bool:
        return not self.cards and not self.shows_dealt


@dataclass(frozen=True, slots=True)
class NoOp:
    """An empty action or a standalone ``# commentary``."""

    commentary: str | None = None


Action = (
    DealHole
    | DealBoard
    | PostBringIn
    | Fold
    | CheckOrCall
    | CompleteBetOrRaiseTo
    | StandPatOrDiscard
    | ShowOrMuck
    | NoOp
)
"""One entry of the ``actions`` array, typed."""


def split_cards(text: str) -> tuple[str, ...]:
    """``"AhKs??"`` → ``("Ah", "Ks", "??")``; refuses malformed cards."""
    if not text or len(text) % 2:
        raise CardError(f"cards {text!r} must be two characters each, like 'AhKs' or '????'")
    out = tuple(text[i : i + 2] for i in range(0, len(text), 2))
    for item in out:
        if item != UNKNOWN_CARD:
            card(item)
    return out


def _player(token: str) -> int:
    if len(token) < 2 or token[0] != "p" or not token[1:].isdigit() or token[1] == "0":
        raise HandHistoryError(f"{token!r} is not a player: players are p1, p2, ...")
    return int(token[1:]) - 1


def _amount(token: str) -> int:
    try:
        value = Decimal(token)
    except ArithmeticError:
        raise HandHistoryError(f"amount {token!r} is not a number") from None
    return _chips(value, "amount")


def parse_action(text: str) -> Action:
    """Parse one action string of the PHH grammar ``[[actor action[ args]][ # commentary]]``."""
    body, hash_sign, comment = text.partition("#")
    commentary = comment.strip() if hash_sign else None
    words = body.split()
    try:
        match words:
            case []:
                return NoOp(commentary)
            case ["d", "dh", player, cards]:
                return DealHole(_player(player), split_cards(cards), commentary)
            case ["d", "db", cards]:
                return DealBoard(split_cards(cards), commentary)
            case [player, "pb"]:
                return PostBringIn(_player(player), commentary)
            case [player, "f"]:
                return Fold(_player(player), commentary)
            case [player, "cc"]:
                return CheckOrCall(_player(player), commentary)
            case [player, "cbr", amount]:
                value = _amount(amount)
                if value <= 0:
                    raise HandHistoryError(f"the amount must be positive, not {amount}")
                return CompleteBetOrRaiseTo(_player(player), value, commentary)
            case [player, "sd"]:
                return StandPatOrDiscard(_player(player), (), commentary)
            case [player, "sd", cards]:
                return StandPatOrDiscard(_player(player), split_cards(cards), commentary)
            case [player, "sm"]:
                return ShowOrMuck(_player(player), (), False, commentary)
            case [player, "sm", "-"]:
                return ShowOrMuck(_player(player), (), True, commentary)
            case [player, "sm", cards]:
                return ShowOrMuck(_player(player), split_cards(cards), False, commentary)
    except CardError as exc:
        raise HandHistoryError(str(exc)) from None
    raise HandHistoryError(
        "not an action: expected 'd dh pN cards', 'd db cards', 'pN f', 'pN cc', "
        "'pN cbr amount', 'pN sm [cards]', 'pN sd [cards]', 'pN pb' or '# commentary'"
    )


def format_action(action: Action) -> str:
    """The canonical text of a typed action (single spaces, ``# commentary`` at the end)."""
    match action:
        case DealHole(player, cards, _):
            text = f"d dh p{player + 1} {''.join(cards)}"
        case DealBoard(cards, _):
            text = f"d db {''.join(cards)}"
        case PostBringIn(player, _):
            text = f"p{player + 1} pb"
        case Fold(player, _):
            text = f"p{player + 1} f"
        case CheckOrCall(player, _):
            text = f"p{player + 1} cc"
        case CompleteBetOrRaiseTo(player, amount, _):
            text = f"p{player + 1} cbr {amount}"
        case StandPatOrDiscard(player, cards, _):
            text = f"p{player + 1} sd {''.join(cards)}".rstrip()
        case ShowOrMuck(player, cards, shows_dealt, _):
            shown = "-" if shows_dealt else "".join(cards)
            text = f"p{player + 1} sm {shown}".rstrip()
        case NoOp(_):
            text = ""
    if action.commentary is not None:
        text = f"{text} # {action.commentary}".lstrip()
    return text


# -- the hand history -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HandHistory:
    """One hand in PHH; fields are declared in the standard's order and written in it.

    Arrays indexed by player (``antes``, ``starting_stacks``, ``players``,
    ``finishing_stacks`` ...) have one entry per player, ``p1`` first. Fields whose
    name starts with ``_`` are the standard's user-defined fields and are kept as they
    are in ``user_defined``. Construction validates everything; :attr:`parsed_actions`
    holds the typed form of :attr:`actions`.
    """

    variant: str
    antes: tuple[int, ...]
    blinds_or_straddles: tuple[int, ...] | None = None
    bring_in: int | None = None
    small_bet: int | None = None
    big_bet: int | None = None
    min_bet: int | None = None
    starting_stacks: tuple[int, ...]
    actions: tuple[str, ...]
    author: str | None = None
    event: str | None = None
    url: str | None = None
    venue: str | None = None
    address: str | None = None
    city: str | None = None
    region: str | None = None
    postal_code: str | None = None
    country: str | None = None
    time: datetime.time | None = None
    time_zone: str | None = None
    time_zone_abbreviation: str | None = None
    day: int | None = None
    month: int | None = None
    year: int | None = None
    hand: str | int | None = None
    level: int | None = None
    seats: tuple[int, ...] | None = None
    seat_count: int | None = None
    table: str | int | None = None
    players: tuple[str, ...] | None = None
    finishing_stacks: tuple[int, ...] | None = None
    winnings: tuple[int, ...] | None = None
    currency: str | None = None
    currency_symbol: str | None = None
    ante_trimming_status: bool | None = None
    time_limit: int | float | None = None
    time_banks: tuple[int | float, ...] | None = None
    user_defined: tuple[tuple[str, Any], ...] = field(default=(), hash=False)
    parsed_actions: tuple[Action, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _validate(self)
        # The order the writer uses (tables last), so that a round trip compares equal.
        ordered = sorted(self.user_defined, key=lambda kv: (isinstance(kv[1], dict), kv[0]))
        object.__setattr__(self, "user_defined", tuple(ordered))
        parsed = []
        for index, text in enumerate(self.actions):
            try:
                action = parse_action(text)
                _check_action_players(action, self.player_count)
            except HandHistoryError as exc:
                raise HandHistoryError(f"actions[{index}] {text!r}: {exc}") from None
            parsed.append(action)
        _check_dealt_cards_distinct(parsed, self.actions)
        object.__setattr__(self, "parsed_actions", tuple(parsed))

    @property
    def player_count(self) -> int:
        return len(self.starting_stacks)

    def player_name(self, index: int) -> str:
        """``players[index]`` when names are given and not empty, else ``p{index+1}``."""
        if self.players and self.players[index]:
            return self.players[index]
        return f"p{index + 1}"


FIELD_ORDER: Final = tuple(
    f.name for f in fields(HandHistory) if f.name not in ("user_defined", "parsed_actions")
)
"""Every standard field, in the order of the standard's field table."""

_INT_ARRAYS: Final = frozenset(
    {"antes", "blinds_or_straddles", "starting_stacks", "finishing_stacks", "winnings"}
)
_INT_SCALARS: Final = frozenset({"bring_in", "small_bet", "big_bet", "min_bet"})
_STRINGS: Final = frozenset(
    {
        "variant",
        "author",
        "event",
        "url",
        "venue",
        "address",
        "city",
        "region",
        "postal_code",
        "country",
        "time_zone",
        "time_zone_abbreviation",
        "currency",
        "currency_symbol",
    }
)
_PLAIN_INTS: Final = frozenset({"day", "month", "year", "level", "seat_count"})
_PER_PLAYER: Final = (
    "antes",
    "blinds_or_straddles",
    "seats",
    "players",
    "finishing_stacks",
    "winnings",
    "time_banks",
)


def _chips(value: object, where: str) -> int:
    if isinstance(value, bool):
        raise HandHistoryError(f"{where}: expected a number of chips, not a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal | float):
        number = Decimal(value) if isinstance(value, float) else value
        if not number.is_finite():
            shown = "inf" if number.is_infinite() else "nan"
            raise HandHistoryError(
                f"{where}: {shown} is not a known amount; ludex replays only hands whose "
                "amounts are all known"
            )
        if number != number.to_integral_value():
            raise HandHistoryError(
                f"{where}: {value} is not a whole number of chips; amounts are integers, "
                "so scale the hand to its smallest unit (for example cents)"
            )
        return int(number)
    raise HandHistoryError(f"{where}: expected a number of chips, not {type(value).__name__}")


def _validate(h: HandHistory) -> None:
    if h.variant not in REQUIRED_FIELDS:
        raise HandHistoryError(
            f"field 'variant': unknown variant {h.variant!r}; "
            f"the standard's codes are {', '.join(REQUIRED_FIELDS)}"
        )
    required = REQUIRED_FIELDS[h.variant]
    for name in _STRUCTURE_FIELDS:
        present = getattr(h, name) is not None
        if name in required and not present:
            raise HandHistoryError(f"missing field {name!r}, required for variant {h.variant!r}")
        if present and name not in required:
            raise HandHistoryError(f"field {name!r} is not used by variant {h.variant!r}")
    count = len(h.starting_stacks)
    if count < 2:
        raise HandHistoryError(f"field 'starting_stacks': a hand needs 2 players, not {count}")
    for name in _PER_PLAYER:
        value = getattr(h, name)
        if value is not None and len(value) != count:
            raise HandHistoryError(
                f"field {name!r} has {len(value)} entries but there are {count} players "
                "(one entry per player, p1 first)"
            )
    for index, stack in enumerate(h.starting_stacks):
        if stack <= 0:
            raise HandHistoryError(f"field 'starting_stacks'[{index}]: stacks must be positive")
    for name in ("antes", "blinds_or_straddles", "finishing_stacks", "winnings"):
        for index, value in enumerate(getattr(h, name) or ()):
            if value < 0:
                raise HandHistoryError(f"field {name!r}[{index}]: {value} is negative")
    for name in ("bring_in", "small_bet", "big_bet", "min_bet"):
        value = getattr(h, name)
        if value is not None and value <= 0:
            raise HandHistoryError(f"field {name!r}: {value} must be positive")
    for key, _ in h.user_defined:
        if not key.startswith("_"):
            raise HandHistoryError(f"user-defined field {key!r} must start with '_'")


def _check_action_players(action: Action, count: int) -> None:
    player = getattr(action, "player", None)
    if player is not None and player >= count:
        raise HandHistoryError(f"p{player + 1} does not exist: the hand has {count} players")


def _check_dealt_cards_distinct(actions: Sequence[Action], texts: Sequence[str]) -> None:
    first_seen: dict[str, int] = {}
    for index, action in enumerate(actions):
        if isinstance(action, DealHole | DealBoard):
            for item in action.cards:
                if item == UNKNOWN_CARD:
                    continue
                if item in first_seen:
                    raise HandHistoryError(
                        f"actions[{index}] {texts[index]!r}: {item} was already dealt "
                        f"by actions[{first_seen[item]}]"
                    )
                first_seen[item] = index


# -- reading ----------------------------------------------------------------------------


def _convert(name: str, value: Any) -> Any:
    where = f"field {name!r}"
    if name in _INT_ARRAYS:
        if not isinstance(value, list):
            raise HandHistoryError(f"{where}: expected an array of amounts")
        return tuple(_chips(v, f"{where}[{i}]") for i, v in enumerate(value))
    if name in _INT_SCALARS:
        return _chips(value, where)
    if name in _STRINGS:
        if not isinstance(value, str):
            raise HandHistoryError(f"{where}: expected a string")
        return value
    if name in _PLAIN_INTS:
        if isinstance(value, bool) or not isinstance(value, int):
            raise HandHistoryError(f"{where}: expected an integer")
        return value
    if name == "actions":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise HandHistoryError(f"{where}: expected an array of strings")
        return tuple(value)
    if name == "players":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise HandHistoryError(f"{where}: expected an array of names")
        return tuple(value)
    if name == "seats":
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise HandHistoryError(f"{where}: expected an array of seat numbers")
        return tuple(value)
    if name in ("hand", "table"):
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise HandHistoryError(f"{where}: expected a string or an integer")
        return value
    if name == "time":
        if not isinstance(value, datetime.time):
            raise HandHistoryError(f"{where}: expected a TOML local time like 12:34:56")
        return value
    if name == "ante_trimming_status":
        if not isinstance(value, bool):
            raise HandHistoryError(f"{where}: expected true or false")
        return value
    if name == "time_limit":
        return _seconds(value, where)
    if name == "time_banks":
        if not isinstance(value, list):
            raise HandHistoryError(f"{where}: expected an array of seconds")
        return tuple(_seconds(v, f"{where}[{i}]") for i, v in enumerate(value))
    raise AssertionError(name)  # pragma: no cover - FIELD_ORDER and _convert agree


def _seconds(value: Any, where: str) -> int | float:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise HandHistoryError(f"{where}: expected a number of seconds")
    if isinstance(value, Decimal):
        return int(value) if value.is_finite() and value == int(value) else float(value)
    return value


def _plain(value: Any) -> Any:
    """User-defined values as plain TOML types (Decimal back to float)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def from_mapping(document: Mapping[str, Any]) -> HandHistory:
    """A :class:`HandHistory` from an already-parsed TOML table."""
    known = set(FIELD_ORDER)
    kwargs: dict[str, Any] = {}
    user: list[tuple[str, Any]] = []
    for name, value in document.items():
        if name.startswith("_"):
            user.append((name, _plain(value)))
        elif name in known:
            kwargs[name] = _convert(name, value)
        else:
            raise HandHistoryError(
                f"unknown field {name!r}; the standard's fields are listed at "
                "https://phh.readthedocs.io and user-defined fields start with '_'"
            )
    for name in ("variant", "starting_stacks", "actions"):
        if name not in kwargs:
            raise HandHistoryError(f"missing required field {name!r}")
    if "antes" not in kwargs:
        raise HandHistoryError("missing required field 'antes' (write zeros for no antes)")
    return HandHistory(**kwargs, user_defined=tuple(user))


def _parse_toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise HandHistoryError(f"not valid TOML: {exc}") from None


def loads(text: str) -> HandHistory:
    """Parse one PHH document."""
    return from_mapping(_parse_toml(text))


def loads_all(text: str) -> list[HandHistory]:
    """Parse a ``.phhs`` file: several hands, each under its own table header (``[1]``)."""
    document = _parse_toml(text)
    hands = []
    for key, value in document.items():
        if not isinstance(value, dict):
            raise HandHistoryError(f"top-level key {key!r}: a .phhs file holds only [hand] tables")
        try:
            hands.append(from_mapping(value))
        except HandHistoryError as exc:
            raise HandHistoryError(f"hand [{key}]: {exc}") from None
    return hands


# -- writing ----------------------------------------------------------------------------


def _toml(value: Any) -> str:
    """One TOML value as tomli-w writes it; arrays of plain values on one line."""
    if isinstance(value, list | tuple) and not any(isinstance(v, list | dict) for v in value):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return tomli_w.dumps({"v": value})[len("v = ") :].rstrip("\n")


def _lines(history: HandHistory) -> Iterator[str]:
    for name in FIELD_ORDER:
        value = getattr(history, name)
        if value is None:
            continue
        if name == "actions":
            if not value:
                yield "actions = []"
                continue
            yield "actions = ["
            for text in value:
                yield f"  {_toml(text)},"
            yield "]"
        else:
            yield f"{name} = {_toml(value)}"


def dumps(history: HandHistory, *, comment: str | None = None) -> str:
    """The PHH text of a hand, fields in the standard's order; ``comment`` heads the file."""
    head = [f"# {line}".rstrip() for line in comment.splitlines()] if comment else []
    body = list(_lines(history))
    tables = {k: v for k, v in history.user_defined if isinstance(v, dict)}
    for key, value in history.user_defined:
        if key not in tables:
            body.append(f"{_toml_key(key)} = {_toml(value)}")
    text = "\n".join([*head, *body]) + "\n"
    if tables:
        text += "\n" + tomli_w.dumps(tables)
    return text


def _toml_key(key: str) -> str:
    return tomli_w.dumps({key: 0}).split(" = ", 1)[0]


# -- replay with the ludex engine -------------------------------------------------------

REPLAYABLE_VARIANTS: Final = ("NT", "PO")


class IllegalHistoryAction(HandHistoryError):
    """An action of a history that the engine refuses; ``index`` is 0-based in ``actions``."""

    def __init__(self, index: int, action: str, reason: str) -> None:
        super().__init__(f"actions[{index}] {action!r}: {reason}")
        self.index = index
        self.action = action
        self.reason = reason


@dataclass(frozen=True, slots=True)
class PotAward:
    """Pot ``pot`` (0 = main) of ``amount`` chips after rake, split as ``shares``."""

    pot: int
    amount: int
    winners: tuple[int, ...]
    shares: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What the engine made of a hand history.

    ``finishing_stacks`` are the engine's stacks after the last action (the hand's end
    when ``complete``); ``expected_stacks`` are the file's ``finishing_stacks`` (if any)
    and ``mismatches`` the players (0-based) whose stacks differ from them.
    """

    variant: str
    players: tuple[str, ...]
    starting_stacks: tuple[int, ...]
    finishing_stacks: tuple[int, ...]
    payoffs: tuple[int, ...]
    pots: tuple[PotAward, ...]
    rake: int
    complete: bool
    expected_stacks: tuple[int, ...] | None
    mismatches: tuple[int, ...]
    config: GameConfig = field(repr=False, compare=False)
    operations: tuple[Operation, ...] = field(repr=False, compare=False)

    @property
    def agrees(self) -> bool | None:
        """True/False when the file has ``finishing_stacks``, else None."""
        return None if self.expected_stacks is None else not self.mismatches

    def mismatch_lines(self) -> list[str]:
        """One sentence per player whose stack differs from the file's."""
        expected = self.expected_stacks or ()
        lines = []
        for i in self.mismatches:
            who = f"p{i + 1}"
            if self.players[i] != who:
                who += f" ({self.players[i]})"
            lines.append(
                f"{who}: the file's finishing stack is {expected[i]}, ludex ends with "
                f"{self.finishing_stacks[i]} ({self.finishing_stacks[i] - expected[i]:+d})"
            )
        return lines


RAKE_BASIS_POINTS: Final = "_rake_basis_points"
RAKE_CAP: Final = "_rake_cap"
RAKE_NO_FLOP_NO_DROP: Final = "_rake_no_flop_no_drop"
"""User-defined PHH fields (the standard has none for rake) that ludex writes for a raked
hand and reads when it replays one, so a raked hand replays to its own stacks."""


def _user_int(extra: dict[str, Any], key: str, default: int | None) -> int | None:
    value = extra.get(key, default)
    if value is not None and (type(value) is not int or value < 0):
        raise HandHistoryError(f"field {key!r} must be a non-negative integer, got {value!r}")
    return value


def engine_setup(history: HandHistory) -> tuple[GameConfig, int]:
    """The engine's :class:`~ludex.poker.rules.GameConfig` and button for a history.

    PHH puts the small blind on ``p1``, the big blind on ``p2``, straddles on ``p3``,
    ``p4``... and the button on the last player; heads-up the standard reverses the
    blinds, so ``p2`` is the button and posts ``blinds_or_straddles[0]``, exactly as the
    engine seats a heads-up hand with the button last. Antes may be absent, the same for
    everyone, or a big-blind ante (non-zero only at index 1).
    """
    from ludex.errors import PokerError
    from ludex.poker.rules import MAX_SEATS, GameConfig, RakeConfig, Variant

    if history.variant not in REPLAYABLE_VARIANTS:
        raise HandHistoryError(
            f"variant {history.variant!r}: ludex deals only "
            f"{' and '.join(repr(v) for v in REPLAYABLE_VARIANTS)}"
        )
    count = history.player_count
    if count > MAX_SEATS:
        raise HandHistoryError(f"{count} players: ludex deals at most {MAX_SEATS}")
    blinds = history.blinds_or_straddles or ()
    straddles: list[int] = []
    for amount in blinds[2:]:
        if not amount:
            break
        straddles.append(amount)
    if any(blinds[2 + len(straddles) :]):
        raise HandHistoryError(
            f"field 'blinds_or_straddles' {list(blinds)}: ludex posts straddles only on the "
            "players right after the big blind (p3, p4, ...), without gaps"
        )
    antes = history.antes
    if not any(antes):
        ante, big_blind_ante = 0, False
    elif len(set(antes)) == 1:
        ante, big_blind_ante = antes[0], False
    elif [i for i, a in enumerate(antes) if a] == [1]:
        ante, big_blind_ante = antes[1], True
    else:
        raise HandHistoryError(
            f"field 'antes' {list(antes)}: ludex supports no ante, one ante for everyone, "
            "or a big-blind ante (non-zero at p2 only)"
        )
    extra = dict(history.user_defined)
    try:
        rake = RakeConfig(
            basis_points=_user_int(extra, RAKE_BASIS_POINTS, 0) or 0,
            cap=_user_int(extra, RAKE_CAP, None),
            no_flop_no_drop=bool(extra.get(RAKE_NO_FLOP_NO_DROP, True)),
        )
        config = GameConfig(
            variant=Variant(history.variant),
            small_blind=blinds[0],
            big_blind=blinds[1],
            ante=ante,
            big_blind_ante=big_blind_ante,
            straddles=tuple(straddles),
            min_bet=history.min_bet or 0,
            seat_count=count,
            rake=rake,
        )
    except PokerError as exc:
        raise HandHistoryError(f"the hand's stakes: {exc}") from None
    return config, count - 1


def replay(history: HandHistory) -> ReplayResult:
    """Play ``history`` through the ludex engine and report the stacks, pots and rake.

    Illegal actions raise :class:`IllegalHistoryAction` with the action's index, text
    and the engine's reason. A history that stops at the showdown is finished with the
    engine's default show-or-muck; one that stops earlier reports the stacks so far
    (``complete`` is False), which is how PHH reads ``finishing_stacks`` of such a hand.
    """
    from ludex.errors import PokerError
    from ludex.poker.operations import AwardPot
    from ludex.poker.state import Phase, State

    config, button = engine_setup(history)
    try:
        state = State(config, history.starting_stacks, button)
    except PokerError as exc:
        raise HandHistoryError(f"the hand cannot start: {exc}") from None
    pending: dict[int, list[int]] = {}
    for index, (text, action) in enumerate(
        zip(history.actions, history.parsed_actions, strict=True)
    ):
        try:
            _apply(state, action, pending)
        except (PokerError, CardError) as exc:
            raise IllegalHistoryAction(index, text, _phh_players(str(exc))) from None
    if pending:
        player = min(pending)
        raise HandHistoryError(
            f"p{player + 1} was dealt {len(pending[player])} of "
            f"{config.variant.hole_card_count} hole cards"
        )
    try:
        while state.phase is Phase.SHOWDOWN:
            state.show_or_muck()
    except PokerError as exc:
        raise HandHistoryError(
            f"the history ends at the showdown, which cannot finish: {exc}"
        ) from None
    finishing = tuple(state.stacks)
    expected = history.finishing_stacks
    mismatches = (
        tuple(i for i, (a, b) in enumerate(zip(finishing, expected, strict=True)) if a != b)
        if expected is not None
        else ()
    )
    return ReplayResult(
        variant=history.variant,
        players=tuple(history.player_name(i) for i in range(history.player_count)),
        starting_stacks=history.starting_stacks,
        finishing_stacks=finishing,
        payoffs=tuple(state.payoffs),
        pots=tuple(
            PotAward(op.pot, op.amount, op.winners, op.shares)
            for op in state.operations
            if isinstance(op, AwardPot)
        ),
        rake=state.rake,
        complete=state.is_done,
        expected_stacks=expected,
        mismatches=mismatches,
        config=config,
        operations=tuple(state.operations),
    )


def _phh_players(reason: str) -> str:
    """The engine's 0-based "player 3" as PHH's "p4", so the reason reads like the file."""
    return re.sub(r"\bplayer (\d+)", lambda m: f"p{int(m[1]) + 1}", reason)


def _card_ids(cards: Sequence[str]) -> list[int]:
    from ludex.poker.state import UNKNOWN_CARD as UNKNOWN_ID

    return [UNKNOWN_ID if c == UNKNOWN_CARD else card(c) for c in cards]


def _apply(state: State, action: Action, pending: dict[int, list[int]]) -> None:
    from ludex.errors import IllegalAction
    from ludex.poker.operations import ShowOrMuck as ShownOperation
    from ludex.poker.state import UNKNOWN_CARD as UNKNOWN_ID
    from ludex.poker.state import Phase

    match action:
        case NoOp():
            return
        case DealHole(player, cards, _):
            need = state.config.variant.hole_card_count
            if state.phase is not Phase.DEAL_HOLE:
                state.verify_deal_hole([UNKNOWN_ID] * need, player)
            held = pending.get(player, []) + _card_ids(cards)
            if len(held) > need:
                raise IllegalAction(f"p{player + 1} would hold {len(held)} hole cards, not {need}")
            if len(held) < need:
                pending[player] = held
                return
            pending.pop(player, None)
            state.deal_hole(held, player)
        case DealBoard(cards, _):
            if UNKNOWN_CARD in cards:
                raise IllegalAction("board cards must be known to replay the hand")
            state.deal_board(_card_ids(cards))
        case Fold(player, _):
            state.fold(player)
        case CheckOrCall(player, _):
            state.check_or_call(player)
        case CompleteBetOrRaiseTo(player, amount, _):
            state.bet_or_raise(amount, player)
        case ShowOrMuck(player, cards, shows_dealt, _):
            shown = None if not cards or UNKNOWN_CARD in cards else _card_ids(cards)
            if state.phase is not Phase.SHOWDOWN and not action.mucks:
                # All-in hands are tabled by the engine itself; the history restating
                # them is fine as long as it names the same cards.
                tabled = any(
                    isinstance(op, ShownOperation) and op.player == player and op.cards
                    for op in state.operations
                )
                holes = list(state.hole_cards(player))
                if tabled and (shows_dealt or shown is None or shown == holes):
                    if UNKNOWN_ID in holes and shown is not None:
                        raise IllegalAction(
                            f"p{player + 1}'s cards were dealt unknown and cannot be revealed "
                            "during an all-in run-out"
                        )
                    return
            state.show_or_muck(not action.mucks, player, shown)
        case PostBringIn() | StandPatOrDiscard():
            raise IllegalAction(f"{state.config.variant.value} has no bring-in and no draws")


def from_operations(
    config: GameConfig,
    operations: Sequence[Operation],
    *,
    players: Sequence[str] | None = None,
    seats: Sequence[int] | None = None,
    **optional: Any,
) -> HandHistory:
    """The PHH history of a hand the engine played, from its operation log.

    PHH numbers players from the small blind (``p1``) to the button, so engine player
    ``(button + 1 + k) % n`` becomes ``p{k+1}``; ``players`` and ``seats``, if given,
    are in engine order and are reordered the same way. ``optional`` sets further
    fields (``table``, ``hand``, ``event`` ...). ``finishing_stacks`` are filled in when
    the log reaches the awards. Hands with a dead button, a dead small blind or
    returning players' missed-blind posts are refused: the standard has no notation
    for them.
    """
    from ludex.poker import operations as ops
    from ludex.poker.cards import card_str
    from ludex.poker.state import UNKNOWN_CARD as UNKNOWN_ID

    if not operations or not isinstance(operations[0], ops.StartHand):
        raise HandHistoryError("an operation log starts with a StartHand record")
    start: ops.StartHand = operations[0]
    n, button = len(start.starting_stacks), start.button
    order = [(button + 1 + k) % n for k in range(n)]
    label = {engine: k for k, engine in enumerate(order)}
    standard_sb = order[0] if n > 2 else button
    standard_bb = order[1] if n > 2 else order[0]
    if (
        start.missed_blinds
        or start.small_blind not in (standard_sb, None)
        or (start.big_blind != standard_bb)
    ):
        raise HandHistoryError(
            "this hand's blinds (dead button, dead small blind or missed-blind posts) "
            "have no PHH notation"
        )
    small_blind = config.small_blind if start.small_blind is not None else 0
    blinds = [small_blind, config.big_blind, *config.straddles]
    blinds += [0] * (n - len(blinds))
    if config.ante and config.big_blind_ante:
        antes = tuple(config.ante if k == 1 else 0 for k in range(n))
    else:
        antes = (config.ante,) * n

    def cards_text(values: Sequence[int]) -> str:
        return "".join(UNKNOWN_CARD if v == UNKNOWN_ID else card_str(v) for v in values)

    actions: list[str] = []
    stacks = list(start.starting_stacks)
    finished = False
    for op in operations[1:]:
        match op:
            case ops.DealHole(player, cards):
                actions.append(f"d dh p{label[player] + 1} {cards_text(cards)}")
            case ops.DealBoard(_, cards):
                actions.append(f"d db {cards_text(cards)}")
            case ops.Fold(player):
                actions.append(f"p{label[player] + 1} f")
            case ops.CheckOrCall(player, amount, _):
                actions.append(f"p{label[player] + 1} cc")
                stacks[player] -= amount
            case ops.BetOrRaise(player, amount, added, _):
                actions.append(f"p{label[player] + 1} cbr {amount}")
                stacks[player] -= added
            case ops.ShowOrMuck(player, cards):
                shown = f" {cards_text(cards)}" if cards else ""
                actions.append(f"p{label[player] + 1} sm{shown}")
            case ops.PostAnte(player, amount, _) | ops.PostBlind(player, amount):
                stacks[player] -= amount
            case ops.PostStraddle(player, amount) | ops.PostDead(player, amount):
                stacks[player] -= amount
            case ops.ReturnUncalled(player, amount):
                stacks[player] += amount
            case ops.AwardPot(_, _, winners, shares):
                for player, share in zip(winners, shares, strict=True):
                    stacks[player] += share
                finished = True
    if players is not None:
        optional["players"] = tuple(players[e] for e in order)
    if seats is not None:
        optional["seats"] = tuple(seats[e] for e in order)
    if finished:
        optional.setdefault("finishing_stacks", tuple(stacks[e] for e in order))
    if config.rake.basis_points:
        rake_fields: list[tuple[str, Any]] = [
            (RAKE_BASIS_POINTS, config.rake.basis_points),
            (RAKE_NO_FLOP_NO_DROP, config.rake.no_flop_no_drop),
        ]
        if config.rake.cap is not None:
            rake_fields.append((RAKE_CAP, config.rake.cap))
        optional["user_defined"] = (*optional.get("user_defined", ()), *rake_fields)
    return HandHistory(
        variant=config.variant.value,
        antes=antes,
        blinds_or_straddles=tuple(blinds),
        min_bet=config.effective_min_bet,
        starting_stacks=tuple(start.starting_stacks[e] for e in order),
        actions=tuple(actions),
        **optional,
    )
