"""Main and side pots: who may win which chips.

Pots are built from each player's total contribution to the hand (blinds, antes
and bets; uncalled chips already returned). Every distinct contribution level cuts
a layer; a layer holds what each player put in between the previous level and
this one, and may be won by the players still contending (not folded) who put in
at least this level. Neighbouring layers with the same contenders are merged, so
``pots[0]`` is the main pot and each later pot is a side pot with fewer players.
Dead money (a big-blind ante, a missed small blind) belongs to the main pot.

Pure: no I/O; integers only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Pot:
    """``amount`` chips that any of ``eligible`` (player indices, ascending) may win."""

    amount: int
    eligible: tuple[int, ...]


def build_pots(
    contributions: Sequence[int], contending: Sequence[bool], dead: int = 0
) -> list[Pot]:
    """The main pot and side pots for these contributions.

    ``contending[i]`` is False for a player who folded. A layer nobody contends
    for (impossible once uncalled bets are returned) is merged into the pot below
    it, so no chip is ever lost.
    """
    pots: list[Pot] = []
    previous = 0
    for level in sorted({c for c in contributions if c > 0}):
        amount = 0
        eligible = []
        for i, contribution in enumerate(contributions):
            if contribution > previous:
                amount += (level if contribution > level else contribution) - previous
                if contending[i]:
                    eligible.append(i)
        key = tuple(eligible)
        if pots and (pots[-1].eligible == key or not key):
            pots[-1] = Pot(pots[-1].amount + amount, pots[-1].eligible)
        else:
            pots.append(Pot(amount, key))
        previous = level
    if dead:
        if pots:
            pots[0] = Pot(pots[0].amount + dead, pots[0].eligible)
        else:
            pots.append(Pot(dead, tuple(i for i, c in enumerate(contending) if c)))
    return pots


def split(amount: int, winners: Sequence[int]) -> tuple[int, ...]:
    """Equal shares of ``amount``; odd chips one each to the first winners in order.

    The caller orders ``winners`` clockwise from the first seat left of the button, so
    the odd chip goes to that seat (TDA 2024 Rule 20-A), and when a pot leaves several
    odd chips no player receives more than one (11 among three ties: 4, 4, 3); see
    ``docs/poker.md``.
    """
    quotient, remainder = divmod(amount, len(winners))
    return tuple(quotient + (1 if i < remainder else 0) for i in range(len(winners)))
