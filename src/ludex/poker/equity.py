"""All-in equity for hold'em and Omaha: each player's share of the pot over the boards
still to come.

Exhaustive when the boards are few enough to enumerate (every heads-up hold'em
spot, preflop included: C(48, 5) = 1,712,304 boards, and heads-up Omaha preflop),
Monte Carlo otherwise or when the caller asks for ``samples``. Split pots are
shared fractionally and counted exactly, in units of 1/2520 of a pot (2520 is
divisible by every player count from 1 to 10), so an exhaustive result is an exact
rational number.

Pure: no I/O and no global randomness. Monte Carlo draws only from the
``numpy.random.Generator`` passed in; without one it uses ``default_rng(0)``, so the
same call always gives the same estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import comb
from typing import Final, Literal

import numpy as np

from ludex.errors import CardError
from ludex.poker.cards import DECK_SIZE, check_distinct

__all__ = ["DEFAULT_SAMPLES", "MAX_EXHAUSTIVE_BOARDS", "EquityResult", "equity"]

#: Enumerate every board when there are at most this many.
MAX_EXHAUSTIVE_BOARDS: Final = 3_000_000
#: Boards drawn when enumeration is not feasible and ``samples`` is not given.
DEFAULT_SAMPLES: Final = 500_000
_TIE_UNITS: Final = 2520
_HOLE_SIZE: Final = {"holdem": 2, "omaha": 4}


@dataclass(frozen=True, slots=True)
class EquityResult:
    """Per-player shares of the pot, in the order the hands were given.

    ``wins[i]`` is the probability that player ``i`` wins the whole pot, ``ties[i]``
    the expected fraction of the pot won in split pots, ``equities[i]`` their sum.
    The equities add up to 1 (up to float rounding).
    """

    wins: tuple[float, ...]
    ties: tuple[float, ...]
    equities: tuple[float, ...]
    boards: int
    exhaustive: bool


def equity(
    holes: Sequence[Sequence[int]],
    board: Sequence[int] = (),
    dead: Sequence[int] = (),
    *,
    game: Literal["holdem", "omaha"] = "holdem",
    samples: int | None = None,
    rng: np.random.Generator | None = None,
) -> EquityResult:
    """Equity of each hand in ``holes`` given the ``board`` so far and ``dead`` cards.

    ``samples=None`` enumerates every remaining board when there are at most
    :data:`MAX_EXHAUSTIVE_BOARDS` of them and samples :data:`DEFAULT_SAMPLES`
    otherwise; ``samples=n`` draws ``n`` boards (uniformly, without replacement
    within a board) unless ``n`` is at least the number of boards, in which case
    enumerating is both exact and cheaper.
    """
    if game not in _HOLE_SIZE:
        raise ValueError(f"game must be 'holdem' or 'omaha', got {game!r}")
    hole_size = _HOLE_SIZE[game]
    hands = [list(h) for h in holes]
    if not 2 <= len(hands) <= 10:
        raise CardError(f"equity needs 2 to 10 hands, got {len(hands)}")
    for hand in hands:
        if len(hand) != hole_size:
            raise CardError(f"a {game} hand has {hole_size} hole cards, got {len(hand)}")
    board, dead = list(board), list(dead)
    if len(board) > 5:
        raise CardError(f"a board has at most 5 cards, got {len(board)}")
    used = [c for hand in hands for c in hand] + board + dead
    check_distinct(used)
    remaining = np.array(sorted(set(range(DECK_SIZE)) - set(used)), dtype=np.uint8)
    need = 5 - len(board)
    if len(remaining) < need:
        raise CardError(f"only {len(remaining)} cards left to deal {need} board cards")
    total = comb(len(remaining), need)
    if samples is not None and samples < 1:
        raise ValueError(f"samples must be positive, got {samples}")

    from ludex.poker import _kernels

    exhaustive = total <= (MAX_EXHAUSTIVE_BOARDS if samples is None else samples)
    if exhaustive:
        extra = remaining[_kernels.combinations(len(remaining), need)]
    else:
        generator = rng if rng is not None else np.random.default_rng(0)
        count = samples if samples is not None else DEFAULT_SAMPLES
        uniforms = generator.random((count, need))
        extra = _kernels.sample_boards(remaining, need, uniforms)
    wins, ties = _kernels.showdowns(
        np.array(hands, dtype=np.uint8),
        np.array(board, dtype=np.uint8),
        extra,
        omaha=game == "omaha",
    )
    boards = int(extra.shape[0])
    win_shares = tuple(int(w) / boards for w in wins)
    tie_shares = tuple(int(t) / (boards * _TIE_UNITS) for t in ties)
    equities = tuple(
        (int(w) * _TIE_UNITS + int(t)) / (boards * _TIE_UNITS)
        for w, t in zip(wins, ties, strict=True)
    )
    return EquityResult(win_shares, tie_shares, equities, boards, exhaustive)
