"""Poker hand evaluation: hold'em (5, 6 or 7 cards) and Omaha (2 hole + 3 board).

Ranks use the phevaluator/treys numbering: 1 is a royal flush, 7,462 is 7-5-4-3-2
offsuit, and a lower number is a better hand; equal numbers split the pot. Cards are
``ludex.poker.cards`` ids (``rank * 4 + suit``), the same ids as phevaluator.

Two entry points:

* :func:`evaluate` / :func:`evaluate_omaha` rank one hand in pure Python: a sum of
  per-card integers, one AND to catch flushes, duplicates and bad ids at once, and
  one ``dict`` lookup (see :mod:`ludex.poker._tables`).
* :func:`evaluate_batch` / :func:`evaluate_omaha_batch` rank NumPy arrays of hands
  with numba kernels (:mod:`ludex.poker._kernels`), in parallel over rows.

:func:`seven_card_rank_histogram` counts the ranks of all C(52, 7) seven-card hands
with the batch kernels' table logic (the exhaustive check in the tests).

Importing this module is cheap: the tables are read from ``data/`` on the first
evaluation and numba is imported on the first batch call (which compiles the
kernels, or loads them from numba's cache).

Pure: no I/O beyond reading the table file once; never mutates its arguments.
"""

from __future__ import annotations

import array
import itertools
from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Final

import numpy as np
import numpy.typing as npt

from ludex.errors import CardError
from ludex.poker import _tables as tables
from ludex.poker.cards import DECK_SIZE, RANKS, check_distinct

__all__ = [
    "WORST_RANK",
    "HandCategory",
    "category",
    "describe",
    "evaluate",
    "evaluate_batch",
    "evaluate_omaha",
    "evaluate_omaha_batch",
    "seven_card_rank_histogram",
]

WORST_RANK: Final = 7462

# A card's key in the one-at-a-time path: the low 156 bits hold a 3-bit counter per
# card, suit by suit (card ``c`` at bit ``3 * (13 * suit + rank)``), so a repeated
# card sets bit 1 or 2 of its counter and a flush suit's counters spell its rank
# mask (read through _FLUSH_SPREAD); bits 156-158 count
# out-of-range ids; bits 160-183 hold the suit counters of ludex.poker._tables and
# the rank-sum sits on top from bit 184, so one shift extracts it. One AND with
# _SPECIAL catches a flush, a repeated card and a bad id at once.
_SUITS_SHIFT: Final = 160
_SUM_SHIFT: Final = _SUITS_SHIFT + 4 * tables.SUIT_FIELD_BITS
_BAD_SHIFT: Final = 3 * DECK_SIZE
_DUPLICATE_BITS: Final = sum(0b110 << (3 * c) for c in range(DECK_SIZE))
_INVALID: Final = _DUPLICATE_BITS | (0b111 << _BAD_SHIFT)
_SUIT_COUNTERS: Final = (1 << 39) - 1
_FLUSH_BITS: Final = tables.FLUSH_BITS >> tables.SUIT_SHIFT << _SUITS_SHIFT
_SPECIAL: Final = _FLUSH_BITS | _DUPLICATE_BITS | (0b111 << _BAD_SHIFT)
_OFFSET_5: Final = tables.LENGTH_OFFSET[5] << _SUM_SHIFT
_OFFSET_6: Final = tables.LENGTH_OFFSET[6] << _SUM_SHIFT


def _python_key(card: int) -> int:
    table_key = tables.card_key(card)
    rank_sum, suits = table_key & tables.RANK_MASK, table_key >> tables.SUIT_SHIFT
    counter = 13 * (card & 3) + (card >> 2)
    return (rank_sum << _SUM_SHIFT) | (suits << _SUITS_SHIFT) | (1 << (3 * counter))


# 104 entries so that a negative id (which Python would index from the end) or an id
# in 52..103 lands on a "bad card" value instead of a real card; larger ids raise.
_CARD_KEYS: Final[list[int]] = [_python_key(c) for c in range(DECK_SIZE)] + [
    1 << _BAD_SHIFT
] * DECK_SIZE
_PLAIN_KEYS: Final[list[int]] = [tables.card_key(c) for c in range(DECK_SIZE)]
_RANK_BITS: Final[list[int]] = [1 << (c >> 2) for c in range(DECK_SIZE)]

# Filled from the table file on first use (see _load). Seven-card hands, the hot
# path, index a flat uint16 array by rank-sum (15.6 MB; measured ~10% faster than a
# dict, whose lookups miss the cache on the key objects); 5- and 6-card hands use a
# dict keyed by rank-sum plus length offset.
_RANKS_7: Final = array.array("H")
_NOFLUSH_SHORT: Final[dict[int, int]] = {}
_FLUSH: Final[list[int]] = []
# A suit's 13 presence counters (one bit each when no card repeats) → flush rank.
_FLUSH_SPREAD: Final[dict[int, int]] = {}


class HandCategory(IntEnum):
    """The nine hand categories, best first (values as in phevaluator)."""

    STRAIGHT_FLUSH = 1
    FOUR_OF_A_KIND = 2
    FULL_HOUSE = 3
    FLUSH = 4
    STRAIGHT = 5
    THREE_OF_A_KIND = 6
    TWO_PAIR = 7
    ONE_PAIR = 8
    HIGH_CARD = 9


# Worst rank of each category, in category order.
_CATEGORY_LIMITS: Final = (10, 166, 322, 1599, 1609, 2467, 3325, 6185, 7462)


def _load() -> None:
    if _FLUSH:
        return
    data = tables.load_tables()
    keys, ranks = data.noflush_keys, data.noflush_ranks
    seven = keys < tables.LENGTH_OFFSET[6]
    flat = np.zeros(int(keys[seven].max()) + 1, dtype=np.uint16)
    flat[keys[seven]] = ranks[seven]
    _RANKS_7.frombytes(flat.tobytes())
    # One int object per rank keeps the dict's values few and cache-friendly.
    shared = {r: r for r in range(1, WORST_RANK + 1)}
    _NOFLUSH_SHORT.update(
        (k, shared[r]) for k, r in zip(keys[~seven].tolist(), ranks[~seven].tolist(), strict=True)
    )
    _FLUSH.extend(shared.get(r, 0) for r in data.flush_ranks.tolist())
    for mask, rank in enumerate(_FLUSH):
        if rank:
            _FLUSH_SPREAD[sum(1 << (3 * r) for r in range(13) if mask >> r & 1)] = rank


def _make_evaluate() -> Callable[[Sequence[int]], int]:
    # The hot path reads its tables from closure cells, measured ~10% faster than
    # module globals.
    keys, special, ranks_7, shift = _CARD_KEYS, _SPECIAL, _RANKS_7, _SUM_SHIFT

    def evaluate(cards: Sequence[int]) -> int:
        """Rank of the best 5-card hand among 5, 6 or 7 distinct cards (1 = best).

        Raises :class:`CardError` for a repeated card, an id outside 0..51 or a
        count other than 5, 6 or 7.
        """
        try:
            a, b, c, d, e, f, g = cards
            key = keys[a] + keys[b] + keys[c] + keys[d] + keys[e] + keys[f] + keys[g]
        except (ValueError, TypeError, IndexError):
            return _evaluate_short(cards)
        if key & special:
            return _evaluate_special(cards, key)
        try:
            return ranks_7[key >> shift]
        except IndexError:  # the tables are not loaded yet
            _load()
            return ranks_7[key >> shift]

    return evaluate


evaluate = _make_evaluate()


def _evaluate_short(cards: Sequence[int]) -> int:
    """The 5- and 6-card paths, and every malformed input."""
    keys = _CARD_KEYS
    try:
        count = len(cards)
    except TypeError:
        raise CardError(f"cards must be a sequence of card ids, got {cards!r}") from None
    if count not in (5, 6, 7):
        raise CardError(f"a hold'em hand has 5, 6 or 7 cards, got {count}")
    try:
        if count == 5:
            a, b, c, d, e = cards
            key = _OFFSET_5 + keys[a] + keys[b] + keys[c] + keys[d] + keys[e]
        elif count == 6:
            a, b, c, d, e, f = cards
            key = _OFFSET_6 + keys[a] + keys[b] + keys[c] + keys[d] + keys[e] + keys[f]
        else:  # seven cards that the fast path could not index
            check_distinct(cards)
            raise TypeError("card ids must be integers")
    except (TypeError, IndexError, ValueError) as exc:
        raise CardError(f"cards must be card ids in 0..51, got {list(cards)!r}") from exc
    if key & _SPECIAL:
        return _evaluate_special(cards, key)
    _load()
    return _NOFLUSH_SHORT[key >> _SUM_SHIFT]


def _evaluate_special(cards: Sequence[int], key: int) -> int:
    """A flush, or a hand with a repeated or out-of-range card (which raises)."""
    if key & _INVALID:
        check_distinct(cards)
        raise AssertionError(f"unreachable: {cards!r} passed check_distinct")
    _load()
    for suit in range(4):
        if key >> (_SUITS_SHIFT + tables.SUIT_FIELD_BITS * suit) & 32:
            return _FLUSH_SPREAD[key >> (39 * suit) & _SUIT_COUNTERS]
    raise AssertionError("unreachable: special key without flush or bad card")


def evaluate_omaha(hole: Sequence[int], board: Sequence[int]) -> int:
    """Rank of the best hand made of exactly 2 of 4 hole cards and 3 of 3-5 board cards."""
    hole, board = list(hole), list(board)
    if len(hole) != 4:
        raise CardError(f"an Omaha hand has 4 hole cards, got {len(hole)}")
    if not 3 <= len(board) <= 5:
        raise CardError(f"an Omaha board has 3 to 5 cards, got {len(board)}")
    check_distinct(hole + board)
    _load()
    keys, bits = _PLAIN_KEYS, _RANK_BITS
    pairs = [
        (keys[x] + keys[y] + tables.LENGTH_OFFSET[5], bits[x] | bits[y])
        for x, y in itertools.combinations(hole, 2)
    ]
    triples = [
        (keys[x] + keys[y] + keys[z], bits[x] | bits[y] | bits[z])
        for x, y, z in itertools.combinations(board, 3)
    ]
    flush_bits, rank_mask, noflush, flush = (
        tables.FLUSH_BITS,
        tables.RANK_MASK,
        _NOFLUSH_SHORT,
        _FLUSH,
    )
    best = WORST_RANK
    for pair_key, pair_bits in pairs:
        for triple_key, triple_bits in triples:
            key = pair_key + triple_key
            rank = flush[pair_bits | triple_bits] if key & flush_bits else noflush[key & rank_mask]
            if rank < best:
                best = rank
    return best


def category(rank: int) -> HandCategory:
    """The category of a rank: ``category(1) is HandCategory.STRAIGHT_FLUSH``."""
    if not 1 <= rank <= WORST_RANK:
        raise ValueError(f"a hand rank is in 1..{WORST_RANK}, got {rank}")
    for value, limit in enumerate(_CATEGORY_LIMITS, start=1):
        if rank <= limit:
            return HandCategory(value)
    raise AssertionError("unreachable")


_NAMES: Final = (
    "deuce",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "jack",
    "queen",
    "king",
    "ace",
)


def _plural(rank: int) -> str:
    return "sixes" if rank == 4 else _NAMES[rank] + "s"


def _ranks_text(ranks: Sequence[int]) -> str:
    return "-".join(RANKS[r] for r in ranks)


_CLASS_BY_RANK: list[tables.ClassKey] = []


def describe(rank: int) -> str:
    """Words for a rank: ``describe(1) == "royal flush"``, ``"full house, kings full of
    sevens"``, ``"two pair, jacks and fours, 9 kicker"``, ``"high card, A-Q-8-5-3"``."""
    kind = category(rank)
    if not _CLASS_BY_RANK:
        classes = tables.all_classes()
        _CLASS_BY_RANK.extend(sorted(classes, key=classes.__getitem__))
    ranks = _CLASS_BY_RANK[rank - 1][1]
    if kind is HandCategory.STRAIGHT_FLUSH:
        return "royal flush" if ranks[0] == 12 else f"straight flush, {_NAMES[ranks[0]]} high"
    if kind is HandCategory.FOUR_OF_A_KIND:
        return f"four of a kind, {_plural(ranks[0])}, {RANKS[ranks[1]]} kicker"
    if kind is HandCategory.FULL_HOUSE:
        return f"full house, {_plural(ranks[0])} full of {_plural(ranks[1])}"
    if kind is HandCategory.FLUSH:
        return f"flush, {_ranks_text(ranks)}"
    if kind is HandCategory.STRAIGHT:
        return f"straight, {_NAMES[ranks[0]]} high"
    if kind is HandCategory.THREE_OF_A_KIND:
        return f"three of a kind, {_plural(ranks[0])}, {_ranks_text(ranks[1:])} kickers"
    if kind is HandCategory.TWO_PAIR:
        return f"two pair, {_plural(ranks[0])} and {_plural(ranks[1])}, {RANKS[ranks[2]]} kicker"
    if kind is HandCategory.ONE_PAIR:
        return f"one pair, {_plural(ranks[0])}, {_ranks_text(ranks[1:])} kickers"
    return f"high card, {_ranks_text(ranks)}"


def _as_card_array(cards: npt.ArrayLike, name: str, widths: Sequence[int]) -> npt.NDArray[np.uint8]:
    array = np.asarray(cards)
    if array.ndim != 2 or array.shape[1] not in widths:
        raise CardError(
            f"{name} must be a 2-D array with {' or '.join(map(str, widths))} columns, "
            f"got shape {array.shape}"
        )
    if array.dtype != np.uint8:
        if array.dtype.kind not in "iu":
            raise CardError(f"{name} must hold integer card ids, got dtype {array.dtype}")
        if array.size and (array.min() < 0 or array.max() >= DECK_SIZE):
            raise CardError(f"{name}: card ids must be in 0..51")
    return np.ascontiguousarray(array, dtype=np.uint8)


def _raise_bad_row(rows: npt.NDArray[np.uint8], ranks: npt.NDArray[np.uint16], name: str) -> None:
    bad = np.flatnonzero(ranks == 0)
    if bad.size:
        row = int(bad[0])
        try:
            check_distinct([int(c) for c in rows[row]])
        except CardError as exc:
            raise CardError(f"{name} row {row}: {exc}") from None
        raise CardError(f"{name} row {row}: invalid hand")


def evaluate_batch(cards: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """Ranks of an ``(n, 5|6|7)`` array of card ids, one uint16 rank per row.

    Every row is checked (ids in 0..51, no repeats); a bad row raises
    :class:`CardError` naming the first such row. The first call in a process
    compiles the numba kernels or loads them from numba's cache.
    """
    rows = _as_card_array(cards, "cards", (5, 6, 7))
    from ludex.poker import _kernels

    ranks = _kernels.evaluate_rows(rows)
    _raise_bad_row(rows, ranks, "cards")
    return ranks


def evaluate_omaha_batch(hole: npt.ArrayLike, board: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    """Omaha ranks for ``(n, 4)`` hole cards and ``(n, 3|4|5)`` boards, row by row."""
    holes = _as_card_array(hole, "hole", (4,))
    boards = _as_card_array(board, "board", (3, 4, 5))
    if holes.shape[0] != boards.shape[0]:
        raise CardError(f"{holes.shape[0]} hole rows but {boards.shape[0]} board rows")
    from ludex.poker import _kernels

    ranks = _kernels.evaluate_omaha_rows(holes, boards)
    _raise_bad_row(np.hstack([holes, boards]), ranks, "hole+board")
    return ranks


def seven_card_rank_histogram() -> npt.NDArray[np.int64]:
    """How many of the 133,784,560 seven-card hands have each rank.

    An int64 array of 7,463 counts indexed by rank (index 0 is unused and always 0),
    so ``hist.sum() == math.comb(52, 7)``. The hands are enumerated in a numba kernel
    without materialising them, using the same lookup as :func:`evaluate_batch`
    (well under a second on two cores once compiled; the first call in a process
    compiles the kernel or loads it from numba's cache). Pure: a new array each call.
    """
    from ludex.poker import _kernels

    histogram, _, _ = _kernels.seven_card_histogram(np.empty(0, dtype=np.int64))
    return histogram
