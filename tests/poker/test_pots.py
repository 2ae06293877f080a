"""Main and side pots from contributions, and the split with the odd chip."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from ludex.poker.pots import Pot, build_pots, split


def test_four_all_ins_make_a_main_pot_and_three_side_pots() -> None:
    pots = build_pots([10, 30, 60, 100, 100], [True] * 5)
    assert pots == [
        Pot(50, (0, 1, 2, 3, 4)),
        Pot(80, (1, 2, 3, 4)),
        Pot(90, (2, 3, 4)),
        Pot(80, (3, 4)),
    ]


def test_folded_chips_stay_in_but_folded_players_cannot_win() -> None:
    pots = build_pots([50, 20, 50, 5], [True, False, True, False])
    assert pots == [Pot(125, (0, 2))]  # layers with the same contenders are merged


def test_dead_money_goes_to_the_main_pot() -> None:
    assert build_pots([10, 4], [True, True], dead=3) == [Pot(11, (0, 1)), Pot(6, (0,))]
    assert build_pots([0, 0], [True, True], dead=3) == [Pot(3, (0, 1))]


def test_split_gives_one_odd_chip_each_from_the_first_winner() -> None:
    """TDA 20-A: the odd chip to the first seat left of the button; nobody gets two."""
    assert split(10, [4, 1]) == (5, 5)
    assert split(11, [4, 1]) == (6, 5)
    assert split(11, [2, 0, 1]) == (4, 4, 3)
    assert split(3, [5, 1, 2, 3]) == (1, 1, 1, 0)
    assert sum(split(1_000_003, [0, 1, 2, 3, 4, 5, 6])) == 1_000_003


@given(
    st.lists(st.integers(0, 500), min_size=2, max_size=10),
    st.lists(st.booleans(), min_size=10, max_size=10),
    st.integers(0, 20),
)
def test_pots_hold_every_chip_and_only_contenders_who_covered_the_level(
    contributions: list[int], contending: list[bool], dead: int
) -> None:
    contending = contending[: len(contributions)]
    if not any(c and x for c, x in zip(contending, contributions, strict=True)):
        contending[contributions.index(max(contributions))] = True
    top = max(contributions)
    if sum(1 for c in contributions if c == top) == 1:  # as after an uncalled bet is returned
        contending[contributions.index(top)] = True
    pots = build_pots(contributions, contending, dead)
    assert sum(p.amount for p in pots) == sum(contributions) + dead
    for pot in pots:
        assert pot.eligible
        assert all(contending[i] for i in pot.eligible)
    for earlier, later in itertools.pairwise(pots):
        assert set(later.eligible) < set(earlier.eligible)
        assert min(contributions[i] for i in later.eligible) > min(
            contributions[i] for i in earlier.eligible
        )
