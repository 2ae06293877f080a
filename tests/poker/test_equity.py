"""Equity: published figures, brute-force counts, Omaha sanity, Monte Carlo tolerance."""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
import pytest

from ludex.errors import CardError
from ludex.poker.cards import cards
from ludex.poker.equity import equity
from ludex.poker.evaluator import evaluate, evaluate_omaha


def brute_force(
    holes: list[list[int]], board: list[int], dead: list[int] = (), *, omaha: bool = False
) -> list[Fraction]:
    """Exact equities by enumerating every board with the one-at-a-time evaluator."""
    used = {c for h in holes for c in h} | set(board) | set(dead)
    remaining = [c for c in range(52) if c not in used]
    shares = [Fraction(0)] * len(holes)
    boards = 0
    for extra in itertools.combinations(remaining, 5 - len(board)):
        full = [*board, *extra]
        ranks = [evaluate_omaha(h, full) if omaha else evaluate([*h, *full]) for h in holes]
        best = min(ranks)
        winners = [i for i, r in enumerate(ranks) if r == best]
        for i in winners:
            shares[i] += Fraction(1, len(winners))
        boards += 1
    return [s / boards for s in shares]


def test_aces_against_kings_preflop_matches_the_published_figure() -> None:
    # PokerStove / every equity table: AsAh vs KsKd is 81.95% : 18.05%, with AA
    # winning 81.71%, KK 17.82% and 0.46% of boards split.
    result = equity([cards("AsAh"), cards("KsKd")])
    assert result.exhaustive
    assert result.boards == 1_712_304
    assert round(result.equities[0], 4) == 0.8195
    assert round(result.wins[0], 4) == 0.8171
    assert round(result.wins[1], 4) == 0.1782
    assert round(2 * result.ties[0], 4) == 0.0046
    assert sum(result.equities) == pytest.approx(1.0, abs=1e-12)


def test_ace_king_suited_against_deuces_is_a_coin_flip() -> None:
    # Published: AhKh vs 2c2d is 50.08% : 49.92% (the classic "race").
    result = equity([cards("AhKh"), cards("2c2d")])
    assert round(result.equities[0], 4) == 0.5008
    assert round(result.equities[1], 4) == 0.4992


def test_flop_and_turn_situations_match_a_brute_force_count() -> None:
    holes = [cards("AhKh"), cards("QsQc"), cards("7d8d")]
    board = cards("Qh9d2h")
    result = equity(holes, board)
    assert result.exhaustive
    assert result.boards == 903  # C(43, 2)
    for ours, exact in zip(result.equities, brute_force(holes, board), strict=True):
        assert ours == pytest.approx(float(exact), abs=1e-12)
    dead = cards("Jh3c")
    turn = [*board, cards("Td")[0]]
    with_dead = equity(holes, turn, dead)
    assert with_dead.boards == 40  # 52 - 6 hole - 4 board - 2 dead
    for ours, exact in zip(with_dead.equities, brute_force(holes, turn, dead), strict=True):
        assert ours == pytest.approx(float(exact), abs=1e-12)


def test_split_pots_are_shared_and_a_complete_board_is_one_showdown() -> None:
    board = cards("AsKdQcJhTs")  # Broadway on board: everyone plays it
    result = equity([cards("2c3c"), cards("4d5d"), cards("6h7h")], board)
    assert result.boards == 1
    assert result.wins == (0.0, 0.0, 0.0)
    assert result.equities == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    decided = equity([cards("AhAc"), cards("2c3c")], cards("AsKdQc7h2h"))
    assert decided.equities == (1.0, 0.0)


def test_omaha_equity_agrees_with_brute_force_and_is_sane() -> None:
    holes = [cards("AhAsKdQc"), cards("JhTh9c8c")]
    board = cards("Ac7h2d")
    result = equity(holes, board, game="omaha")
    for ours, exact in zip(result.equities, brute_force(holes, board, omaha=True), strict=True):
        assert ours == pytest.approx(float(exact), abs=1e-12)
    preflop = equity(holes, game="omaha")
    assert preflop.exhaustive
    assert preflop.boards == 1_086_008  # C(44, 5)
    assert 0.5 < preflop.equities[0] < 0.7  # aces double-suited-ish vs a rundown
    assert sum(preflop.equities) == pytest.approx(1.0)
    # The same cards dealt as hold'em hands would be a different game entirely.
    with pytest.raises(CardError, match="4 hole cards"):
        equity([cards("AhAs"), cards("KdKc")], game="omaha")


def test_monte_carlo_is_within_tolerance_of_exhaustive_and_reproducible() -> None:
    holes = [cards("AsAh"), cards("KsKd"), cards("9c8c")]
    exact = equity(holes)
    samples = 200_000
    estimate = equity(holes, samples=samples, rng=np.random.default_rng(42))
    assert not estimate.exhaustive
    assert estimate.boards == samples
    for mc, ex in zip(estimate.equities, exact.equities, strict=True):
        sigma = (ex * (1 - ex) / samples) ** 0.5
        assert abs(mc - ex) < 5 * sigma
    again = equity(holes, samples=samples, rng=np.random.default_rng(42))
    assert again == estimate
    other = equity(holes, samples=samples, rng=np.random.default_rng(43))
    assert other != estimate
    assert sum(estimate.equities) == pytest.approx(1.0)
    # Asking for more samples than there are boards enumerates instead.
    river = equity(holes[:2], cards("2c7d9hJs"), samples=10_000)
    assert river.exhaustive
    assert river.boards == 44


def test_bad_input_is_refused() -> None:
    with pytest.raises(CardError, match="appears twice"):
        equity([cards("AhKh"), cards("AhQd")])
    with pytest.raises(CardError, match="2 to 10"):
        equity([cards("AhKh")])
    with pytest.raises(CardError, match="2 hole cards"):
        equity([cards("AhKhQh"), cards("2c2d")])
    with pytest.raises(CardError, match="at most 5"):
        equity([cards("AhKh"), cards("2c2d")], cards("3c4c5c6c7c8c"))
    with pytest.raises(ValueError, match="samples"):
        equity([cards("AhKh"), cards("2c2d")], samples=0)
