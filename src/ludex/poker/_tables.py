"""Lookup tables behind the hand evaluator: how they are built, stored and loaded.

A hand's key is the sum of one precomputed integer per card:

* bits 0-24: the sum of a per-rank key (``RANK_KEYS``) plus an offset for the hand
  size. The rank keys are chosen so that any multiset of up to seven ranks (at most
  four of each) has its own sum (SpecialK's keys; :func:`build_tables` re-checks it).
  That sum indexes the best non-flush rank of the hand.
* bits 25-48: one 6-bit counter per suit to which every card of that suit adds 7;
  bit 5 of a counter is set exactly when the suit holds 5, 6 or 7 cards (4*7 = 28 <
  32 <= 5*7 = 35 and 7*7 = 49 < 64), so one AND finds every flush.

A flush is ranked from the 13-bit rank mask of its suit (``flush_ranks``, 8,192
entries). Everything else is ranked from the rank-sum: a ``dict`` for the pure
Python path and a row-displacement perfect hash (``hash_offsets``, ``hash_ranks``)
for the numba kernels, small enough to stay in the CPU's L2 cache.

Ranks follow the phevaluator/treys numbering: 1 is a royal flush and 7,462 is
7-5-4-3-2 offsuit. Building the tables takes about a second of pure Python, so they
are built once by :func:`build_tables` and stored in ``data/evaluator_tables.npz``
(``python -m ludex.poker._tables`` rewrites it; a test checks a rebuild is
byte-identical). :func:`load_tables` reads the file lazily on first use.

Pure: no I/O except reading (and, when run as a script, writing) that one file.
"""

from __future__ import annotations

import io
import itertools
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

DATA_FILE: Final = Path(__file__).with_name("data") / "evaluator_tables.npz"

RANK_KEYS: Final = (0, 1, 5, 22, 98, 453, 2031, 8698, 22854, 83661, 262349, 636345, 1479181)
RANK_BITS: Final = 25
RANK_MASK: Final = (1 << RANK_BITS) - 1
#: Added to the rank-sum so that 5-, 6- and 7-card sums never share a key.
LENGTH_OFFSET: Final = {7: 0, 6: 1 << 23, 5: 1 << 24}
SUIT_SHIFT: Final = RANK_BITS
SUIT_STEP: Final = 7
SUIT_FIELD_BITS: Final = 6
#: Bit 5 of each suit counter: set iff that suit has five or more cards.
FLUSH_BITS: Final = sum(32 << (SUIT_SHIFT + SUIT_FIELD_BITS * s) for s in range(4))
#: Row width of the perfect hash is ``1 << HASH_SHIFT``.
HASH_SHIFT: Final = 10

# Hand categories, best first, in the order of the rank numbering.
STRAIGHT_FLUSH, FOUR_OF_A_KIND, FULL_HOUSE, FLUSH, STRAIGHT = 0, 1, 2, 3, 4
THREE_OF_A_KIND, TWO_PAIR, ONE_PAIR, HIGH_CARD = 5, 6, 7, 8

ClassKey = tuple[int, tuple[int, ...]]


def card_key(card: int) -> int:
    """The integer a card adds to a hand's key (rank-sum and suit counter only)."""
    rank, suit = card >> 2, card & 3
    return RANK_KEYS[rank] | (SUIT_STEP << (SUIT_SHIFT + SUIT_FIELD_BITS * suit))


def _straight_high(mask: int) -> int:
    """Rank index of the highest straight's top card in a 13-bit rank mask, or -1."""
    for high in range(12, 3, -1):
        window = 0b11111 << (high - 4)
        if mask & window == window:
            return high
    wheel = (1 << 12) | 0b1111  # A-2-3-4-5: five-high
    return 3 if mask & wheel == wheel else -1


def _flush_class(mask: int) -> ClassKey:
    high = _straight_high(mask)
    if high >= 0:
        return STRAIGHT_FLUSH, (high,)
    top = tuple(r for r in range(12, -1, -1) if mask >> r & 1)[:5]
    return FLUSH, top


def _plain_class(counts: Sequence[int]) -> ClassKey:
    """Best non-flush 5-card class of a rank multiset (``counts[r]`` cards of rank r)."""
    desc = range(12, -1, -1)
    present = [r for r in desc if counts[r]]
    quads = [r for r in desc if counts[r] >= 4]
    trips = [r for r in desc if counts[r] >= 3]
    pairs = [r for r in desc if counts[r] >= 2]
    if quads:
        q = quads[0]
        return FOUR_OF_A_KIND, (q, next(r for r in present if r != q))
    if trips and len(pairs) >= 2:
        t = trips[0]
        return FULL_HOUSE, (t, next(r for r in pairs if r != t))
    high = _straight_high(sum(1 << r for r in present))
    if high >= 0:
        return STRAIGHT, (high,)
    if trips:
        t = trips[0]
        return THREE_OF_A_KIND, (t, *[r for r in present if r != t][:2])
    if len(pairs) >= 2:
        p, q = pairs[0], pairs[1]
        return TWO_PAIR, (p, q, next(r for r in present if r not in (p, q)))
    if pairs:
        p = pairs[0]
        return ONE_PAIR, (p, *[r for r in present if r != p][:3])
    return HIGH_CARD, tuple(present[:5])


def all_classes() -> dict[ClassKey, int]:
    """Every distinct 5-card hand class mapped to its rank, 1 (best) to 7,462."""
    classes: set[ClassKey] = set()
    for combo in itertools.combinations(range(13), 5):
        mask = sum(1 << r for r in combo)
        classes.add(_flush_class(mask))
    for multiset in _multisets(5):
        classes.add(_plain_class(multiset))
    ordered = sorted(classes, key=lambda c: (c[0], tuple(-r for r in c[1])))
    return {c: i + 1 for i, c in enumerate(ordered)}


def _multisets(size: int) -> list[tuple[int, ...]]:
    """Rank-count vectors of every multiset of ``size`` ranks with at most 4 of each."""
    result = []
    for combo in itertools.combinations_with_replacement(range(13), size):
        counts = [0] * 13
        for r in combo:
            counts[r] += 1
        if max(counts) <= 4:
            result.append(tuple(counts))
    return result


def _first_fit(
    row_starts: npt.NDArray[np.int64], cols: npt.NDArray[np.int64], size: int
) -> npt.NDArray[np.int64]:
    """Offsets for rows given as slices of ``cols`` (placed in the order given)."""
    free = np.ones(size, dtype=np.bool_)
    offsets = np.zeros(len(row_starts) - 1, dtype=np.int64)
    for i in range(len(row_starts) - 1):
        row = cols[row_starts[i] : row_starts[i + 1]]
        offset = -row[0] - 1  # first try: the row's first column lands on slot 0
        while True:
            offset += 1
            fits = True
            for c in row:
                if not free[offset + c]:
                    fits = False
                    break
            if fits:
                break
        for c in row:
            free[offset + c] = False
        offsets[i] = offset
    return offsets


def _perfect_hash(
    keys: npt.NDArray[np.uint32], values: npt.NDArray[np.uint16]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint16]]:
    """Row-displacement perfect hash: ``values[i] == table[offsets[k >> S] + (k & W)]``.

    Rows are placed greedily, fullest first, at the first offset where none of their
    occupied columns collides (Tarjan and Yao's first-fit decreasing). The search is
    compiled with numba: in pure Python it takes over a minute.
    """
    import numba

    width = 1 << HASH_SHIFT
    rows = (keys >> HASH_SHIFT).astype(np.int64)
    cols = (keys & (width - 1)).astype(np.int64)
    counts = np.bincount(rows)
    occupied_rows = np.flatnonzero(counts)
    order = occupied_rows[np.lexsort((occupied_rows, -counts[occupied_rows]))]
    by_key = np.lexsort((cols, rows))  # keys grouped by row, columns ascending
    row_first = np.concatenate(([0], np.cumsum(counts)))
    grouped = np.concatenate([cols[by_key[row_first[r] : row_first[r + 1]]] for r in order])
    starts = np.concatenate(([0], np.cumsum(counts[order])))
    size = 4 * len(keys) + 2 * width  # the table ends up about half full
    first_fit: Any = numba.njit(_first_fit)
    placed = first_fit(starts, grouped, size)
    offsets = np.zeros(len(counts), dtype=np.int32)
    offsets[order] = placed
    slots = offsets[rows].astype(np.int64) + cols
    table = np.zeros(int(slots.max()) + 1, dtype=np.uint16)
    table[slots] = values
    return offsets, table


@dataclass(frozen=True)
class Tables:
    """The evaluator's lookup tables (see the module docstring)."""

    noflush_keys: npt.NDArray[np.uint32]
    noflush_ranks: npt.NDArray[np.uint16]
    flush_ranks: npt.NDArray[np.uint16]
    hash_offsets: npt.NDArray[np.int32]
    hash_ranks: npt.NDArray[np.uint16]


def build_tables() -> Tables:
    """Compute every table from the rules of poker alone (about a second)."""
    ranks = all_classes()
    if len(ranks) != 7462:
        raise AssertionError(f"expected 7462 hand classes, built {len(ranks)}")
    flush = np.zeros(1 << 13, dtype=np.uint16)
    for mask in range(1 << 13):
        if mask.bit_count() >= 5:
            flush[mask] = ranks[_flush_class(mask)]
    keys: list[int] = []
    values: list[int] = []
    for size in (5, 6, 7):
        seen: set[int] = set()
        for counts in _multisets(size):
            key = LENGTH_OFFSET[size] + sum(RANK_KEYS[r] * n for r, n in enumerate(counts))
            if key in seen:
                raise AssertionError(f"rank keys collide for {size}-card hands")
            seen.add(key)
            keys.append(key)
            values.append(ranks[_plain_class(counts)])
    if len(set(keys)) != len(keys) or max(keys) > RANK_MASK:
        raise AssertionError("rank-sums of different hand sizes overlap")
    order = np.argsort(np.array(keys, dtype=np.uint32), kind="stable")
    key_array = np.array(keys, dtype=np.uint32)[order]
    value_array = np.array(values, dtype=np.uint16)[order]
    offsets, table = _perfect_hash(key_array, value_array)
    return Tables(key_array, value_array, flush, offsets, table)


_FIELDS: Final = ("noflush_keys", "noflush_ranks", "flush_ranks", "hash_offsets", "hash_ranks")


def tables_bytes(tables: Tables) -> bytes:
    """The ``.npz`` file for ``tables``, byte for byte reproducible (fixed timestamps)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in _FIELDS:
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            payload = io.BytesIO()
            np.lib.format.write_array(payload, getattr(tables, name), allow_pickle=False)
            archive.writestr(info, payload.getvalue())
    return buffer.getvalue()


@cache
def load_tables() -> Tables:
    """The stored tables, read once per process."""
    with np.load(DATA_FILE, allow_pickle=False) as data:
        return Tables(**{name: data[name] for name in _FIELDS})


def main() -> None:  # pragma: no cover - maintenance entry point
    DATA_FILE.parent.mkdir(exist_ok=True)
    DATA_FILE.write_bytes(tables_bytes(build_tables()))
    print(f"wrote {DATA_FILE}")


if __name__ == "__main__":  # pragma: no cover
    main()
