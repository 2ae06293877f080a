"""The hand evaluator: exhaustive 5- and 7-card counts, differential tests against
phevaluator and treys, Omaha against a brute-force reference, batch against
one-at-a-time."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from phevaluator import evaluate_cards, evaluate_omaha_cards

from ludex.errors import CardError
from ludex.poker import _kernels, _tables
from ludex.poker.cards import card_str, cards
from ludex.poker.evaluator import (
    WORST_RANK,
    HandCategory,
    category,
    describe,
    evaluate,
    evaluate_batch,
    evaluate_omaha,
    evaluate_omaha_batch,
    seven_card_rank_histogram,
)


def random_hands(count: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    deck = np.arange(52, dtype=np.uint8)
    return _kernels.sample_boards(deck, size, rng.random((count, size)))


# --- exhaustive 5-card hands ----------------------------------------------------------


def test_all_five_card_hands_give_7462_ranks_with_the_standard_category_counts() -> None:
    hands = _kernels.combinations(52, 5)
    assert hands.shape == (2_598_960, 5)
    ranks = evaluate_batch(hands)
    distinct = np.unique(ranks)
    assert len(distinct) == 7462
    assert distinct[0] == 1
    assert distinct[-1] == WORST_RANK
    by_category = Counter(category(int(r)) for r in distinct)
    limits = np.array([10, 166, 322, 1599, 1609, 2467, 3325, 6185, 7462])
    hand_counts = np.bincount(np.searchsorted(limits, ranks), minlength=9)
    assert dict(zip(HandCategory, hand_counts.tolist(), strict=True)) == {
        HandCategory.STRAIGHT_FLUSH: 40,
        HandCategory.FOUR_OF_A_KIND: 624,
        HandCategory.FULL_HOUSE: 3_744,
        HandCategory.FLUSH: 5_108,
        HandCategory.STRAIGHT: 10_200,
        HandCategory.THREE_OF_A_KIND: 54_912,
        HandCategory.TWO_PAIR: 123_552,
        HandCategory.ONE_PAIR: 1_098_240,
        HandCategory.HIGH_CARD: 1_302_540,
    }
    assert by_category == {
        HandCategory.STRAIGHT_FLUSH: 10,
        HandCategory.FOUR_OF_A_KIND: 156,
        HandCategory.FULL_HOUSE: 156,
        HandCategory.FLUSH: 1_277,
        HandCategory.STRAIGHT: 10,
        HandCategory.THREE_OF_A_KIND: 858,
        HandCategory.TWO_PAIR: 858,
        HandCategory.ONE_PAIR: 2_860,
        HandCategory.HIGH_CARD: 1_277,
    }
    sample = np.random.default_rng(5).choice(len(hands), 20_000, replace=False)
    assert [evaluate(hands[i].tolist()) for i in sample] == ranks[sample].tolist()


# --- exhaustive 7-card hands ----------------------------------------------------------

SEVEN_CARD_HANDS = math.comb(52, 7)


def test_all_seven_card_hands_give_4824_ranks_with_the_published_category_counts() -> None:
    histogram = seven_card_rank_histogram()
    assert histogram.shape == (WORST_RANK + 1,)
    assert histogram.dtype == np.int64
    assert histogram[0] == 0
    assert int(histogram.sum()) == SEVEN_CARD_HANDS == 133_784_560
    # Only 4,824 of the 7,462 five-card ranks can be the best five of seven cards.
    assert np.count_nonzero(histogram) == 4_824
    by_category: Counter[HandCategory] = Counter()
    for rank in np.flatnonzero(histogram).tolist():
        by_category[category(rank)] += int(histogram[rank])
    # Published counts (e.g. Wikipedia, "Poker probability", 7-card hands).
    assert by_category == {
        HandCategory.STRAIGHT_FLUSH: 41_584,
        HandCategory.FOUR_OF_A_KIND: 224_848,
        HandCategory.FULL_HOUSE: 3_473_184,
        HandCategory.FLUSH: 4_047_644,
        HandCategory.STRAIGHT: 6_180_020,
        HandCategory.THREE_OF_A_KIND: 6_461_620,
        HandCategory.TWO_PAIR: 31_433_400,
        HandCategory.ONE_PAIR: 58_627_800,
        HandCategory.HIGH_CARD: 23_294_460,
    }
    assert histogram[1] == 4_324  # royal flush
    assert int(histogram[2:11].sum()) == 37_260  # other straight flushes


def test_the_seven_card_enumeration_ranks_each_hand_as_evaluate_batch_does() -> None:
    # Sampled lexicographic ordinals, both ends included: the kernel reports the hand
    # it enumerated at each and the rank it counted for it.
    rng = np.random.default_rng(17)
    drawn = rng.integers(0, SEVEN_CARD_HANDS, 200_000, dtype=np.int64)
    samples = np.unique(np.concatenate([drawn, [0, 1, SEVEN_CARD_HANDS - 1]]))
    histogram, hands, ranks = _kernels.seven_card_histogram(samples)
    assert np.array_equal(histogram, seven_card_rank_histogram())
    assert hands[0].tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert hands[1].tolist() == [0, 1, 2, 3, 4, 5, 7]
    assert hands[-1].tolist() == [45, 46, 47, 48, 49, 50, 51]
    # Each hand sits at its ordinal: the lexicographic rank of a 7-subset of 0..51.
    comb = np.array([[math.comb(n, k) for k in range(8)] for n in range(52)], dtype=np.int64)
    columns = hands.astype(np.int64)
    before = sum(comb[51 - columns[:, i], 7 - i] for i in range(7))
    assert np.array_equal(SEVEN_CARD_HANDS - 1 - before, samples)
    assert np.array_equal(ranks, evaluate_batch(hands))


# --- differential: phevaluator and treys -----------------------------------------------


def test_a_million_random_seven_card_hands_agree_with_phevaluator_and_one_at_a_time() -> None:
    hands = random_hands(1_000_000, 7, seed=1)
    batch = evaluate_batch(hands)
    rows = hands.tolist()
    reference = [evaluate_cards(*row) for row in rows]
    assert batch.tolist() == reference
    assert [evaluate(row) for row in rows] == reference


@pytest.mark.parametrize("size", [5, 6])
def test_random_five_and_six_card_hands_agree_with_phevaluator(size: int) -> None:
    hands = random_hands(200_000, size, seed=size)
    rows = hands.tolist()
    reference = [evaluate_cards(*row) for row in rows]
    assert evaluate_batch(hands).tolist() == reference
    assert [evaluate(row) for row in rows] == reference


def test_random_hands_agree_with_treys() -> None:
    from treys import Card, Evaluator

    treys = Evaluator()
    for size in (5, 6, 7):
        for row in random_hands(5_000, size, seed=10 + size).tolist():
            theirs = treys.evaluate(
                [Card.new(card_str(c)) for c in row[:2]], [Card.new(card_str(c)) for c in row[2:]]
            )
            assert evaluate(row) == theirs, cards_text(row)


def cards_text(row: list[int]) -> str:
    return " ".join(card_str(c) for c in row)


def test_every_flush_suit_and_straight_flush_edge() -> None:
    # Flushes in each suit, six- and seven-card flushes, the wheel and Broadway.
    assert evaluate(cards("AsKsQsJsTs9s8s")) == 1
    assert evaluate(cards("5c4c3c2cAc")) == 10  # steel wheel: worst straight flush
    assert evaluate(cards("6d5d4d3d2dAd")) == 9  # six-high beats the wheel
    assert evaluate(cards("Ah5h4h3h2hKh")) == 10
    assert describe(evaluate(cards("2h4h6h8h3c5d9s"))) == "straight, six high"  # 4-flush
    for suit in "cdhs":
        hand = cards(f"A{suit}J{suit}9{suit}5{suit}3{suit}")
        assert evaluate(hand) == evaluate_cards(*hand)
        assert category(evaluate(hand)) is HandCategory.FLUSH
    # A flush beats a straight on the same seven cards, quads beat a flush.
    assert category(evaluate(cards("9h8h7h6c5h2h3d"))) is HandCategory.FLUSH
    assert category(evaluate(cards("AhAcAdAs2h3h4h"))) is HandCategory.FOUR_OF_A_KIND
    assert evaluate(cards("7c5d4h3s2c")) == WORST_RANK


# --- Omaha ------------------------------------------------------------------------------


def brute_force_omaha(hole: list[int], board: list[int]) -> int:
    return min(
        evaluate([*two, *three])
        for two in itertools.combinations(hole, 2)
        for three in itertools.combinations(board, 3)
    )


def test_random_omaha_hands_agree_with_brute_force_and_phevaluator() -> None:
    hands = random_hands(20_000, 9, seed=7)
    holes, boards = hands[:, :4], hands[:, 4:]
    batch = evaluate_omaha_batch(holes, boards)
    for hole, board, rank in zip(holes.tolist(), boards.tolist(), batch.tolist(), strict=True):
        assert evaluate_omaha(hole, board) == rank == brute_force_omaha(hole, board)
        assert rank == evaluate_omaha_cards(*board, *hole)


@pytest.mark.parametrize("board_size", [3, 4])
def test_omaha_on_flop_and_turn(board_size: int) -> None:
    hands = random_hands(5_000, 4 + board_size, seed=board_size)
    holes, boards = hands[:, :4], hands[:, 4:]
    batch = evaluate_omaha_batch(holes, boards).tolist()
    for hole, board, rank in zip(holes.tolist(), boards.tolist(), batch, strict=True):
        assert evaluate_omaha(hole, board) == rank == brute_force_omaha(hole, board)


@pytest.mark.parametrize(
    ("hole", "board", "expected", "holdem_would_say"),
    [
        # Four hearts on board, one in hand: no flush in Omaha (needs two from hand).
        ("AhKcQdJs", "2h5h8h9hTc", HandCategory.STRAIGHT, HandCategory.FLUSH),
        # Four of a kind on the board is not a hand: only three board cards play.
        ("AhKcQdJs", "7c7d7h7s2c", HandCategory.THREE_OF_A_KIND, HandCategory.FOUR_OF_A_KIND),
        # Paired board and one ace in hand: trips plus board pair is no full house.
        ("Ah2c3d4s", "AcAd9s9hKc", HandCategory.THREE_OF_A_KIND, HandCategory.FULL_HOUSE),
        ("Ah2c6d7s", "AcKdQsJhTc", HandCategory.ONE_PAIR, HandCategory.STRAIGHT),
        # Five-card straight on the board needs two hole cards to join it.
        ("2c2d3h3s", "9hTcJdQsKc", HandCategory.ONE_PAIR, HandCategory.STRAIGHT),
        # Two suited hole cards with three on board do make the flush.
        ("Kh7h2c2d", "Ah9h4h3s8c", HandCategory.FLUSH, HandCategory.FLUSH),
    ],
)
def test_omaha_hands_where_holdem_logic_would_be_wrong(
    hole: str, board: str, expected: HandCategory, holdem_would_say: HandCategory
) -> None:
    rank = evaluate_omaha(cards(hole), cards(board))
    assert category(rank) is expected
    assert rank == brute_force_omaha(cards(hole), cards(board))
    holdem = min(evaluate(list(seven)) for seven in itertools.combinations(cards(hole + board), 7))
    assert category(holdem) is holdem_would_say


def test_omaha_full_house_with_paired_board_uses_the_right_pair() -> None:
    # Ah 9c from the hand with Ac Ad 9s from the board.
    rank = evaluate_omaha(cards("Ah9c3d4s"), cards("AcAd9s5hKc"))
    assert describe(rank) == "full house, aces full of nines"


# --- batch and errors ---------------------------------------------------------------------


def test_batch_accepts_other_integer_dtypes_and_empty_input() -> None:
    hands = random_hands(1_000, 7, seed=3)
    expected = evaluate_batch(hands)
    assert evaluate_batch(hands.astype(np.int64)).tolist() == expected.tolist()
    assert evaluate_batch(hands[:, ::-1]).tolist() == expected.tolist()  # not contiguous
    assert evaluate_batch(np.empty((0, 7), dtype=np.uint8)).shape == (0,)
    assert expected.dtype == np.uint16


@pytest.mark.parametrize(
    "bad",
    [
        [0, 1, 2, 3, 4, 5, 5],  # repeated card
        [9, 9, 9, 9, 4, 5, 6],  # one card four times
        [0, 1, 2, 3, 4, 5, 52],  # id out of range
        [0, 1, 2, 3, -1, 5, 6],  # negative id
        [0, 1, 2, 3, 400, 5, 6],
        [0, 1, 2, 3],  # too few
        [0, 1, 2, 3, 4, 5, 6, 7],  # too many
        [0, 1, 2, 3, 3],
        [0, 1, 2, 3, 4, 4],
        ["Ah", 1, 2, 3, 4, 5, 6],
        [0.0, 1, 2, 3, 4],
    ],
)
def test_bad_hands_raise_card_error(bad: list[object]) -> None:
    with pytest.raises(CardError):
        evaluate(bad)  # type: ignore[arg-type]


def test_bad_rows_in_a_batch_raise_card_error_naming_the_row() -> None:
    hands = random_hands(100, 7, seed=4)
    hands[37, 3] = hands[37, 5]
    with pytest.raises(CardError, match="row 37"):
        evaluate_batch(hands)
    with pytest.raises(CardError, match=r"0\.\.51"):
        evaluate_batch(np.full((2, 7), 60, dtype=np.int64))
    with pytest.raises(CardError, match="columns"):
        evaluate_batch(np.zeros((2, 4), dtype=np.uint8))
    too_big = random_hands(10, 7, seed=5)
    too_big[2, 0] = 52
    with pytest.raises(CardError, match="row 2"):
        evaluate_batch(too_big)


def test_bad_omaha_input_raises_card_error() -> None:
    with pytest.raises(CardError):
        evaluate_omaha(cards("AhKh"), cards("2c3c4c"))
    with pytest.raises(CardError):
        evaluate_omaha(cards("AhKhQhJh"), cards("2c3c"))
    with pytest.raises(CardError):
        evaluate_omaha(cards("AhKhQhJh"), [*cards("2c3c"), cards("Ah")[0]])
    holes = np.array([cards("AhKhQhJh")], dtype=np.uint8)
    with pytest.raises(CardError, match="row 0"):
        evaluate_omaha_batch(holes, np.array([cards("2c3cAh")], dtype=np.uint8))


# --- categories and words -------------------------------------------------------------------


def test_category_boundaries_and_descriptions() -> None:
    assert category(1) is HandCategory.STRAIGHT_FLUSH
    assert category(10) is HandCategory.STRAIGHT_FLUSH
    assert category(11) is HandCategory.FOUR_OF_A_KIND
    assert category(1600) is HandCategory.STRAIGHT
    assert category(7462) is HandCategory.HIGH_CARD
    with pytest.raises(ValueError, match=r"1\.\.7462"):
        category(0)
    assert describe(1) == "royal flush"
    assert describe(evaluate(cards("9c8c7c6c5c"))) == "straight flush, nine high"
    assert describe(evaluate(cards("KcKdKh7s7cAd2h"))) == "full house, kings full of sevens"
    assert describe(evaluate(cards("6c6d6h6s2c"))) == "four of a kind, sixes, 2 kicker"
    assert describe(evaluate(cards("JcJd4h4s9c2d3h"))) == "two pair, jacks and fours, 9 kicker"
    assert describe(evaluate(cards("AcQd8h5s3c"))) == "high card, A-Q-8-5-3"
    assert describe(evaluate(cards("5c4d3h2sAc"))) == "straight, five high"


# --- stored tables ----------------------------------------------------------------------------


def test_stored_tables_are_exactly_what_the_generator_builds() -> None:
    rebuilt = _tables.tables_bytes(_tables.build_tables())
    assert rebuilt == _tables.DATA_FILE.read_bytes()
