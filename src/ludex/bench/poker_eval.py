"""7-card hand evaluation: ludex against phevaluator and treys, one at a time and in batch.

Every contender ranks the same seeded random 7-card hands, in the same process:

* ``ludex``: :func:`ludex.poker.evaluator.evaluate` on a list of card ids.
* ``phevaluator``: ``phevaluator.evaluate_cards(*cards)`` (its public entry point;
  version 0.6 calls a C extension underneath).
* ``treys``: ``Evaluator().evaluate(hole, board)``; cards are converted to treys'
  integers before the clock starts.
* ``ludex_batch``: :func:`ludex.poker.evaluator.evaluate_batch` on a uint8 array,
  after a warm-up call (numba compiles or loads its cache), on ``batch_count`` hands.

Figures are evaluations per second, best of ``repeat``. ``agree`` is true when all
four give the same rank to every hand. phevaluator and treys are test-only
dependencies, imported here lazily; this module must never be imported by ``src``
code outside ``ludex.bench``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ludex.bench._common import header, per_second, progress
from ludex.poker.cards import card_str
from ludex.poker.evaluator import evaluate, evaluate_batch


def random_hands(count: int, seed: int, size: int = 7) -> npt.NDArray[np.uint8]:
    """``count`` random hands of ``size`` distinct cards (seeded, chunked in memory)."""
    from ludex.poker import _kernels

    rng = np.random.default_rng(seed)
    deck = np.arange(52, dtype=np.uint8)
    chunks = []
    for start in range(0, count, 1_000_000):
        rows = min(1_000_000, count - start)
        chunks.append(_kernels.sample_boards(deck, size, rng.random((rows, size))))
    return np.concatenate(chunks) if chunks else np.empty((0, size), dtype=np.uint8)


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def run(count: int = 200_000, repeat: int = 3, batch_count: int = 10_000_000) -> dict[str, Any]:
    from phevaluator import evaluate_cards  # type: ignore[import-untyped]
    from treys import Card, Evaluator  # type: ignore[import-untyped]

    progress(f"poker eval: {count:,} random 7-card hands, best of {repeat}")
    hands_array = random_hands(count, seed=20260101)
    hands = hands_array.tolist()
    treys_hands = [[Card.new(card_str(c)) for c in hand] for hand in hands]
    treys_evaluator = Evaluator()
    treys_eval = treys_evaluator.evaluate

    def ours() -> list[int]:
        return [evaluate(hand) for hand in hands]

    def phevaluator() -> list[int]:
        return [evaluate_cards(*hand) for hand in hands]

    def treys() -> list[int]:
        return [treys_eval(hand[:2], hand[2:]) for hand in treys_hands]

    evaluate(hands[0])  # load the tables outside the clock
    # The contenders take turns round by round, so load on the machine falls on all.
    ours_s = ph_s = treys_s = float("inf")
    for _ in range(repeat):
        elapsed, ours_ranks = _best(ours, 1)
        ours_s = min(ours_s, elapsed)
        elapsed, ph_ranks = _best(phevaluator, 1)
        ph_s = min(ph_s, elapsed)
        elapsed, treys_ranks = _best(treys, 1)
        treys_s = min(treys_s, elapsed)

    started = time.perf_counter()
    same_ranks = evaluate_batch(hands_array)
    warm_up_s = time.perf_counter() - started
    progress(f"poker eval: batch on {batch_count:,} hands")
    big = random_hands(batch_count, seed=20260102)
    batch_s, _ = _best(lambda: evaluate_batch(big), repeat)

    agree = ours_ranks == ph_ranks == treys_ranks == same_ranks.tolist()
    return header(
        "poker_eval",
        hands=count,
        repeat=repeat,
        agree=agree,
        evaluations_per_second={
            "ludex": per_second(count, ours_s),
            "phevaluator": per_second(count, ph_s),
            "treys": per_second(count, treys_s),
            "ludex_batch": per_second(batch_count, batch_s),
        },
        ludex_vs_phevaluator=round(ph_s / ours_s, 2),
        ludex_vs_treys=round(treys_s / ours_s, 2),
        batch_hands=batch_count,
        batch_first_call_seconds=round(warm_up_s, 3),
        notes=(
            "one at a time: pure Python, tables loaded before timing, contenders in turns "
            "round by round, best round each; batch: numba, "
            "parallel over rows, timed after a warm-up call; phevaluator's "
            "evaluate_cards calls its C extension"
        ),
    )
