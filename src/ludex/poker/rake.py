"""The house's cut of a finished hand, in integer chips.

Rule: each pot (main pot first, then the side pots in order) is raked
``floor(pot * basis_points / 10_000)``; the cap is per hand, so once the running
total reaches it the remaining pots are raked only up to it (nothing from the pots
after). With ``no_flop_no_drop`` a hand that ends before a flop is dealt is not
raked at all. Flooring per pot never takes more than the stated percentage of any
pot, and never takes a chip from a pot whose players did not share in it.

Pure: no I/O; integers only.
"""

from __future__ import annotations

from collections.abc import Sequence

from ludex.poker.rules import BASIS_POINTS, RakeConfig


def rake_pots(amounts: Sequence[int], config: RakeConfig, flop_dealt: bool) -> tuple[int, ...]:
    """The rake taken from each pot, in the pots' order."""
    if not config.basis_points or (config.no_flop_no_drop and not flop_dealt):
        return (0,) * len(amounts)
    left = config.cap
    result = []
    for amount in amounts:
        take = amount * config.basis_points // BASIS_POINTS
        if left is not None:
            take = min(take, left)
            left -= take
        result.append(take)
    return tuple(result)
