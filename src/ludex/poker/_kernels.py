"""numba kernels behind the batch evaluator and the equity calculator.

Imported lazily by :mod:`ludex.poker.evaluator` and :mod:`ludex.poker.equity` on
their first batch call, because importing numba costs a few hundred milliseconds and
compiling the kernels a few seconds more (later processes load them from numba's
cache: ``__pycache__`` next to this file, or the user-wide cache directory when the
package directory is read-only, or ``NUMBA_CACHE_DIR`` when set).

Keys and tables are described in :mod:`ludex.poker._tables`. A kernel writes rank 0
for a row with an out-of-range or repeated card; the caller turns that into a
:class:`~ludex.errors.CardError`.

Pure: no I/O except numba's own cache; never mutates its inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, TypeVar, cast

import numpy as np
import numpy.typing as npt
from numba import get_num_threads, njit, prange

from ludex.poker import _tables as tables

_TABLES: Final = tables.load_tables()
CARD_KEYS: Final = np.array([tables.card_key(c) for c in range(52)], dtype=np.int64)
RANK_BITS: Final = np.array([1 << (c >> 2) for c in range(52)], dtype=np.int64)
OFFSETS: Final = _TABLES.hash_offsets
HASH_RANKS: Final = _TABLES.hash_ranks
FLUSH_RANKS: Final = _TABLES.flush_ranks

_RANK_MASK: Final = tables.RANK_MASK
_SHIFT: Final = tables.HASH_SHIFT
_COLUMN_MASK: Final = (1 << tables.HASH_SHIFT) - 1
_FLUSH_BITS: Final = tables.FLUSH_BITS
_SUIT_SHIFT: Final = tables.SUIT_SHIFT
_SUIT_FIELD: Final = tables.SUIT_FIELD_BITS
_OFFSET_5: Final = tables.LENGTH_OFFSET[5]
_LENGTH_OFFSETS: Final = np.array(
    [tables.LENGTH_OFFSET.get(n, 0) for n in range(8)], dtype=np.int64
)
#: Tie shares are counted in units of 1/2520 of a pot: 2520 is divisible by 1..10,
#: so a split among any number of players is an exact integer.
TIE_UNITS: Final = 2520

_F = TypeVar("_F", bound=Callable[..., Any])


def _jit(fn: _F) -> _F:
    """Compile a helper that the kernels inline."""
    return cast(_F, njit(cache=True, inline="always")(fn))


def _parallel(fn: _F) -> _F:
    """Compile a kernel whose ``prange`` loops run on every core."""
    return cast(_F, njit(cache=True, parallel=True)(fn))


def _compiled(fn: _F) -> _F:
    """Compile a serial function callable from Python."""
    return cast(_F, njit(cache=True)(fn))


@_jit
def _noflush_rank(key: int, offsets: Any, hash_ranks: Any) -> int:
    rank_sum = key & _RANK_MASK
    return int(hash_ranks[offsets[rank_sum >> _SHIFT] + (rank_sum & _COLUMN_MASK)])


@_jit
def _flush_suit(key: int) -> int:
    for suit in range(4):
        if (key >> (_SUIT_SHIFT + _SUIT_FIELD * suit + 5)) & 1:
            return suit
    return -1


@_jit
def _rank_with_cards(key: int, seen: int, offsets: Any, hash_ranks: Any, flush: Any) -> int:
    """Rank of a 5-7 card hand from its key and its 52-bit card mask."""
    if key & _FLUSH_BITS:
        suit = _flush_suit(key)
        mask = 0
        for rank in range(13):
            mask |= ((seen >> (4 * rank + suit)) & 1) << rank
        return int(flush[mask])
    return _noflush_rank(key, offsets, hash_ranks)


@_parallel
def _evaluate_rows(
    cards: Any, card_keys: Any, offsets: Any, hash_ranks: Any, flush: Any, out: Any
) -> None:
    n, width = cards.shape
    base = _LENGTH_OFFSETS[width]
    for i in prange(n):
        key = base
        seen = 0
        ok = True
        for j in range(width):
            card = int(cards[i, j])
            bit = 1 << card
            if card >= 52 or seen & bit:
                ok = False
            seen |= bit
            key += card_keys[card % 52]
        out[i] = _rank_with_cards(key, seen, offsets, hash_ranks, flush) if ok else 0


@_jit
def _omaha_rank(
    pair_keys: Any,
    pair_bits: Any,
    triple_keys: Any,
    triple_bits: Any,
    n_triples: int,
    offsets: Any,
    hash_ranks: Any,
    flush: Any,
) -> int:
    best = 7463
    for p in range(6):
        for t in range(n_triples):
            key = pair_keys[p] + triple_keys[t]
            if key & _FLUSH_BITS:
                rank = flush[pair_bits[p] | triple_bits[t]]
            else:
                rank = _noflush_rank(key, offsets, hash_ranks)
            best = min(best, rank)
    return best


@_jit
def _omaha_pairs(hole: Any, card_keys: Any, rank_bits: Any, pair_keys: Any, pair_bits: Any) -> None:
    p = 0
    for a in range(4):
        for b in range(a + 1, 4):
            x, y = hole[a], hole[b]
            pair_keys[p] = _OFFSET_5 + card_keys[x] + card_keys[y]
            pair_bits[p] = rank_bits[x] | rank_bits[y]
            p += 1


@_jit
def _omaha_triples(
    board: Any, card_keys: Any, rank_bits: Any, triple_keys: Any, triple_bits: Any
) -> int:
    t = 0
    size = board.shape[0]
    for a in range(size):
        for b in range(a + 1, size):
            for c in range(b + 1, size):
                x, y, z = board[a], board[b], board[c]
                triple_keys[t] = card_keys[x] + card_keys[y] + card_keys[z]
                triple_bits[t] = rank_bits[x] | rank_bits[y] | rank_bits[z]
                t += 1
    return t


@_jit
def _valid(cards: Any) -> bool:
    seen = 0
    for j in range(cards.shape[0]):
        card = int(cards[j])
        if card >= 52 or (seen >> card) & 1:
            return False
        seen |= 1 << card
    return True


@_parallel
def _evaluate_omaha_rows(
    holes: Any,
    boards: Any,
    card_keys: Any,
    rank_bits: Any,
    offsets: Any,
    hash_ranks: Any,
    flush: Any,
    out: Any,
) -> None:
    n = holes.shape[0]
    for i in prange(n):
        hole, board = holes[i], boards[i]
        if not (_valid(hole) and _valid(board)):
            out[i] = 0
            continue
        both = 0
        for card in hole:
            both |= np.int64(1) << card
        for card in board:
            both |= np.int64(1) << card
        if _popcount(both) != 4 + board.shape[0]:
            out[i] = 0
            continue
        pair_keys = np.empty(6, dtype=np.int64)
        pair_bits = np.empty(6, dtype=np.int64)
        triple_keys = np.empty(10, dtype=np.int64)
        triple_bits = np.empty(10, dtype=np.int64)
        _omaha_pairs(hole, card_keys, rank_bits, pair_keys, pair_bits)
        n_triples = _omaha_triples(board, card_keys, rank_bits, triple_keys, triple_bits)
        out[i] = _omaha_rank(
            pair_keys, pair_bits, triple_keys, triple_bits, n_triples, offsets, hash_ranks, flush
        )


@_jit
def _popcount(value: int) -> int:
    count = 0
    while value:
        value &= value - 1
        count += 1
    return count


def evaluate_rows(cards: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint16]:
    """Ranks of ``(n, 5|6|7)`` uint8 card rows (0 for a row with a bad card)."""
    out = np.empty(cards.shape[0], dtype=np.uint16)
    _evaluate_rows(cards, CARD_KEYS, OFFSETS, HASH_RANKS, FLUSH_RANKS, out)
    return out


def evaluate_omaha_rows(
    holes: npt.NDArray[np.uint8], boards: npt.NDArray[np.uint8]
) -> npt.NDArray[np.uint16]:
    """Omaha ranks of ``(n, 4)`` holes with ``(n, 3|4|5)`` boards (0 for a bad row)."""
    out = np.empty(holes.shape[0], dtype=np.uint16)
    _evaluate_omaha_rows(holes, boards, CARD_KEYS, RANK_BITS, OFFSETS, HASH_RANKS, FLUSH_RANKS, out)
    return out


# --- exhaustive 7-card enumeration ---------------------------------------------------


@_parallel
def _seven_card_histograms(
    card_keys: Any,
    offsets: Any,
    hash_ranks: Any,
    flush: Any,
    samples: Any,
    hists: Any,
    sample_hands: Any,
    sample_ranks: Any,
) -> None:
    """Rank counts of every 7-card hand, one histogram row per chunk.

    Hands are enumerated in lexicographic order (``a < b < ... < g``) with keys and
    card masks built up loop by loop; chunk ``t`` takes the subtrees of the first two
    cards whose pair index is ``t`` modulo the number of chunks, which balances the
    work. ``samples`` holds strictly ascending ordinals; the hand at each and its
    rank go to ``sample_hands`` and ``sample_ranks``.
    """
    chunks = hists.shape[0]
    n_samples = samples.shape[0]
    for chunk in prange(chunks):
        hist = hists[chunk]
        pair = -1
        start = 0  # lexicographic ordinal of the subtree's first hand
        for a in range(46):
            key_a = card_keys[a]
            seen_a = 1 << a
            for b in range(a + 1, 47):
                pair += 1
                size = _combination_count(51 - b, 5)
                first = start
                start += size
                if pair % chunks != chunk:
                    continue
                k = np.searchsorted(samples, first)
                target = samples[k] if k < n_samples else -1
                ordinal = first
                key_b = key_a + card_keys[b]
                seen_b = seen_a | (1 << b)
                for c in range(b + 1, 48):
                    key_c = key_b + card_keys[c]
                    seen_c = seen_b | (1 << c)
                    for d in range(c + 1, 49):
                        key_d = key_c + card_keys[d]
                        seen_d = seen_c | (1 << d)
                        for e in range(d + 1, 50):
                            key_e = key_d + card_keys[e]
                            seen_e = seen_d | (1 << e)
                            for f in range(e + 1, 51):
                                key_f = key_e + card_keys[f]
                                seen_f = seen_e | (1 << f)
                                for g in range(f + 1, 52):
                                    rank = _rank_with_cards(
                                        key_f + card_keys[g],
                                        seen_f | (1 << g),
                                        offsets,
                                        hash_ranks,
                                        flush,
                                    )
                                    hist[rank] += 1
                                    if ordinal == target:
                                        hand = sample_hands[k]
                                        hand[0], hand[1], hand[2], hand[3] = a, b, c, d
                                        hand[4], hand[5], hand[6] = e, f, g
                                        sample_ranks[k] = rank
                                        k += 1
                                        target = samples[k] if k < n_samples else -1
                                    ordinal += 1


def seven_card_histogram(
    samples: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint8], npt.NDArray[np.uint16]]:
    """Counts of each rank (index 0..7462) over all C(52, 7) hands, plus the hands and
    ranks at the strictly ascending lexicographic ordinals ``samples`` (cross-checks)."""
    hists = np.zeros((get_num_threads(), 7463), dtype=np.int64)
    sample_hands = np.zeros((samples.shape[0], 7), dtype=np.uint8)
    sample_ranks = np.zeros(samples.shape[0], dtype=np.uint16)
    _seven_card_histograms(
        CARD_KEYS, OFFSETS, HASH_RANKS, FLUSH_RANKS, samples, hists, sample_hands, sample_ranks
    )
    return hists.sum(axis=0), sample_hands, sample_ranks


# --- equity -----------------------------------------------------------------------


@_jit
def _combination_count(m: int, k: int) -> int:
    result = 1
    for i in range(k):
        result = result * (m - i) // (i + 1)
    return result


@_compiled
def combinations(m: int, k: int) -> Any:
    """Every k-subset of ``range(m)`` as rows of ascending indices (lexicographic)."""
    total = _combination_count(m, k)
    out = np.empty((total, k), dtype=np.uint8)
    index = np.arange(k)
    for row in range(total):
        for j in range(k):
            out[row, j] = index[j]
        j = k - 1
        while j >= 0 and index[j] == m - k + j:
            j -= 1
        if j < 0:
            break
        index[j] += 1
        for i in range(j + 1, k):
            index[i] = index[i - 1] + 1
    return out


@_compiled
def sample_boards(remaining: Any, need: int, uniforms: Any) -> Any:
    """Boards of ``need`` cards from ``remaining`` by partial Fisher-Yates.

    ``uniforms[s, i]`` in [0, 1) picks position ``i + floor(u * (m - i))``, so every
    ``need``-subset is equally likely (up to the 2**-53 resolution of a double).
    """
    samples = uniforms.shape[0]
    m = remaining.shape[0]
    out = np.empty((samples, need), dtype=np.uint8)
    deck = remaining.copy()
    for s in range(samples):
        for i in range(need):
            j = i + int(uniforms[s, i] * (m - i))
            deck[i], deck[j] = deck[j], deck[i]
            out[s, i] = deck[i]
    return out


@_parallel
def _showdowns(
    holes: Any,
    known: Any,
    extra: Any,
    omaha: bool,
    card_keys: Any,
    rank_bits: Any,
    offsets: Any,
    hash_ranks: Any,
    flush: Any,
    wins: Any,
    ties: Any,
) -> None:
    """Accumulate, per chunk of boards, outright wins and tie units per player."""
    players = holes.shape[0]
    n = extra.shape[0]
    chunks = wins.shape[0]
    need = extra.shape[1]
    for chunk in prange(chunks):
        board = np.empty(5, dtype=np.int64)
        for j in range(known.shape[0]):
            board[j] = known[j]
        ranks = np.empty(players, dtype=np.int64)
        pair_keys = np.empty((players, 6), dtype=np.int64)
        pair_bits = np.empty((players, 6), dtype=np.int64)
        hole_keys = np.empty(players, dtype=np.int64)
        hole_seen = np.empty(players, dtype=np.int64)
        for p in range(players):
            if omaha:
                _omaha_pairs(holes[p], card_keys, rank_bits, pair_keys[p], pair_bits[p])
            else:
                hole_keys[p] = card_keys[holes[p, 0]] + card_keys[holes[p, 1]]
                hole_seen[p] = (1 << holes[p, 0]) | (1 << holes[p, 1])
        triple_keys = np.empty(10, dtype=np.int64)
        triple_bits = np.empty(10, dtype=np.int64)
        for b in range(chunk * n // chunks, (chunk + 1) * n // chunks):
            for j in range(need):
                board[known.shape[0] + j] = extra[b, j]
            if omaha:
                _omaha_triples(board, card_keys, rank_bits, triple_keys, triple_bits)
                for p in range(players):
                    ranks[p] = _omaha_rank(
                        pair_keys[p],
                        pair_bits[p],
                        triple_keys,
                        triple_bits,
                        10,
                        offsets,
                        hash_ranks,
                        flush,
                    )
            else:
                board_key = 0
                board_seen = 0
                for j in range(5):
                    board_key += card_keys[board[j]]
                    board_seen |= np.int64(1) << board[j]
                for p in range(players):
                    ranks[p] = _rank_with_cards(
                        board_key + hole_keys[p],
                        board_seen | hole_seen[p],
                        offsets,
                        hash_ranks,
                        flush,
                    )
            best = ranks.min()
            winners = 0
            for p in range(players):
                if ranks[p] == best:
                    winners += 1
            for p in range(players):
                if ranks[p] == best:
                    if winners == 1:
                        wins[chunk, p] += 1
                    else:
                        ties[chunk, p] += TIE_UNITS // winners


def showdowns(
    holes: npt.NDArray[np.uint8],
    known: npt.NDArray[np.uint8],
    extra: npt.NDArray[np.uint8],
    *,
    omaha: bool,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Per-player outright wins and tie units over boards ``known + extra[i]``."""
    chunks = max(1, min(256, extra.shape[0] // 1024))
    wins = np.zeros((chunks, holes.shape[0]), dtype=np.int64)
    ties = np.zeros((chunks, holes.shape[0]), dtype=np.int64)
    _showdowns(
        holes,
        known,
        extra,
        omaha,
        CARD_KEYS,
        RANK_BITS,
        OFFSETS,
        HASH_RANKS,
        FLUSH_RANKS,
        wins,
        ties,
    )
    return wins.sum(axis=0), ties.sum(axis=0)
