"""A cash-game table: seats and stacks, buy-ins and cash-outs, the button, turn timers
with a time bank, the committed shuffle and the hand engine, as one pure state machine.

A :class:`Table` never reads a clock, never draws randomness and never does I/O. The
table's owner (:mod:`ludex.gameserver.host`) passes ``now`` (unix seconds) to every
call, draws each hand's server seed, saves :meth:`Table.to_bytes` after every change
and carries out what the table asks for:

* **Messages** (:attr:`Step.messages`) for the realtime stream: public ones for the
  ``table:ID`` channel, private ones (hole cards) for one player's channel only.
* **Effects** (:attr:`Table.effects`): durable work that must happen exactly once,
  kept *in the saved state* until the owner reports it done
  (:meth:`Table.effects_done`). A buy-in and a cash-out are ledger transfers; a
  finished hand moves the rake and writes ``poker.hand_completed``; every engine
  operation is a ``poker.*`` event. Each effect has a stable id, so an owner that
  crashed after doing an effect but before saving does it again harmlessly.

Rules beyond the engine's (``docs/gameserver.md``):

* **Buy-in** is two steps: :meth:`sit` reserves the seat and asks for the transfer
  (``BuyIn``); :meth:`buy_in_settled` seats the player or frees the seat.
* **Button.** It moves to the next player dealt in, clockwise, every hand, and the
  blinds follow it (no dead button: PHH, our hand-history format, has no notation for
  dead buttons, dead small blinds or missed-blind posts). A player returning from
  sitting out is dealt in at once.
* **Turn timer.** The actor has ``action_seconds``; then the time bank runs (refilled
  by ``time_bank_refill_seconds`` per hand up to ``time_bank_seconds``); when both are
  gone the player checks if that is legal, else folds, and sits out from the next hand.
  A player sitting out or leaving who is still in a hand acts the same way at once.
* **Leaving** between hands cashes out at once; a player dealt into the hand in play
  (folded or not) keeps the seat and cashes out when the hand ends (folded at once if it
  is their turn, or when the action reaches them). A player whose stack reaches 0 leaves.

Never: I/O, clocks, randomness, floats in chip amounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Final, Literal

import msgspec

from ludex.errors import IllegalAction, PokerError
from ludex.poker import operations as ops
from ludex.poker import phh
from ludex.poker.cards import card_str
from ludex.poker.record import HandRecord, dealt_from_operations, from_json, seal
from ludex.poker.rules import GameConfig, RakeConfig, Variant
from ludex.poker.shuffle import commitment, deck_for
from ludex.poker.state import Phase, State

MAX_TABLE_ID: Final = 32
"""Table ids name ledger accounts (``table:<id>``, at most 64 characters) and channels."""
MAX_PLAYER: Final = 42
ACTIONS: Final = ("fold", "check", "call", "bet", "raise", "check_call", "bet_raise")


class TableError(PokerError):
    """The table refused a request (seat taken, buy-in out of range, not seated...)."""


class SeatStatus(StrEnum):
    BUYING_IN = "buying_in"
    SEATED = "seated"


class TableConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A table's fixed settings; amounts in the ledger's minor units (chips)."""

    table_id: str
    name: str = ""
    variant: Literal["NT", "PO"] = "NT"
    small_blind: int = 1
    big_blind: int = 2
    ante: int = 0
    seat_count: int = 6
    rake_basis_points: int = 0
    rake_cap: int | None = None
    currency: str = "CHIPS"
    min_buy_in: int = 40
    max_buy_in: int = 200
    action_seconds: float = 15.0
    time_bank_seconds: float = 30.0
    time_bank_refill_seconds: float = 5.0
    next_hand_seconds: float = 2.0

    def __post_init__(self) -> None:
        tid = self.table_id
        if not (
            isinstance(tid, str)
            and 1 <= len(tid) <= MAX_TABLE_ID
            and all(c.isascii() and (c.isalnum() or c in "-_.") for c in tid)
        ):
            raise TableError(
                f"table id {str(tid)[:50]!r} must be 1 to {MAX_TABLE_ID} letters, digits, "
                "'-', '_' or '.'"
            )
        if len(self.name) > 100:
            raise TableError("a table name is at most 100 characters")
        self.game()  # the engine validates blinds, ante, seats and rake
        if not 0 < self.min_buy_in <= self.max_buy_in:
            raise TableError(
                f"buy-in range {self.min_buy_in}..{self.max_buy_in} must be positive and ordered"
            )
        if self.min_buy_in < self.big_blind:
            raise TableError(f"min_buy_in {self.min_buy_in} is below the big blind")
        for name in ("action_seconds", "time_bank_seconds", "time_bank_refill_seconds"):
            value = getattr(self, name)
            if not 0 <= value <= 3600:
                raise TableError(f"{name} {value} must be in 0..3600")
        if not self.action_seconds > 0:
            raise TableError("action_seconds must be > 0")
        if not 0 <= self.next_hand_seconds <= 600:
            raise TableError(f"next_hand_seconds {self.next_hand_seconds} must be in 0..600")

    def game(self) -> GameConfig:
        return GameConfig(
            variant=Variant(self.variant),
            small_blind=self.small_blind,
            big_blind=self.big_blind,
            ante=self.ante,
            seat_count=self.seat_count,
            rake=RakeConfig(basis_points=self.rake_basis_points, cap=self.rake_cap),
        )


class Seat(msgspec.Struct, kw_only=True):
    player: str
    stack: int
    status: SeatStatus
    session: str
    """The sitting's id (from the join request): names its buy-in and cash-out transfers."""
    time_bank: float
    sitting_out: bool = False
    leaving: bool = False


# -- effects: durable, exactly once --------------------------------------------------


class BuyIn(msgspec.Struct, frozen=True, kw_only=True, tag="buy_in"):
    """Move ``amount`` from the player's account to the table's escrow."""

    id: str
    player: str
    seat: int
    amount: int
    session: str


class CashOut(msgspec.Struct, frozen=True, kw_only=True, tag="cash_out"):
    """Move ``amount`` from the table's escrow back to the player's account."""

    id: str
    player: str
    seat: int
    amount: int
    session: str


class HandStartedEffect(msgspec.Struct, frozen=True, kw_only=True, tag="hand_started"):
    id: str
    hand_id: str
    button_seat: int
    seats: dict[str, str]
    stacks: dict[str, int]
    commitment: str


class ActionEffect(msgspec.Struct, frozen=True, kw_only=True, tag="action"):
    id: str
    hand_id: str
    sequence: int
    seat: int | None
    action: str
    amount: int = 0


class HandDone(msgspec.Struct, frozen=True, kw_only=True, tag="hand_completed"):
    """A finished hand: move the rake, store the record, emit ``poker.hand_completed``."""

    id: str
    hand_id: str
    number: int
    record: str
    """The sealed :class:`~ludex.poker.record.HandRecord` as JSON."""
    history_phh: str
    commitment: str
    seed_reveal: str
    previous_record_hash: str
    record_hash: str
    deltas: dict[str, int]
    rake: int


Effect = BuyIn | CashOut | HandStartedEffect | ActionEffect | HandDone


class Message(msgspec.Struct, frozen=True):
    """A realtime message: ``player`` None goes to the table channel, else privately."""

    type: str
    data: dict[str, Any]
    player: str | None = None


class Step(msgspec.Struct):
    """What one call produced: messages to send now (effects are in the table)."""

    messages: list[Message] = msgspec.field(default_factory=list)


# -- the saved state -------------------------------------------------------------------


class _Hand(msgspec.Struct, kw_only=True):
    hand_id: str
    number: int
    server_seed: str
    commitment: str
    seats: tuple[int, ...]
    """Engine player index -> seat number."""
    players: tuple[str, ...]
    deck: tuple[int, ...]
    deck_pos: int
    state: bytes
    ops_seen: int
    deadline: float | None = None
    bank_started: float | None = None


class _Data(msgspec.Struct, kw_only=True):
    config: TableConfig
    seats: dict[int, Seat] = msgspec.field(default_factory=dict)
    button_seat: int | None = None
    hands_played: int = 0
    last_record: str | None = None
    hand: _Hand | None = None
    next_hand_at: float | None = None
    effects: list[Effect] = msgspec.field(default_factory=list)
    version: int = 0


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(_Data)


def _check_player(player: object) -> str:
    if not isinstance(player, str) or not 1 <= len(player) <= MAX_PLAYER:
        raise TableError(f"player id must be 1 to {MAX_PLAYER} characters")
    return player


def _check_session(session: object) -> str:
    if not (
        isinstance(session, str)
        and 1 <= len(session) <= 20
        and all(c.isascii() and (c.isalnum() or c in "-_") for c in session)
    ):
        raise TableError("the request id must be 1 to 20 letters, digits, '-' or '_'")
    return session


class Table:
    """One table; see the module docstring. Every mutating call takes ``now``."""

    __slots__ = ("_data", "_state")

    def __init__(self, config: TableConfig) -> None:
        self._data = _Data(config=config)
        self._state: State | None = None

    # -- persistence -----------------------------------------------------------------

    def to_bytes(self) -> bytes:
        if self._data.hand is not None and self._state is not None:
            self._data.hand.state = self._state.to_bytes()
        return _ENCODER.encode(self._data)

    @classmethod
    def from_bytes(cls, blob: bytes) -> Table:
        try:
            data = _DECODER.decode(blob)
        except (msgspec.DecodeError, PokerError) as exc:
            raise TableError(f"saved table state does not decode: {exc}") from None
        table = cls.__new__(cls)
        table._data = data
        table._state = State.from_bytes(data.hand.state) if data.hand is not None else None
        return table

    # -- queries ---------------------------------------------------------------------

    @property
    def config(self) -> TableConfig:
        return self._data.config

    @property
    def table_id(self) -> str:
        return self._data.config.table_id

    @property
    def version(self) -> int:
        """Bumped by every change; the owner saves when it moved."""
        return self._data.version

    @property
    def effects(self) -> tuple[Effect, ...]:
        return tuple(self._data.effects)

    @property
    def hands_played(self) -> int:
        return self._data.hands_played

    @property
    def hand_id(self) -> str | None:
        return self._data.hand.hand_id if self._data.hand else None

    @property
    def last_record(self) -> HandRecord | None:
        raw = self._data.last_record
        return None if raw is None else from_json(msgspec.json.decode(raw.encode()))

    def seats(self) -> dict[int, Seat]:
        return dict(self._data.seats)

    def seat_of(self, player: str) -> int | None:
        for number, seat in self._data.seats.items():
            if seat.player == player:
                return number
        return None

    def chips_at_table(self) -> int:
        """Chips the escrow holds for this table: seated stacks plus the hand in play."""
        total = sum(s.stack for s in self._data.seats.values() if s.status is SeatStatus.SEATED)
        hand, state = self._data.hand, self._state
        if hand is not None and state is not None:
            for k, number in enumerate(hand.seats):
                seat = self._data.seats.get(number)
                if seat is not None and seat.player == hand.players[k]:
                    total -= seat.stack
            total += state.chips_in_play()
        return total

    def wake_at(self) -> float | None:
        """When :meth:`tick` has something to do (a deadline or the next deal)."""
        hand = self._data.hand
        if hand is not None:
            return hand.deadline
        if self._dealable():
            return self._data.next_hand_at
        return None

    def public_view(self) -> dict[str, Any]:
        """The table as anyone may see it (the snapshot of its channel)."""
        d = self._data
        view: dict[str, Any] = {
            "table_id": d.config.table_id,
            "config": msgspec.to_builtins(d.config),
            "seats": {
                str(n): {
                    "player": s.player,
                    "stack": s.stack,
                    "status": s.status.value,
                    "sitting_out": s.sitting_out,
                    "time_bank": round(s.time_bank, 3),
                }
                for n, s in sorted(d.seats.items())
            },
            "button_seat": d.button_seat,
            "hands_played": d.hands_played,
            "hand": None,
        }
        hand, state = d.hand, self._state
        if hand is not None and state is not None:
            actor = state.actor
            view["hand"] = {
                "hand_id": hand.hand_id,
                "number": hand.number,
                "commitment": hand.commitment,
                "seats": list(hand.seats),
                "stacks": list(state.stacks),
                "bets": list(state.bets),
                "pot": state.total_pot,
                "board": [card_str(c) for c in state.board],
                "actor_seat": None if actor is None else hand.seats[actor],
                "deadline": hand.deadline,
                "legal": self._legal(),
            }
        return view

    def private_view(self, player: str) -> dict[str, Any] | None:
        """The player's own hole cards in the hand in play, if any."""
        hand, state = self._data.hand, self._state
        if hand is None or state is None or player not in hand.players:
            return None
        k = hand.players.index(player)
        return {
            "hand_id": hand.hand_id,
            "seat": hand.seats[k],
            "cards": [card_str(c) for c in state.hole_cards(k)],
        }

    # -- seats -----------------------------------------------------------------------

    def sit(self, player: str, seat: int, amount: int, session: str, now: float) -> Step:
        """Reserve ``seat`` and ask for the buy-in transfer (effect ``BuyIn``)."""
        d = self._data
        _check_player(player)
        _check_session(session)
        if type(seat) is not int or not 0 <= seat < d.config.seat_count:
            raise TableError(f"seat must be in 0..{d.config.seat_count - 1}")
        if type(amount) is not int or not d.config.min_buy_in <= amount <= d.config.max_buy_in:
            raise TableError(
                f"buy-in must be {d.config.min_buy_in}..{d.config.max_buy_in} {d.config.currency}"
            )
        mine = self.seat_of(player)
        if mine is not None:
            if mine == seat and d.seats[mine].session == session:
                return Step()  # the same request again: nothing new
            raise TableError(f"{player} already sits in seat {mine}; leave first")
        if seat in d.seats:
            raise TableError(f"seat {seat} is taken")
        d.seats[seat] = Seat(
            player=player,
            stack=0,
            status=SeatStatus.BUYING_IN,
            session=session,
            time_bank=d.config.time_bank_seconds,
        )
        d.effects.append(
            BuyIn(
                # The table's version, not the client's request id: a request id reused
                # for a later sitting must not name a transfer that was already made.
                id=f"buyin:{d.config.table_id}:{d.version}:{seat}",
                player=player,
                seat=seat,
                amount=amount,
                session=session,
            )
        )
        return self._changed(Step([Message("seat_reserved", {"seat": seat, "player": player})]))

    def buy_in_settled(self, session: str, amount: int, ok: bool, now: float) -> Step:
        """The ledger answered the buy-in of ``session``: seat the player or free the seat."""
        for number, seat in self._data.seats.items():
            if seat.session == session and seat.status is SeatStatus.BUYING_IN:
                if ok:
                    seat.status = SeatStatus.SEATED
                    seat.stack = amount
                    self._schedule_deal(now)
                    return self._changed(
                        Step(
                            [
                                Message(
                                    "seated",
                                    {"seat": number, "player": seat.player, "stack": amount},
                                )
                            ]
                        )
                    )
                del self._data.seats[number]
                return self._changed(
                    Step([Message("seat_freed", {"seat": number, "player": seat.player})])
                )
        return Step()

    def leave(self, player: str, now: float) -> Step:
        """Cash out now, or at the end of the hand the player is still in."""
        number = self._require_seat(player)
        seat = self._data.seats[number]
        if seat.status is SeatStatus.BUYING_IN:
            raise TableError("the buy-in is still in progress; leave when seated")
        if self._dealt_in(player):
            seat.leaving = True
            step = self._changed(Step([Message("leaving", {"seat": number, "player": player})]))
            if self._actor_player() == player:
                step.messages += self._auto_act(now).messages
            return step
        step = Step()
        self._cash_out(number, step)
        return self._changed(step)

    def sit_out(self, player: str, now: float) -> Step:
        number = self._require_seat(player)
        self._data.seats[number].sitting_out = True
        step = self._changed(Step([Message("sitting_out", {"seat": number, "player": player})]))
        if self._actor_player() == player:
            step.messages += self._auto_act(now).messages
        return step

    def sit_in(self, player: str, now: float) -> Step:
        number = self._require_seat(player)
        seat = self._data.seats[number]
        if not seat.sitting_out:
            return Step()
        seat.sitting_out = False
        self._schedule_deal(now)
        return self._changed(Step([Message("sitting_in", {"seat": number, "player": player})]))

    # -- hands -----------------------------------------------------------------------

    def ready_to_deal(self, now: float) -> bool:
        d = self._data
        return (
            d.hand is None
            and self._dealable()
            and (d.next_hand_at is None or d.next_hand_at <= now)
        )

    def start_hand(self, hand_id: str, server_seed: bytes, now: float) -> Step:
        """Deal a hand with ``server_seed`` (secret until the hand ends)."""
        d = self._data
        if d.hand is not None:
            raise TableError(f"hand {d.hand.hand_id} is still in play")
        dealt = self._dealt_seats()
        if len(dealt) < 2:
            raise TableError("a hand needs two seated players who are not sitting out")
        previous, count = d.button_seat, d.config.seat_count
        if previous is None:
            button_seat = dealt[0]
        else:
            button_seat = min(dealt, key=lambda s: (s - previous - 1) % count)
        d.button_seat = button_seat
        for number in dealt:
            seat = d.seats[number]
            seat.time_bank = min(
                d.config.time_bank_seconds, seat.time_bank + d.config.time_bank_refill_seconds
            )
        game = d.config.game()
        players = tuple(d.seats[s].player for s in dealt)
        stacks = [d.seats[s].stack for s in dealt]
        state = State(game, stacks, dealt.index(button_seat))
        shown = commitment(server_seed)
        deck = tuple(deck_for(server_seed, (), hand_id))
        hand = _Hand(
            hand_id=hand_id,
            number=d.hands_played,
            server_seed=server_seed.hex(),
            commitment=shown,
            seats=tuple(dealt),
            players=players,
            deck=deck,
            deck_pos=0,
            state=b"",
            ops_seen=1,
        )
        d.hand, self._state, d.next_hand_at = hand, state, None
        seat_map = {str(s): d.seats[s].player for s in dealt}
        stack_map = {str(s): d.seats[s].stack for s in dealt}
        d.effects.append(
            HandStartedEffect(
                id=f"{hand_id}:start",
                hand_id=hand_id,
                button_seat=button_seat,
                seats=seat_map,
                stacks=stack_map,
                commitment=shown,
            )
        )
        step = Step(
            [
                Message(
                    "hand_started",
                    {
                        "hand_id": hand_id,
                        "number": hand.number,
                        "button_seat": button_seat,
                        "seats": seat_map,
                        "stacks": stack_map,
                        "commitment": shown,
                    },
                )
            ]
        )
        per_player = game.variant.hole_card_count
        for _ in dealt:
            cards = deck[hand.deck_pos : hand.deck_pos + per_player]
            hand.deck_pos += per_player
            state.deal_hole(cards)
        self._flush(step)
        self._advance(step, now)
        return self._changed(step)

    def act(
        self, player: str, action: str, amount: int | None, now: float, hand_id: str | None = None
    ) -> Step:
        """The player's decision; IllegalAction (nothing changes) when it is not legal."""
        hand, state = self._data.hand, self._state
        if hand is None or state is None:
            raise IllegalAction("no hand is in play")
        if hand_id is not None and hand_id != hand.hand_id:
            raise IllegalAction(f"hand {hand_id} is over; the hand in play is {hand.hand_id}")
        if state.phase is not Phase.BETTING or state.actor is None:
            raise IllegalAction("nobody may act now")
        actor = state.actor
        if hand.players[actor] != player:
            if player not in hand.players:
                raise IllegalAction(f"{player} is not in hand {hand.hand_id}")
            raise IllegalAction(f"it is seat {hand.seats[actor]}'s turn, not yours")
        if action not in ACTIONS:
            raise IllegalAction(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        call = state.call_amount
        if action in ("check", "call", "check_call", "fold"):
            if amount is not None:
                raise IllegalAction(f"{action} takes no amount")
            if action == "check" and call:
                raise IllegalAction(f"you cannot check: calling costs {call}")
            if action == "call" and not call:
                raise IllegalAction("nothing to call; check instead")
            if action == "fold":
                state.verify_fold()
            else:
                state.verify_check_or_call()
        else:
            if type(amount) is not int:
                raise IllegalAction(f"{action} needs an integer amount (the total bet to reach)")
            state.verify_bet_or_raise(amount)
        self._spend_bank(hand, actor, now)
        if action == "fold":
            state.fold()
        elif action in ("check", "call", "check_call"):
            state.check_or_call()
        else:
            state.bet_or_raise(amount)  # type: ignore[arg-type]
        step = Step()
        self._flush(step)
        self._advance(step, now)
        return self._changed(step)

    def tick(self, now: float) -> Step:
        """Deadlines: start the time bank, or act for a player whose time ran out."""
        hand = self._data.hand
        deadline = None if hand is None else hand.deadline
        if deadline is None or deadline > now:
            return Step()
        hand, state = self._playing()
        actor = _actor(state)
        seat = self._data.seats[hand.seats[actor]]
        if hand.bank_started is None and seat.time_bank > 0:
            hand.bank_started = deadline
            hand.deadline = deadline + seat.time_bank
            return self._changed(
                Step(
                    [
                        Message(
                            "time_bank",
                            {
                                "hand_id": hand.hand_id,
                                "seat": hand.seats[actor],
                                "deadline": hand.deadline,
                            },
                        )
                    ]
                )
            )
        seat.time_bank = 0.0 if hand.bank_started is not None else seat.time_bank
        seat.sitting_out = True
        step = Step(
            [
                Message(
                    "timed_out",
                    {"hand_id": hand.hand_id, "seat": hand.seats[actor], "player": seat.player},
                )
            ]
        )
        step.messages += self._auto_act(now).messages
        return self._changed(step)

    def effects_done(self, ids: Sequence[str]) -> None:
        """The owner carried out these effects durably; forget them."""
        done = set(ids)
        before = len(self._data.effects)
        self._data.effects = [e for e in self._data.effects if e.id not in done]
        if len(self._data.effects) != before:
            self._data.version += 1

    # -- internals -------------------------------------------------------------------

    def _playing(self) -> tuple[_Hand, State]:
        hand, state = self._data.hand, self._state
        if hand is None or state is None:
            raise TableError("no hand is in play")
        return hand, state

    def _changed(self, step: Step) -> Step:
        self._data.version += 1
        return step

    def _require_seat(self, player: str) -> int:
        number = self.seat_of(_check_player(player))
        if number is None:
            raise TableError(f"{player} has no seat at table {self.table_id}")
        return number

    def _dealt_seats(self) -> list[int]:
        return sorted(
            n
            for n, s in self._data.seats.items()
            if s.status is SeatStatus.SEATED and not s.sitting_out and not s.leaving and s.stack > 0
        )

    def _dealable(self) -> bool:
        return len(self._dealt_seats()) >= 2

    def _schedule_deal(self, now: float) -> None:
        if self._data.hand is None and self._data.next_hand_at is None:
            self._data.next_hand_at = now

    def _dealt_in(self, player: str) -> bool:
        """Dealt into the hand in play (folded or not): the seat is theirs until it ends."""
        hand = self._data.hand
        return hand is not None and player in hand.players

    def _actor_player(self) -> str | None:
        hand, state = self._data.hand, self._state
        if hand is None or state is None or state.phase is not Phase.BETTING:
            return None
        actor = state.actor
        return None if actor is None else hand.players[actor]

    def _legal(self) -> dict[str, Any] | None:
        state = self._state
        if state is None or state.phase is not Phase.BETTING:
            return None
        legal = state.legal_actions()
        if legal is None:
            return None
        return {"call": legal.call, "min_to": legal.min_to, "max_to": legal.max_to}

    def _spend_bank(self, hand: _Hand, actor: int, now: float) -> None:
        if hand.bank_started is not None:
            seat = self._data.seats[hand.seats[actor]]
            seat.time_bank = max(0.0, seat.time_bank - max(0.0, now - hand.bank_started))

    def _auto_act(self, now: float) -> Step:
        """Check if legal, else fold, for the actor (timed out, sitting out or leaving)."""
        _, state = self._playing()
        if state.call_amount:
            state.fold()
        else:
            state.check_or_call()
        step = Step()
        self._flush(step)
        self._advance(step, now)
        return step

    def _advance(self, step: Step, now: float) -> None:
        """Deal boards and showdowns until a player must decide or the hand ends."""
        hand, state = self._playing()
        hand.deadline = hand.bank_started = None
        while True:
            phase = state.phase
            if phase is Phase.DEAL_BOARD:
                due = state.board_cards_due
                hand.deck_pos += 1  # the burn card
                state.deal_board(hand.deck[hand.deck_pos : hand.deck_pos + due])
                hand.deck_pos += due
            elif phase is Phase.SHOWDOWN:
                state.show_or_muck()
            elif phase is Phase.BETTING:
                actor = _actor(state)
                seat = self._data.seats[hand.seats[actor]]
                if seat.sitting_out or seat.leaving:
                    if state.call_amount:
                        state.fold()
                    else:
                        state.check_or_call()
                    continue
                hand.deadline = now + self._data.config.action_seconds
                self._flush(step)
                step.messages.append(
                    Message(
                        "turn",
                        {
                            "hand_id": hand.hand_id,
                            "seat": hand.seats[actor],
                            "player": hand.players[actor],
                            "deadline": hand.deadline,
                            "time_bank": seat.time_bank,
                            "legal": self._legal(),
                        },
                    )
                )
                return
            else:
                self._flush(step)
                self._finish(step, now)
                return
            self._flush(step)

    def _flush(self, step: Step) -> None:
        """New engine operations -> messages (hole cards privately) and action effects."""
        hand, state = self._playing()
        log = state.operations
        for index in range(hand.ops_seen, len(log)):
            op = log[index]
            name, player, amount, cards = _describe(op)
            seat = None if player is None else hand.seats[player]
            data: dict[str, Any] = {"hand_id": hand.hand_id, "sequence": index, "op": name}
            if seat is not None:
                data["seat"] = seat
            if amount:
                data["amount"] = amount
            if isinstance(op, ops.DealHole):
                step.messages.append(
                    Message("hole_cards", {**data, "cards": cards}, player=hand.players[op.player])
                )
            elif cards:
                data["cards"] = cards
            if isinstance(op, ops.AwardPot):
                data["winners"] = [hand.seats[w] for w in op.winners]
                data["shares"] = list(op.shares)
            step.messages.append(Message("action", data))
            self._data.effects.append(
                ActionEffect(
                    id=f"{hand.hand_id}:{index}",
                    hand_id=hand.hand_id,
                    sequence=index,
                    seat=seat,
                    action=name,
                    amount=amount,
                )
            )
        hand.ops_seen = len(log)

    def _finish(self, step: Step, now: float) -> None:
        d = self._data
        hand, state = self._playing()
        config = d.config.game()
        history = phh.from_operations(
            config,
            state.operations,
            players=hand.players,
            seats=[s + 1 for s in hand.seats],
            table=d.config.table_id,
            hand=hand.number,
        )
        history_text = phh.dumps(history)
        previous = self.last_record
        record = seal(
            table_id=d.config.table_id,
            hand_id=hand.hand_id,
            sequence=hand.number,
            server_seed=bytes.fromhex(hand.server_seed),
            client_seeds=(),
            dealt=dealt_from_operations(hand.deck, state.operations, [s + 1 for s in hand.seats]),
            history_phh=history_text,
            previous=previous,
        )
        deltas = {p: state.payoffs[k] for k, p in enumerate(hand.players)}
        record_json = msgspec.json.encode(record.to_json()).decode()
        d.effects.append(
            HandDone(
                id=f"{hand.hand_id}:done",
                hand_id=hand.hand_id,
                number=hand.number,
                record=record_json,
                history_phh=history_text,
                commitment=record.commitment,
                seed_reveal=record.seed_reveal,
                previous_record_hash=record.previous_record_hash,
                record_hash=record.record_hash,
                deltas=deltas,
                rake=state.rake,
            )
        )
        for k, number in enumerate(hand.seats):
            seat = d.seats[number]
            seat.stack = state.stacks[k]
        step.messages.append(
            Message(
                "hand_completed",
                {
                    "hand_id": hand.hand_id,
                    "number": hand.number,
                    "deltas": {
                        str(hand.seats[k]): state.payoffs[k] for k in range(len(hand.seats))
                    },
                    "stacks": {str(s): d.seats[s].stack for s in hand.seats},
                    "rake": state.rake,
                    "board": [card_str(c) for c in state.board],
                    "seed_reveal": hand.server_seed,
                    "commitment": hand.commitment,
                    "record_hash": record.record_hash,
                },
            )
        )
        d.last_record = record_json
        d.hands_played += 1
        d.hand, self._state = None, None
        for number in list(d.seats):
            seat = d.seats[number]
            if seat.status is SeatStatus.SEATED and (seat.leaving or seat.stack == 0):
                self._cash_out(number, step)
        d.next_hand_at = now + d.config.next_hand_seconds

    def _cash_out(self, number: int, step: Step) -> None:
        d = self._data
        seat = d.seats.pop(number)
        if seat.stack:
            d.effects.append(
                CashOut(
                    id=f"cashout:{d.config.table_id}:{d.version}:{number}",
                    player=seat.player,
                    seat=number,
                    amount=seat.stack,
                    session=seat.session,
                )
            )
        step.messages.append(
            Message("left", {"seat": number, "player": seat.player, "cash_out": seat.stack})
        )


def _actor(state: State) -> int:
    actor = state.actor
    if actor is None:
        raise TableError("nobody is to act")  # pragma: no cover - checked by the phase
    return actor


def _describe(op: ops.Operation) -> tuple[str, int | None, int, list[str]]:
    """(name, player, amount, public cards) of an engine operation."""
    match op:
        case ops.PostAnte(player, amount, _):
            return "post_ante", player, amount, []
        case ops.PostBlind(player, amount):
            return "post_blind", player, amount, []
        case ops.PostStraddle(player, amount):
            return "post_straddle", player, amount, []
        case ops.PostDead(player, amount):
            return "post_dead", player, amount, []
        case ops.DealHole(player, cards):
            return "deal_hole", player, 0, [card_str(c) for c in cards]
        case ops.DealBoard(_, cards):
            return "deal_board", None, 0, [card_str(c) for c in cards]
        case ops.Fold(player):
            return "fold", player, 0, []
        case ops.CheckOrCall(player, amount, _):
            return ("call" if amount else "check"), player, amount, []
        case ops.BetOrRaise(player, amount, _, _):
            return "bet_raise", player, amount, []
        case ops.ReturnUncalled(player, amount):
            return "return_uncalled", player, amount, []
        case ops.CollectBets(amounts):
            return "collect_bets", None, sum(amounts), []
        case ops.ShowOrMuck(player, cards):
            return ("show" if cards else "muck"), player, 0, [card_str(c) for c in cards]
        case ops.CollectRake(amount, _):
            return "collect_rake", None, amount, []
        case ops.AwardPot(_, amount, _, _):
            return "award_pot", None, amount, []
    raise PokerError(f"unknown operation {type(op).__name__}")  # pragma: no cover
