"""Rake: a percentage of each pot, floored, capped per hand, no flop no drop."""

from __future__ import annotations

import pytest

from ludex.errors import PokerError
from ludex.poker.rake import rake_pots
from ludex.poker.rules import RakeConfig


def test_floor_per_pot() -> None:
    assert rake_pots([38], RakeConfig(500), flop_dealt=True) == (1,)
    assert rake_pots([40, 19, 21], RakeConfig(500), flop_dealt=True) == (2, 0, 1)


def test_cap_is_per_hand_and_taken_from_the_pots_in_order() -> None:
    assert rake_pots([50, 80, 90, 80], RakeConfig(500, cap=7), flop_dealt=True) == (2, 4, 1, 0)
    assert rake_pots([1000], RakeConfig(500, cap=0), flop_dealt=True) == (0,)


def test_no_flop_no_drop() -> None:
    assert rake_pots([100, 50], RakeConfig(1000), flop_dealt=False) == (0, 0)
    assert rake_pots([100], RakeConfig(1000, no_flop_no_drop=False), flop_dealt=False) == (10,)


def test_rake_never_exceeds_the_percentage_of_any_pot() -> None:
    for amount in range(0, 400):
        (taken,) = rake_pots([amount], RakeConfig(350), flop_dealt=True)
        assert taken * 10_000 <= amount * 350 < (taken + 1) * 10_000


def test_bad_rake_settings_are_refused() -> None:
    with pytest.raises(PokerError):
        RakeConfig(10_001)
    with pytest.raises(PokerError):
        RakeConfig(500, cap=-1)
