"""Invariants of the engine over random tables, stacks and legal actions (hypothesis).

Chips are conserved after every step, pots are only winnable by contenders who
covered them, every hand ends, a state saved mid-hand continues identically, and a
hand rebuilt from its operation log equals the original.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ludex.poker.operations import AwardPot
from ludex.poker.rules import GameConfig, RakeConfig, Variant
from ludex.poker.state import Phase, State, replay
from tests.poker.play import play_randomly, step_randomly


@st.composite
def hands(draw: st.DrawFn) -> tuple[GameConfig, list[int], int, int]:
    players = draw(st.integers(2, 10))
    big = draw(st.integers(1, 10))
    straddles = draw(st.sampled_from([(), (2 * big,), (2 * big, 4 * big)]))
    if len(straddles) > players - 2:
        straddles = ()
    config = GameConfig(
        variant=draw(st.sampled_from(list(Variant))),
        small_blind=draw(st.integers(0, big)),
        big_blind=big,
        ante=draw(st.integers(0, big)),
        big_blind_ante=draw(st.booleans()),
        straddles=straddles,
        seat_count=10,
        rake=RakeConfig(draw(st.sampled_from([0, 250, 500])), draw(st.sampled_from([None, 0, 3]))),
    )
    stacks = draw(st.lists(st.integers(1, 60 * big), min_size=players, max_size=players))
    button = draw(st.integers(0, players - 1))
    return config, stacks, button, draw(st.integers(0, 2**32))


def _check_invariants(state: State) -> None:
    assert state.chips_in_play() == sum(state.starting_stacks)
    assert all(s >= 0 for s in state.stacks)
    contending = [not f for f in state.folded]
    covered = [c - b for c, b in zip(state.contributions, state.bets, strict=True)]
    for pot in state.pots():
        assert pot.eligible
        for player in pot.eligible:
            assert contending[player]
    if state.phase is Phase.BETTING:
        assert state.actor is not None
        assert state.stacks[state.actor] > 0
    assert sum(covered) + state.dead >= 0


@settings(max_examples=300, deadline=None)
@given(hands())
def test_chips_are_conserved_and_every_hand_ends(
    hand: tuple[GameConfig, list[int], int, int],
) -> None:
    config, stacks, button, seed = hand
    state = play_randomly(
        State(config, stacks, button), random.Random(seed), after_each=_check_invariants
    )
    awarded = sum(op.amount for op in state.operations if isinstance(op, AwardPot))
    assert awarded + state.rake == sum(c for c in state.contributions) + state.dead
    assert sum(state.payoffs) == -state.rake


@settings(max_examples=150, deadline=None)
@given(hands(), st.integers(0, 40))
def test_saved_state_continues_identically_and_the_log_rebuilds_it(
    hand: tuple[GameConfig, list[int], int, int], cut: int
) -> None:
    config, stacks, button, seed = hand
    rng = random.Random(seed)
    deck = list(range(52))
    rng.shuffle(deck)
    state = State(config, stacks, button)
    for _ in range(cut):
        if state.phase is Phase.DONE:
            break
        step_randomly(state, rng, deck)
    copy = State.from_bytes(state.to_bytes())
    assert copy == state
    assert replay(config, state.operations) == state
    rng_a, rng_b = random.Random(seed + 1), random.Random(seed + 1)
    play_randomly(state, rng_a, list(deck))
    play_randomly(copy, rng_b, list(deck))
    assert copy == state
    assert copy.stacks == state.stacks
    assert replay(config, state.operations) == state
