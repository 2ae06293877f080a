"""Complete random 6-max No-Limit Hold'em hands per second: ludex against pokerkit.

Each hand is generated from its own seeded ``random.Random``: six random stacks
(often short, so all-ins and side pots are common), a shuffled deck, and a policy
that draws one number per decision. Both engines play the same hands with the
same draws: the policy maps a draw onto the legal options each engine reports
(fold, check/call, bet/raise between the minimum and the maximum), and the two
engines offer the same options, so they take the same actions. The result counts
the hands that end with identical stacks; the rare others split a tie across
several pots, where the odd-chip conventions differ (``docs/poker.md``).

The timed loop does the whole hand: create the state, post blinds, deal, act,
show down, split the pots. Cards are converted to each engine's type before the
clock starts. pokerkit is imported lazily: it is a test-only dependency.

Never: network or file I/O; the clock only measures.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from ludex.poker.rules import GameConfig, Variant
from ludex.poker.state import Phase, State

PLAYERS: Final = 6
SMALL_BLIND: Final = 1
BIG_BLIND: Final = 2


@dataclass(frozen=True, slots=True)
class HandPlan:
    """Everything random about one hand, drawn before any engine runs."""

    stacks: tuple[int, ...]
    deck: tuple[int, ...]
    draws: tuple[float, ...]


def plan_hands(hands: int, seed: int) -> list[HandPlan]:
    """The seeded hands both engines play."""
    plans = []
    for index in range(hands):
        rng = random.Random(seed * 1_000_003 + index)
        stacks = tuple(rng.randint(10, rng.choice((40, 100, 300))) for _ in range(PLAYERS))
        deck = list(range(52))
        rng.shuffle(deck)
        draws = tuple(rng.random() for _ in range(200))
        plans.append(HandPlan(stacks, tuple(deck), draws))
    return plans


def choose(draw: float, fold: bool, min_to: int | None, max_to: int | None) -> tuple[str, int]:
    """The policy: one draw picks fold / check-call / bet-raise and the amount."""
    if fold and draw < 0.25:
        return "f", 0
    if min_to is not None and max_to is not None and draw >= 0.62:
        if draw >= 0.93:
            return "r", max_to
        return "r", min_to + int((draw - 0.62) / 0.31 * (max_to - min_to))
    return "c", 0


def _config() -> GameConfig:
    return GameConfig(
        variant=Variant.NO_LIMIT_HOLDEM,
        small_blind=SMALL_BLIND,
        big_blind=BIG_BLIND,
        seat_count=PLAYERS,
    )


def play_ludex(config: GameConfig, plan: HandPlan) -> list[int]:
    """One hand through the ludex engine; returns stacks in position order (SB first)."""
    state = State(config, plan.stacks, PLAYERS - 1)
    deck, draws = plan.deck, plan.draws
    position = draw_index = 0
    while True:
        phase = state.phase
        if phase is Phase.BETTING:
            legal = state.legal_actions()
            assert legal is not None
            kind, amount = choose(draws[draw_index], legal.fold, legal.min_to, legal.max_to)
            draw_index += 1
            if kind == "f":
                state.fold()
            elif kind == "r":
                state.bet_or_raise(amount)
            else:
                state.check_or_call()
        elif phase is Phase.DEAL_HOLE:
            state.deal_hole(deck[position : position + 2])
            position += 2
        elif phase is Phase.DEAL_BOARD:
            due = state.board_cards_due
            state.deal_board(deck[position : position + due])
            position += due
        elif phase is Phase.SHOWDOWN:
            state.show_or_muck()
        else:
            return state.stacks


def _pokerkit_player(kit: Any, plan: HandPlan) -> Callable[[], list[int]]:
    """A closure playing one hand through pokerkit (cards converted beforehand)."""
    automations = (
        kit.Automation.ANTE_POSTING,
        kit.Automation.BET_COLLECTION,
        kit.Automation.BLIND_OR_STRADDLE_POSTING,
        kit.Automation.CARD_BURNING,
        kit.Automation.HOLE_CARDS_SHOWING_OR_MUCKING,
        kit.Automation.HAND_KILLING,
        kit.Automation.CHIPS_PUSHING,
        kit.Automation.CHIPS_PULLING,
    )
    from ludex.poker.cards import card_str

    cards = [next(iter(kit.Card.parse(card_str(c)))) for c in plan.deck]
    # pokerkit's player 0 is the small blind; ludex's button is player 5, so ludex's
    # player 0 is the small blind too and the orders coincide.
    stacks = plan.stacks
    draws = plan.draws

    def play() -> list[int]:
        state = kit.NoLimitTexasHoldem.create_state(
            automations, True, 0, (SMALL_BLIND, BIG_BLIND), BIG_BLIND, stacks, PLAYERS
        )
        position = draw_index = 0
        while state.status:
            if state.can_deal_hole():
                state.deal_hole(cards[position : position + 2])
                position += 2
            elif state.can_deal_board():
                due = 3 if not state.board_cards else 1
                state.deal_board(cards[position : position + due])
                position += due
            elif state.actor_index is not None:
                kind, amount = choose(
                    draws[draw_index],
                    state.can_fold(),
                    state.min_completion_betting_or_raising_to_amount,
                    state.max_completion_betting_or_raising_to_amount,
                )
                draw_index += 1
                if kind == "f":
                    state.fold()
                elif kind == "r":
                    state.complete_bet_or_raise_to(amount)
                else:
                    state.check_or_call()
            else:  # pragma: no cover - every phase above is automated or handled
                raise AssertionError("pokerkit is waiting for an operation the bench does not do")
        return list(state.stacks)

    return play


def run(hands: int = 5_000, seed: int = 0, peer_hands: int = 500) -> dict[str, Any]:
    """Hands per second for ludex (``hands`` hands) and pokerkit (the first ``peer_hands``)."""
    import warnings

    plans = plan_hands(hands, seed)
    config = _config()
    start = time.perf_counter()
    ours = [play_ludex(config, plan) for plan in plans]
    ludex_seconds = time.perf_counter() - start
    result: dict[str, Any] = {
        "benchmark": "poker_hands",
        "game": "6-max no-limit hold'em, random legal actions, showdown and pots",
        "hands": hands,
        "seed": seed,
        "ludex_hands_per_second": round(hands / ludex_seconds, 1),
    }
    try:
        import pokerkit as kit
    except ImportError:  # pragma: no cover - pokerkit is a dev dependency
        result["pokerkit"] = "skipped: pokerkit is not installed (uv sync --group dev)"
        return result
    count = min(peer_hands, hands)
    players = [_pokerkit_player(kit, plan) for plan in plans[:count]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        theirs = [play() for play in players]
        pokerkit_seconds = time.perf_counter() - start
    agree = sum(1 for a, b in zip(ours, theirs, strict=False) if a == b)
    peer_rate = count / pokerkit_seconds
    result.update(
        pokerkit_hands=count,
        pokerkit_hands_per_second=round(peer_rate, 1),
        ratio=round(result["ludex_hands_per_second"] / peer_rate, 1),
        goal_ratio=20,
        same_finishing_stacks=f"{agree}/{count}",
    )
    return result


if __name__ == "__main__":  # pragma: no cover
    import json

    print(json.dumps(run(), indent=2))
