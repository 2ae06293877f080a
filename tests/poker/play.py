"""Helpers the engine tests share: play a hand with random legal actions."""

from __future__ import annotations

import random
from collections.abc import Callable

from ludex.poker.state import Phase, State


def step_randomly(state: State, rng: random.Random, deck: list[int]) -> None:
    """Make one legal move (deal, act, or show) chosen by ``rng``; cards from ``deck``."""
    if state.phase is Phase.DEAL_HOLE:
        state.deal_hole([deck.pop() for _ in range(state.config.variant.hole_card_count)])
    elif state.phase is Phase.DEAL_BOARD:
        state.deal_board([deck.pop() for _ in range(state.board_cards_due)])
    elif state.phase is Phase.SHOWDOWN:
        choice = rng.random()
        if choice < 0.2 and state.can_show_or_muck(False):
            state.show_or_muck(False)
        else:
            state.show_or_muck(True if choice < 0.4 else None)
    else:
        legal = state.legal_actions()
        assert legal is not None
        draw = rng.random()
        if legal.fold and draw < 0.25:
            state.fold()
        elif legal.min_to is not None and legal.max_to is not None and draw > 0.6:
            amount = legal.max_to if draw > 0.9 else rng.randint(legal.min_to, legal.max_to)
            state.bet_or_raise(amount)
        else:
            state.check_or_call()


def play_randomly(
    state: State,
    rng: random.Random,
    deck: list[int] | None = None,
    after_each: Callable[[State], None] | None = None,
    limit: int = 500,
) -> State:
    """Play ``state`` to the end; ``after_each`` runs after every step."""
    if deck is None:
        deck = list(range(52))
        rng.shuffle(deck)
    for _ in range(limit):
        if state.phase is Phase.DONE:
            return state
        step_randomly(state, rng, deck)
        if after_each is not None:
            after_each(state)
    raise AssertionError(f"the hand did not end within {limit} steps: {state!r}")
