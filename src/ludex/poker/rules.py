"""Game configuration: the variant, the forced bets, the minimum bet and the rake.

A :class:`GameConfig` is a frozen value shared by every hand of a table; what
changes between hands (stacks, button, who posts which blind) is given to
:class:`ludex.poker.state.State` when a hand starts. The rules these settings
drive are described in ``docs/poker.md``.

Pure: no I/O, no randomness; validation raises :class:`ludex.errors.PokerError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from ludex.errors import PokerError

MIN_SEATS: Final = 2
MAX_SEATS: Final = 10
BASIS_POINTS: Final = 10_000


class Variant(StrEnum):
    """The games the engine deals; the value is the PHH ``variant`` code."""

    NO_LIMIT_HOLDEM = "NT"
    POT_LIMIT_OMAHA = "PO"

    @property
    def hole_card_count(self) -> int:
        return 4 if self is Variant.POT_LIMIT_OMAHA else 2

    @property
    def pot_limit(self) -> bool:
        return self is Variant.POT_LIMIT_OMAHA


@dataclass(frozen=True, slots=True)
class RakeConfig:
    """The house's cut: ``basis_points`` / 10,000 of each pot, floored, at most ``cap``.

    ``cap`` is per hand (``None`` = no cap); ``no_flop_no_drop`` takes nothing from a
    hand that ends before the flop. See :mod:`ludex.poker.rake` for the rounding rule.
    """

    basis_points: int = 0
    cap: int | None = None
    no_flop_no_drop: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.basis_points <= BASIS_POINTS:
            raise PokerError(f"rake basis_points {self.basis_points} must be in 0..10000")
        if self.cap is not None and self.cap < 0:
            raise PokerError(f"rake cap {self.cap} must be >= 0 or None")


@dataclass(frozen=True, slots=True)
class GameConfig:
    """Stakes and structure of a table.

    * ``small_blind``/``big_blind``: the blinds (the small blind may be 0).
    * ``ante``: paid by every player dealt in, unless ``big_blind_ante`` is set, in
      which case the big blind pays ``ante`` once for the table (dead money).
    * ``straddles``: live straddles posted by the players after the big blind, in
      order (``(4,)`` is one 2x straddle at 1/2); each must exceed the previous level.
    * ``min_bet``: the smallest bet after the flop and the smallest raise increment
      (defaults to the big blind).
    * ``seat_count``: chairs at the table (2..10); a hand deals at most that many.
    """

    variant: Variant = Variant.NO_LIMIT_HOLDEM
    small_blind: int = 1
    big_blind: int = 2
    ante: int = 0
    big_blind_ante: bool = False
    straddles: tuple[int, ...] = ()
    min_bet: int = 0
    seat_count: int = 6
    rake: RakeConfig = field(default_factory=RakeConfig)

    def __post_init__(self) -> None:
        if self.big_blind <= 0:
            raise PokerError(f"big_blind {self.big_blind} must be positive")
        if not 0 <= self.small_blind <= self.big_blind:
            raise PokerError(f"small_blind {self.small_blind} must be in 0..big_blind")
        if self.ante < 0:
            raise PokerError(f"ante {self.ante} must be >= 0")
        level = self.big_blind
        for straddle in self.straddles:
            if straddle <= level:
                raise PokerError(f"straddle {straddle} must exceed the previous level {level}")
            level = straddle
        if self.min_bet < 0:
            raise PokerError(f"min_bet {self.min_bet} must be >= 0 (0 means the big blind)")
        if not MIN_SEATS <= self.seat_count <= MAX_SEATS:
            raise PokerError(f"seat_count {self.seat_count} must be in {MIN_SEATS}..{MAX_SEATS}")

    @property
    def effective_min_bet(self) -> int:
        """The minimum bet after the flop and the smallest raise increment."""
        return self.min_bet or self.big_blind

    @property
    def preflop_increment(self) -> int:
        """The minimum raise increment before the flop (2024 WSOP Live Action Rule 11).

        The big blind counts as a bet of its size and each straddle as a raise over
        the previous level, so at 1/2 with a 4 straddle the minimum raise is to 6
        (three big blinds), and with a further 8 straddle it is to 12.
        """
        increment = max(self.effective_min_bet, self.big_blind)
        previous = self.big_blind
        for straddle in self.straddles:
            increment = max(increment, straddle - previous)
            previous = straddle
        return increment
