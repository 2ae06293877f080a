"""The hand state machine: No-Limit Hold'em and Pot-Limit Omaha, 2 to 10 players.

One :class:`State` is one hand. It never shuffles, never reads a clock and never
does I/O: the caller deals the cards it drew from its own deck (see
:mod:`ludex.poker.shuffle`) and submits the players' decisions; the state checks
every step against the rules (``docs/poker.md``), applies it, and records it as
an operation (:mod:`ludex.poker.operations`).

Creating a hand
---------------
::

    config = GameConfig(variant=Variant.NO_LIMIT_HOLDEM, small_blind=1, big_blind=2)
    state = State(config, starting_stacks=[200, 150, 300], button=0)

Players are indices into ``starting_stacks`` in clockwise seat order; ``button``
is the index of the player on the button. Blinds, straddles and antes are posted
at once (heads-up the button posts the small blind). For a dead button or dead
small blind and for players returning after missed blinds, pass ``blinds=(sb,
bb)`` (``sb`` may be None) and ``missed_blinds`` as computed by
:mod:`ludex.poker.table`.

Playing it
----------
* ``state.deal_hole(cards, player=None)`` for each player (default: the next one
  clockwise from the button), then ``state.deal_board(cards)`` whenever
  ``state.phase is Phase.DEAL_BOARD`` (3 cards for the flop, then 1, then 1).
* When ``state.phase is Phase.BETTING``, ``state.actor`` must act:
  ``fold()``, ``check_or_call()`` or ``bet_or_raise(amount)``, where ``amount``
  is the total the player's bet becomes on this street ("raise to", PHH ``cbr``).
* When ``state.phase is Phase.SHOWDOWN``, ``state.actor`` shows or mucks:
  ``show_or_muck(show=None)`` applies the default (show when the hand can win
  or tie a pot, or when it must be shown; the last live hand wins unshown).
  All-in hands are shown automatically.
* Every action has ``verify_x(...)`` (raises :class:`ludex.errors.IllegalAction`
  with the reason, changing nothing), ``can_x(...)`` and ``x(...)``, which
  returns the frozen operation record. Actions take an optional ``player``; a
  player other than the actor is refused as out of turn.

Queries
-------
``actor``, ``legal_actions()``, ``call_amount``, ``min_bet_or_raise_to``,
``max_bet_or_raise_to`` (pot limit computed exactly), ``stacks``, ``bets``,
``pots()``, ``total_pot``, ``board``, ``hole_cards(player)``, ``phase``, ``street``.

Results
-------
When ``state.phase is Phase.DONE``: ``stacks`` are the finishing stacks,
``payoffs`` the per-player deltas, ``rake`` the house's cut and the
:class:`~ludex.poker.operations.AwardPot` records in ``operations`` say who won
which pot. Chips are conserved at every step:
``sum(stacks) + sum(bets) + pot + rake == sum(starting_stacks)``.

Persistence
-----------
``state.to_bytes()`` / ``State.from_bytes(data)`` round-trip the whole state
(msgpack); ``replay(config, state.operations)`` rebuilds it from its log.

Never: I/O, randomness, clocks, floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import Final

import msgspec

from ludex.errors import IllegalAction, PokerError
from ludex.poker.cards import DECK_SIZE, card_str
from ludex.poker.evaluator import evaluate, evaluate_omaha
from ludex.poker.operations import (
    AnyOperation,
    AwardPot,
    BetOrRaise,
    CheckOrCall,
    CollectBets,
    CollectRake,
    DealBoard,
    DealHole,
    Fold,
    Operation,
    PostAnte,
    PostBlind,
    PostDead,
    PostStraddle,
    ReturnUncalled,
    ShowOrMuck,
    StartHand,
)
from ludex.poker.pots import Pot, build_pots, split
from ludex.poker.rake import rake_pots
from ludex.poker.rules import GameConfig, RakeConfig, Variant

UNKNOWN_CARD: Final = -1
"""A hole card nobody has seen (a PHH ``??``); it must be revealed to win a showdown."""

_BOARD_SIZES: Final = (0, 3, 4, 5)

_FOLDED: Final = 0
_IN: Final = 1
_MUCKED: Final = 2


class Phase(IntEnum):
    """What the hand waits for."""

    DEAL_HOLE = 0
    BETTING = 1
    DEAL_BOARD = 2
    SHOWDOWN = 3
    DONE = 4


class LegalActions(msgspec.Struct, frozen=True, gc=False):
    """What the actor may do now; ``call`` is None when checking/calling is not legal,
    ``min_to``/``max_to`` are None when betting/raising is not legal."""

    player: int
    fold: bool
    call: int | None
    min_to: int | None
    max_to: int | None


class State:
    """One hand; see the module docstring for the API."""

    __slots__ = (
        "_acted",
        "_deal_next",
        "_final_pots",
        "_last_aggressor",
        "_ranks",
        "_runout",
        "_show_order",
        "_show_pos",
        "_shown_best",
        "_status",
        "actor_index",
        "bets",
        "big_blind",
        "board",
        "button",
        "config",
        "contributions",
        "dead",
        "holes",
        "increment",
        "level",
        "live_count",
        "missed_blinds",
        "operations",
        "phase",
        "player_count",
        "pot",
        "rake",
        "small_blind",
        "stacks",
        "starting_stacks",
        "street",
        "used",
    )

    config: GameConfig
    player_count: int
    button: int
    small_blind: int | None
    big_blind: int
    missed_blinds: tuple[tuple[int, int, int], ...]
    starting_stacks: tuple[int, ...]
    stacks: list[int]
    bets: list[int]
    contributions: list[int]
    holes: list[tuple[int, ...]]
    board: list[int]
    used: int
    street: int
    phase: Phase
    level: int
    increment: int
    actor_index: int
    live_count: int
    dead: int
    pot: int
    rake: int
    operations: list[Operation]
    _status: list[int]
    _acted: list[int]
    _last_aggressor: int
    _runout: bool
    _deal_next: int
    _show_order: tuple[int, ...]
    _show_pos: int
    _shown_best: list[int]
    _final_pots: list[Pot] | None
    _ranks: list[int]

    def __init__(
        self,
        config: GameConfig,
        starting_stacks: Sequence[int],
        button: int,
        *,
        blinds: tuple[int | None, int] | None = None,
        missed_blinds: Sequence[tuple[int, int, int]] = (),
    ) -> None:
        n = len(starting_stacks)
        if not 2 <= n <= config.seat_count:
            raise PokerError(f"a hand needs 2..{config.seat_count} players, got {n}")
        if any(type(s) is not int or s <= 0 for s in starting_stacks):
            raise PokerError(f"starting stacks must be positive integers: {list(starting_stacks)}")
        if not 0 <= button < n:
            raise PokerError(f"button {button} is not a player index in 0..{n - 1}")
        if blinds is None:
            sb: int | None = button if n == 2 else (button + 1) % n
            bb = (button + 1) % n if n == 2 else (button + 2) % n
        else:
            sb, bb = blinds
        if not 0 <= bb < n or (sb is not None and not 0 <= sb < n) or sb == bb:
            raise PokerError(f"blinds {(sb, bb)} must be two distinct player indices")
        self.config = config
        self.player_count = n
        self.button = button
        self.small_blind = sb
        self.big_blind = bb
        self.missed_blinds = tuple((p, live, dead) for p, live, dead in missed_blinds)
        self.starting_stacks = tuple(starting_stacks)
        self.stacks = list(starting_stacks)
        self.bets = [0] * n
        self.contributions = [0] * n
        self.holes = [()] * n
        self.board = []
        self.used = 0
        self.street = 0
        self.phase = Phase.DEAL_HOLE
        self.actor_index = -1
        self.live_count = n
        self.dead = 0
        self.pot = 0
        self.rake = 0
        self.operations = [
            StartHand(self.starting_stacks, button, sb, bb, self.missed_blinds),
        ]
        self._status = [_IN] * n
        self._acted = [-1] * n
        self._last_aggressor = -1
        self._runout = False
        self._deal_next = 0
        self._show_order = ()
        self._show_pos = 0
        self._shown_best = []
        self._final_pots = None
        self._ranks = []
        self._post_forced_bets()

    # -- forced bets -------------------------------------------------------------------

    def _take(self, player: int, amount: int) -> int:
        taken = min(amount, self.stacks[player])
        self.stacks[player] -= taken
        return taken

    def _post_forced_bets(self) -> None:
        config, n, ops = self.config, self.player_count, self.operations
        straddlers = []
        position = self.big_blind
        for _ in config.straddles:
            position = (position + 1) % n
            if position in (self.small_blind, self.big_blind):
                raise PokerError(f"{len(config.straddles)} straddle(s) need more than {n} players")
            straddlers.append(position)
        for player, live, dead in self.missed_blinds:
            if player in (self.small_blind, self.big_blind, *straddlers) or not 0 <= player < n:
                raise PokerError(f"missed-blind post by player {player} clashes with a blind")
            if live < 0 or dead < 0:
                raise PokerError("missed-blind amounts must be >= 0")
        if config.ante and not config.big_blind_ante:
            for k in range(n):
                player = (self.button + 1 + k) % n
                amount = self._take(player, config.ante)
                self.contributions[player] += amount
                self.pot += amount
                ops.append(PostAnte(player, amount))
        if self.small_blind is not None and config.small_blind:
            self._post_live(self.small_blind, config.small_blind, PostBlind)
        self._post_live(self.big_blind, config.big_blind, PostBlind)
        if config.ante and config.big_blind_ante:
            # The big blind before the big-blind ante when the stack cannot cover both.
            amount = self._take(self.big_blind, config.ante)
            self.dead += amount
            self.pot += amount
            ops.append(PostAnte(self.big_blind, amount, True))
        for player, amount in zip(straddlers, config.straddles, strict=True):
            self._post_live(player, amount, PostStraddle)
        for player, live, dead in self.missed_blinds:
            if live:
                self._post_live(player, live, PostBlind)
            if dead:
                taken = self._take(player, dead)
                self.dead += taken
                self.pot += taken
                ops.append(PostDead(player, taken))
        self.level = config.straddles[-1] if config.straddles else config.big_blind
        self.increment = config.preflop_increment
        self._last_aggressor = straddlers[-1] if straddlers else self.big_blind

    def _post_live(
        self, player: int, amount: int, record: type[PostBlind] | type[PostStraddle]
    ) -> None:
        taken = self._take(player, amount)
        self.bets[player] += taken
        self.contributions[player] += taken
        self.operations.append(record(player, taken))

    # -- dealing -----------------------------------------------------------------------

    def _check_cards(self, cards: Sequence[int], count: int, what: str) -> int:
        if len(cards) != count:
            raise IllegalAction(f"{what} needs {count} cards, got {len(cards)}")
        mask = 0
        for value in cards:
            if value == UNKNOWN_CARD and what.startswith("hole"):
                continue
            if type(value) is not int or not 0 <= value < DECK_SIZE:
                raise IllegalAction(f"{what}: card id {value!r} is not in 0..51")
            bit = 1 << value
            if (self.used | mask) & bit:
                raise IllegalAction(f"{what}: card {card_str(value)} was already dealt")
            mask |= bit
        return mask

    def _next_undealt(self) -> int:
        n = self.player_count
        for k in range(n):
            player = (self.button + 1 + k) % n
            if not self.holes[player]:
                return player
        return -1

    def verify_deal_hole(self, cards: Sequence[int], player: int | None = None) -> int:
        """Check a hole-card deal; returns the player who gets the cards."""
        if self.phase is not Phase.DEAL_HOLE:
            raise IllegalAction(
                f"hole cards are dealt before the betting, not in {self.phase.name}"
            )
        if player is None:
            player = self._next_undealt()
        elif not 0 <= player < self.player_count:
            raise IllegalAction(f"player {player} is not in this hand")
        elif self.holes[player]:
            raise IllegalAction(f"player {player} already has hole cards")
        self._check_cards(cards, self.config.variant.hole_card_count, f"hole cards of {player}")
        return player

    def can_deal_hole(self, cards: Sequence[int], player: int | None = None) -> bool:
        try:
            self.verify_deal_hole(cards, player)
        except IllegalAction:
            return False
        return True

    def deal_hole(self, cards: Sequence[int], player: int | None = None) -> DealHole:
        """Give ``player`` (default: the next one clockwise from the button) hole cards."""
        player = self.verify_deal_hole(cards, player)
        dealt = tuple(cards)
        for value in dealt:
            if value != UNKNOWN_CARD:
                self.used |= 1 << value
        self.holes[player] = dealt
        self._deal_next += 1
        op = DealHole(player, dealt)
        self.operations.append(op)
        if self._deal_next == self.player_count:
            self._start_round((self._last_aggressor + 1) % self.player_count)
        return op

    def verify_deal_board(self, cards: Sequence[int]) -> None:
        if self.phase is not Phase.DEAL_BOARD:
            raise IllegalAction(f"no board cards are due in {self.phase.name}")
        street = self.street + 1
        self._check_cards(cards, _BOARD_SIZES[street] - _BOARD_SIZES[street - 1], "board")

    def can_deal_board(self, cards: Sequence[int]) -> bool:
        try:
            self.verify_deal_board(cards)
        except IllegalAction:
            return False
        return True

    def deal_board(self, cards: Sequence[int]) -> DealBoard:
        """Deal the next street's board cards (3 for the flop, then 1, then 1)."""
        self.verify_deal_board(cards)
        for value in cards:
            self.used |= 1 << value
        self.board.extend(cards)
        self.street += 1
        op = DealBoard(self.street, tuple(cards))
        self.operations.append(op)
        if self._runout:
            if self.street == 3:
                self._award()
        else:
            self.level = 0
            self.increment = self.config.effective_min_bet
            self._last_aggressor = -1
            self._acted = [-1] * self.player_count
            self._start_round((self.button + 1) % self.player_count)
        return op

    @property
    def board_cards_due(self) -> int:
        """How many board cards ``deal_board`` expects now (0 if none)."""
        if self.phase is not Phase.DEAL_BOARD:
            return 0
        return _BOARD_SIZES[self.street + 1] - _BOARD_SIZES[self.street]

    # -- betting -----------------------------------------------------------------------

    def _start_round(self, first: int) -> None:
        stacks, status = self.stacks, self._status
        holders = [i for i in range(self.player_count) if status[i] == _IN and stacks[i]]
        if not holders or (len(holders) == 1 and self.bets[holders[0]] >= self.level):
            self._end_round()
            return
        self.phase = Phase.BETTING
        self.actor_index = self._next_to_act(first - 1)

    def _next_to_act(self, after: int) -> int:
        n, stacks, status, acted, bets, level = (
            self.player_count,
            self.stacks,
            self._status,
            self._acted,
            self.bets,
            self.level,
        )
        for k in range(1, n + 1):
            i = (after + k) % n
            if status[i] == _IN and stacks[i] and (acted[i] < 0 or bets[i] < level):
                return i
        return -1

    def _advance(self, player: int) -> None:
        if self.live_count == 1:
            self._end_round()
            return
        following = self._next_to_act(player)
        if following < 0:
            self._end_round()
        else:
            self.actor_index = following

    def _end_round(self) -> None:
        bets, n = self.bets, self.player_count
        top = second = 0
        top_player = -1
        for i in range(n):
            bet = bets[i]
            if bet > top:
                top, second, top_player = bet, top, i
            elif bet > second:
                second = bet
        if top > second:
            excess = top - second
            bets[top_player] = second
            self.contributions[top_player] -= excess
            self.stacks[top_player] += excess
            self.operations.append(ReturnUncalled(top_player, excess))
        collected = sum(bets)
        if collected:
            self.operations.append(CollectBets(tuple(bets)))
            self.pot += collected
            self.bets = [0] * n
        self.actor_index = -1
        if self.live_count == 1:
            self._award()
            return
        all_in = any(not self.stacks[i] for i in range(n) if self._status[i] == _IN)
        holders = sum(1 for i in range(n) if self._status[i] == _IN and self.stacks[i])
        if self.street == 3:
            if all_in and holders <= 1:
                self._show_all()
                self._award()
            else:
                self._begin_showdown()
            return
        if holders <= 1 and not self._runout:
            self._runout = True
            self._show_all()
        self.phase = Phase.DEAL_BOARD

    def _actor_for(self, player: int | None) -> int:
        if self.phase is not Phase.BETTING:
            raise IllegalAction(f"nobody may bet now: the hand is in {self.phase.name}")
        actor = self.actor_index
        if player is not None and player != actor:
            raise IllegalAction(f"player {player} acted out of turn: it is player {actor}'s turn")
        return actor

    def verify_fold(self, player: int | None = None) -> int:
        actor = self._actor_for(player)
        if self.bets[actor] >= self.level:
            raise IllegalAction(f"player {actor} faces no bet and may check: folding is refused")
        return actor

    def can_fold(self, player: int | None = None) -> bool:
        try:
            self.verify_fold(player)
        except IllegalAction:
            return False
        return True

    def fold(self, player: int | None = None) -> Fold:
        actor = self.verify_fold(player)
        self._status[actor] = _FOLDED
        self.live_count -= 1
        op = Fold(actor)
        self.operations.append(op)
        self._advance(actor)
        return op

    def verify_check_or_call(self, player: int | None = None) -> int:
        return self._actor_for(player)

    def can_check_or_call(self, player: int | None = None) -> bool:
        return self.phase is Phase.BETTING and (player is None or player == self.actor_index)

    @property
    def call_amount(self) -> int | None:
        """Chips the actor adds to check (0) or call; None when nobody is to act."""
        actor = self.actor_index
        if actor < 0:
            return None
        return min(self.level - self.bets[actor], self.stacks[actor])

    def check_or_call(self, player: int | None = None) -> CheckOrCall:
        actor = self._actor_for(player)
        amount = self.level - self.bets[actor]
        stack = self.stacks[actor]
        if amount > stack:
            amount = stack
        self.stacks[actor] = stack - amount
        self.bets[actor] += amount
        self.contributions[actor] += amount
        self._acted[actor] = self.level
        op = CheckOrCall(actor, amount, amount == stack and amount > 0)
        self.operations.append(op)
        self._advance(actor)
        return op

    def _raise_bounds(self, actor: int) -> tuple[int, int]:
        """``(min_to, max_to)`` for the actor, or IllegalAction with the reason."""
        bets, stacks, level = self.bets, self.stacks, self.level
        stack, bet = stacks[actor], bets[actor]
        if stack <= level - bet:
            raise IllegalAction(
                f"player {actor} cannot raise: calling {level - bet} needs the whole stack"
            )
        status = self._status
        for i in range(self.player_count):
            if i != actor and status[i] == _IN and stacks[i] and bets[i] + stacks[i] > level:
                break
        else:
            raise IllegalAction(
                "no raise is possible: every other player has folded or is all-in; call or fold"
            )
        acted = self._acted[actor]
        if acted >= 0 and level - acted < self.increment:
            raise IllegalAction(
                f"player {actor} already acted and the betting was not reopened: an all-in "
                f"for less than a full raise ({self.increment}) allows only a call or a fold"
            )
        ceiling = stack + bet
        min_to = level + self.increment
        if min_to > ceiling:
            min_to = ceiling
        if self.config.variant.pot_limit:
            pot_to = 2 * level - bet + self.pot + sum(bets)
            if self.street == 0:
                pot_to += self._missing_blinds()
            max_to = ceiling if pot_to > ceiling else max(pot_to, min_to)
        else:
            max_to = ceiling
        return min_to, max_to

    def _missing_blinds(self) -> int:
        """TDA 54-B: before the flop a pot-limit pot counts the blinds as if posted in
        full, so a dead small blind or a short all-in blind adds what it lacks."""
        posted: dict[int, int] = {}
        for op in self.operations:
            if isinstance(op, PostBlind):
                posted[op.player] = posted.get(op.player, 0) + op.amount
            elif not isinstance(op, StartHand | PostAnte | PostDead):
                break
        config = self.config
        missing = max(0, config.big_blind - posted.get(self.big_blind, 0))
        if self.small_blind is None:
            missing += config.small_blind
        else:
            missing += max(0, config.small_blind - posted.get(self.small_blind, 0))
        return missing

    def verify_bet_or_raise(self, amount: int, player: int | None = None) -> int:
        actor = self._actor_for(player)
        min_to, max_to = self._raise_bounds(actor)
        if type(amount) is not int:
            raise IllegalAction(f"bet amount {amount!r} must be an integer number of chips")
        if amount < min_to:
            raise IllegalAction(f"bet/raise to {amount} is below the minimum of {min_to}")
        if amount > max_to:
            raise IllegalAction(f"bet/raise to {amount} is above the maximum of {max_to}")
        return actor

    def can_bet_or_raise(self, amount: int | None = None, player: int | None = None) -> bool:
        try:
            if amount is None:
                self._raise_bounds(self._actor_for(player))
            else:
                self.verify_bet_or_raise(amount, player)
        except IllegalAction:
            return False
        return True

    @property
    def min_bet_or_raise_to(self) -> int | None:
        """The smallest legal bet/raise-to for the actor (an all-in if short), or None."""
        try:
            return self._raise_bounds(self._actor_for(None))[0]
        except IllegalAction:
            return None

    @property
    def max_bet_or_raise_to(self) -> int | None:
        """The largest legal bet/raise-to (the stack, or the pot limit), or None."""
        try:
            return self._raise_bounds(self._actor_for(None))[1]
        except IllegalAction:
            return None

    def bet_or_raise(self, amount: int, player: int | None = None) -> BetOrRaise:
        """Bet or raise so that the actor's bet on this street becomes ``amount``."""
        actor = self.verify_bet_or_raise(amount, player)
        bet = self.bets[actor]
        added = amount - bet
        self.stacks[actor] -= added
        self.bets[actor] = amount
        self.contributions[actor] += added
        raised = amount - self.level
        if raised >= self.increment:
            self.increment = raised
        self.level = amount
        self._acted[actor] = amount
        self._last_aggressor = actor
        op = BetOrRaise(actor, amount, added, not self.stacks[actor])
        self.operations.append(op)
        self._advance(actor)
        return op

    def legal_actions(self) -> LegalActions | None:
        """The actor's options, or None when no betting decision is pending."""
        if self.phase is not Phase.BETTING:
            return None
        actor = self.actor_index
        try:
            min_to: int | None
            max_to: int | None
            min_to, max_to = self._raise_bounds(actor)
        except IllegalAction:
            min_to = max_to = None
        call = min(self.level - self.bets[actor], self.stacks[actor])
        return LegalActions(actor, self.bets[actor] < self.level, call, min_to, max_to)

    # -- showdown ----------------------------------------------------------------------

    def _clockwise(self, players: Sequence[int], start: int) -> list[int]:
        n = self.player_count
        return sorted(players, key=lambda i: (i - start) % n)

    def _rank(self, player: int) -> int:
        ranks = self._ranks
        if not ranks:
            ranks = self._ranks = [0] * self.player_count
        rank = ranks[player]
        if not rank:
            hole = self.holes[player]
            if UNKNOWN_CARD in hole:
                raise IllegalAction(
                    f"player {player}'s hole cards are unknown: reveal them with show_or_muck"
                )
            if self.config.variant is Variant.POT_LIMIT_OMAHA:
                rank = evaluate_omaha(hole, self.board)
            else:
                rank = evaluate((*hole, *self.board))
            ranks[player] = rank
        return rank

    def _show_all(self) -> None:
        """All-in with the action complete: every contender's hand is tabled."""
        start = (self.button + 1) % self.player_count
        for player in self._clockwise(
            [i for i in range(self.player_count) if self._status[i] == _IN], start
        ):
            self.operations.append(ShowOrMuck(player, self.holes[player]))

    def _contest_pots(self) -> list[Pot]:
        if self._final_pots is None:
            contending = [s != _FOLDED for s in self._status]
            self._final_pots = build_pots(self.contributions, contending, self.dead)
        return self._final_pots

    def _begin_showdown(self) -> None:
        contenders = [i for i in range(self.player_count) if self._status[i] == _IN]
        aggressor = self._last_aggressor
        if aggressor >= 0 and self._status[aggressor] == _IN:
            start = aggressor
        else:
            start = (self.button + 1) % self.player_count
        self._show_order = tuple(self._clockwise(contenders, start))
        self._show_pos = 0
        self._shown_best = [0] * len(self._contest_pots())
        self.phase = Phase.SHOWDOWN
        self.actor_index = self._show_order[0]

    def _anyone_all_in(self) -> bool:
        return any(s == _IN and not self.stacks[i] for i, s in enumerate(self._status))

    def _last_live_hand(self, player: int) -> bool:
        """TDA 17-B: every other hand is mucked and nobody is all-in; it wins unshown."""
        status = self._status
        return not self._anyone_all_in() and not any(
            s == _IN for i, s in enumerate(status) if i != player
        )

    def _may_muck(self, player: int) -> bool:
        status = self._status
        if self._anyone_all_in():
            return False  # TDA 16: with a player all-in, every hand is tabled
        for pot in self._contest_pots():
            if player in pot.eligible and not any(
                status[i] == _IN for i in pot.eligible if i != player
            ):
                return False
        return True

    def verify_show_or_muck(
        self,
        show: bool | None = None,
        player: int | None = None,
        cards: Sequence[int] | None = None,
    ) -> int:
        if self.phase is not Phase.SHOWDOWN:
            raise IllegalAction(f"nobody shows or mucks now: the hand is in {self.phase.name}")
        actor = self.actor_index
        if player is not None and player != actor:
            raise IllegalAction(f"player {player} is out of turn: player {actor} shows first")
        if show is False and not self._may_muck(actor) and not self._last_live_hand(actor):
            raise IllegalAction(
                f"player {actor} must show: a player is all-in (every hand is tabled) "
                "or this is the last hand left in a pot"
            )
        if cards is not None and show is not False:
            hole = self.holes[actor]
            if len(cards) != len(hole):
                raise IllegalAction(f"player {actor} holds {len(hole)} cards, not {len(cards)}")
            used = self.used
            for given, held in zip(cards, hole, strict=True):
                if held == UNKNOWN_CARD:
                    if not 0 <= given < DECK_SIZE or used & (1 << given):
                        raise IllegalAction(f"card id {given} cannot be revealed: dealt or invalid")
                    used |= 1 << given
                elif given != held:
                    raise IllegalAction(
                        f"player {actor} holds {card_str(held)}, not {card_str(given)}"
                    )
        return actor

    def can_show_or_muck(
        self,
        show: bool | None = None,
        player: int | None = None,
        cards: Sequence[int] | None = None,
    ) -> bool:
        try:
            self.verify_show_or_muck(show, player, cards)
        except IllegalAction:
            return False
        return True

    def _would_win_something(self, player: int) -> bool:
        rank = self._rank(player)
        for k, pot in enumerate(self._contest_pots()):
            if player in pot.eligible:
                best = self._shown_best[k]
                if not best or rank <= best:
                    return True
        return False

    def show_or_muck(
        self,
        show: bool | None = None,
        player: int | None = None,
        cards: Sequence[int] | None = None,
    ) -> ShowOrMuck:
        """Show (True), muck (False) or the default (None): show when the hand wins or
        ties a pot against the hands shown so far, or when it may not be mucked.
        ``cards`` reveals hole cards that were dealt unknown."""
        actor = self.verify_show_or_muck(show, player, cards)
        if cards is not None and show is not False:
            revealed = tuple(cards)
            for value in revealed:
                self.used |= 1 << value
            self.holes[actor] = revealed
        last_live = self._last_live_hand(actor)
        if show is None:
            show = not last_live and (self._would_win_something(actor) or not self._may_muck(actor))
        if show:
            rank = self._rank(actor)
            best = self._shown_best
            for k, pot in enumerate(self._contest_pots()):
                if actor in pot.eligible and (not best[k] or rank < best[k]):
                    best[k] = rank
            op = ShowOrMuck(actor, self.holes[actor])
        elif last_live:
            op = ShowOrMuck(actor, ())  # TDA 17-B: the last live hand wins without being tabled
        else:
            self._status[actor] = _MUCKED
            op = ShowOrMuck(actor, ())
        self.operations.append(op)
        self._show_pos += 1
        if self._show_pos == len(self._show_order):
            self._award()
        else:
            self.actor_index = self._show_order[self._show_pos]
        return op

    # -- the end -----------------------------------------------------------------------

    def _award(self) -> None:
        pots = self._contest_pots()
        rakes = rake_pots([p.amount for p in pots], self.config.rake, self.street >= 1)
        total_rake = sum(rakes)
        if total_rake:
            self.rake = total_rake
            self.pot -= total_rake
            self.operations.append(CollectRake(total_rake, rakes))
        status, start = self._status, (self.button + 1) % self.player_count
        single = self.live_count == 1
        for k, pot in enumerate(pots):
            amount = pot.amount - rakes[k]
            candidates = [i for i in pot.eligible if status[i] == _IN]
            if single or len(candidates) == 1:
                winners = candidates
            else:
                best = min(self._rank(i) for i in candidates)
                winners = [i for i in candidates if self._rank(i) == best]
                if len(winners) > 1:
                    winners = self._clockwise(winners, start)
            shares = split(amount, winners)
            for player, share in zip(winners, shares, strict=True):
                self.stacks[player] += share
            self.pot -= amount
            self.operations.append(AwardPot(k, amount, tuple(winners), shares))
        self.phase = Phase.DONE
        self.actor_index = -1

    # -- queries -----------------------------------------------------------------------

    @property
    def actor(self) -> int | None:
        """The player who must act (bet or show) now, or None."""
        return None if self.actor_index < 0 else self.actor_index

    @property
    def is_done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def total_pot(self) -> int:
        """Chips in the middle: collected pots plus this street's bets."""
        return self.pot + sum(self.bets)

    @property
    def payoffs(self) -> list[int]:
        """Each player's gain (or loss) so far: stack now minus starting stack."""
        return [s - t for s, t in zip(self.stacks, self.starting_stacks, strict=True)]

    @property
    def folded(self) -> list[bool]:
        return [s == _FOLDED for s in self._status]

    @property
    def contending(self) -> list[bool]:
        """Players who have neither folded nor mucked."""
        return [s == _IN for s in self._status]

    def hole_cards(self, player: int) -> tuple[int, ...]:
        return self.holes[player]

    def pots(self) -> list[Pot]:
        """The pots collected so far (this street's bets not included), main pot first."""
        if self._final_pots is not None:
            return list(self._final_pots)
        contending = [s != _FOLDED for s in self._status]
        collected = [c - b for c, b in zip(self.contributions, self.bets, strict=True)]
        return build_pots(collected, contending, self.dead)

    def chips_in_play(self) -> int:
        """Stacks + bets + pot + rake; always ``sum(starting_stacks)``."""
        return sum(self.stacks) + sum(self.bets) + self.pot + self.rake

    # -- persistence -------------------------------------------------------------------

    def _snapshot(self) -> _Snapshot:
        pots = self._final_pots
        return _Snapshot(
            config=_config_to_wire(self.config),
            stacks=list(self.stacks),
            bets=list(self.bets),
            contributions=list(self.contributions),
            holes=list(self.holes),
            board=list(self.board),
            used=self.used,
            street=self.street,
            phase=int(self.phase),
            level=self.level,
            increment=self.increment,
            actor=self.actor_index,
            live_count=self.live_count,
            dead=self.dead,
            pot=self.pot,
            rake=self.rake,
            operations=list(self.operations),  # type: ignore[arg-type]
            status=list(self._status),
            acted=list(self._acted),
            last_aggressor=self._last_aggressor,
            runout=self._runout,
            deal_next=self._deal_next,
            show_order=self._show_order,
            show_pos=self._show_pos,
            shown_best=list(self._shown_best),
            final_pots=None if pots is None else [(p.amount, p.eligible) for p in pots],
        )

    def to_bytes(self) -> bytes:
        """The whole state as msgpack bytes (config, cards, chips, log)."""
        return _ENCODER.encode(self._snapshot())

    @classmethod
    def from_bytes(cls, data: bytes) -> State:
        """Rebuild a state saved by :meth:`to_bytes`; it continues identically."""
        try:
            snap = _DECODER.decode(data)
        except msgspec.DecodeError as exc:
            raise PokerError(f"state bytes do not decode: {exc}") from exc
        start = snap.operations[0]
        if not isinstance(start, StartHand):
            raise PokerError("state bytes do not begin with a StartHand record")
        self = cls.__new__(cls)
        self.config = _config_from_wire(snap.config)
        self.player_count = len(start.starting_stacks)
        self.button = start.button
        self.small_blind = start.small_blind
        self.big_blind = start.big_blind
        self.missed_blinds = start.missed_blinds
        self.starting_stacks = start.starting_stacks
        self.stacks = snap.stacks
        self.bets = snap.bets
        self.contributions = snap.contributions
        self.holes = snap.holes
        self.board = snap.board
        self.used = snap.used
        self.street = snap.street
        self.phase = Phase(snap.phase)
        self.level = snap.level
        self.increment = snap.increment
        self.actor_index = snap.actor
        self.live_count = snap.live_count
        self.dead = snap.dead
        self.pot = snap.pot
        self.rake = snap.rake
        self.operations = list(snap.operations)
        self._status = snap.status
        self._acted = snap.acted
        self._last_aggressor = snap.last_aggressor
        self._runout = snap.runout
        self._deal_next = snap.deal_next
        self._show_order = snap.show_order
        self._show_pos = snap.show_pos
        self._shown_best = snap.shown_best
        self._final_pots = (
            None if snap.final_pots is None else [Pot(a, e) for a, e in snap.final_pots]
        )
        self._ranks = []
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, State):
            return NotImplemented
        return self._snapshot() == other._snapshot()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"State(phase={self.phase.name}, street={self.street}, actor={self.actor}, "
            f"stacks={self.stacks}, bets={self.bets}, pot={self.pot})"
        )


class _WireConfig(msgspec.Struct, array_like=True, frozen=True):
    variant: str
    small_blind: int
    big_blind: int
    ante: int
    big_blind_ante: bool
    straddles: tuple[int, ...]
    min_bet: int
    seat_count: int
    rake_basis_points: int
    rake_cap: int | None
    no_flop_no_drop: bool


def _config_to_wire(config: GameConfig) -> _WireConfig:
    rake = config.rake
    return _WireConfig(
        config.variant.value,
        config.small_blind,
        config.big_blind,
        config.ante,
        config.big_blind_ante,
        config.straddles,
        config.min_bet,
        config.seat_count,
        rake.basis_points,
        rake.cap,
        rake.no_flop_no_drop,
    )


def _config_from_wire(wire: _WireConfig) -> GameConfig:
    return GameConfig(
        variant=Variant(wire.variant),
        small_blind=wire.small_blind,
        big_blind=wire.big_blind,
        ante=wire.ante,
        big_blind_ante=wire.big_blind_ante,
        straddles=wire.straddles,
        min_bet=wire.min_bet,
        seat_count=wire.seat_count,
        rake=RakeConfig(wire.rake_basis_points, wire.rake_cap, wire.no_flop_no_drop),
    )


class _Snapshot(msgspec.Struct, array_like=True):
    config: _WireConfig
    stacks: list[int]
    bets: list[int]
    contributions: list[int]
    holes: list[tuple[int, ...]]
    board: list[int]
    used: int
    street: int
    phase: int
    level: int
    increment: int
    actor: int
    live_count: int
    dead: int
    pot: int
    rake: int
    operations: list[AnyOperation]
    status: list[int]
    acted: list[int]
    last_aggressor: int
    runout: bool
    deal_next: int
    show_order: tuple[int, ...]
    show_pos: int
    shown_best: list[int]
    final_pots: list[tuple[int, tuple[int, ...]]] | None


_ENCODER: Final = msgspec.msgpack.Encoder()
_DECODER: Final = msgspec.msgpack.Decoder(_Snapshot)


def replay(config: GameConfig, operations: Sequence[Operation]) -> State:
    """Rebuild a hand from its operation log (``state.operations``).

    The first record must be :class:`StartHand`. Records the state makes by itself
    (posts, collections, awards) are checked against the log; the callers' records
    (deals, actions, show/muck) are applied. Any disagreement raises
    :class:`IllegalAction` naming the record's index.
    """
    if not operations or not isinstance(operations[0], StartHand):
        raise IllegalAction("an operation log starts with a StartHand record")
    start = operations[0]
    state = State(
        config,
        start.starting_stacks,
        start.button,
        blinds=(start.small_blind, start.big_blind),
        missed_blinds=start.missed_blinds,
    )
    log = state.operations
    for index in range(1, len(operations)):
        op = operations[index]
        if index >= len(log):
            try:
                _apply(state, op)
            except IllegalAction as exc:
                raise IllegalAction(f"operation {index} ({op!r}): {exc}") from exc
        if index >= len(log) or log[index] != op:
            found = log[index] if index < len(log) else None
            raise IllegalAction(f"operation {index}: the log has {op!r}, the engine {found!r}")
    if len(log) != len(operations):
        raise IllegalAction(
            f"the engine made {len(log) - len(operations)} more record(s) than the log holds"
        )
    return state


def _apply(state: State, op: Operation) -> None:
    if isinstance(op, DealHole):
        state.deal_hole(op.cards, op.player)
    elif isinstance(op, DealBoard):
        state.deal_board(op.cards)
    elif isinstance(op, Fold):
        state.fold(op.player)
    elif isinstance(op, CheckOrCall):
        state.check_or_call(op.player)
    elif isinstance(op, BetOrRaise):
        state.bet_or_raise(op.amount, op.player)
    elif isinstance(op, ShowOrMuck):
        state.show_or_muck(bool(op.cards), op.player, op.cards or None)
    else:
        raise IllegalAction(f"{type(op).__name__} is made by the engine, not by a caller")
