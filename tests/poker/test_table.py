"""Button and blinds between hands: the TDA/WSOP dead button, heads-up, missed blinds."""

from __future__ import annotations

import pytest

from ludex.errors import PokerError
from ludex.poker.cards import cards
from ludex.poker.rules import GameConfig
from ludex.poker.state import State
from ludex.poker.table import HandPositions, missed_blind_posts, next_hand, update_missed_blinds


def test_full_table_moves_everything_one_seat() -> None:
    first = next_hand(6, range(6), first_button=2)
    assert (first.button_seat, first.small_blind_seat, first.big_blind_seat) == (2, 3, 4)
    second = next_hand(6, range(6), first)
    assert (second.button_seat, second.small_blind_seat, second.big_blind_seat) == (3, 4, 5)


def test_big_blind_leaves_so_the_small_blind_is_dead_then_the_button() -> None:
    """TDA 2024 Rule 32: the big blind always moves to the next player; SB, button may be dead."""
    hand1 = next_hand(6, [0, 1, 2, 3, 4, 5], first_button=0)  # BTN 0, SB 1, BB 2
    hand2 = next_hand(6, [0, 1, 3, 4, 5], hand1)  # seat 2 leaves
    assert (hand2.button_seat, hand2.small_blind_seat, hand2.big_blind_seat) == (1, 2, 3)
    assert hand2.small_blind_dead
    assert hand2.blinds == (None, 2)
    hand3 = next_hand(6, [0, 1, 3, 4, 5], hand2)
    assert (hand3.button_seat, hand3.small_blind_seat, hand3.big_blind_seat) == (2, 3, 4)
    assert hand3.button_dead
    assert hand3.button_player == hand3.player(1)  # order of play as if seat 1 had it


def test_dead_button_positions_drive_a_hand() -> None:
    positions = HandPositions(6, 2, 3, 4, (0, 1, 3, 4, 5))
    state = State(
        GameConfig(seat_count=6),
        [100] * 5,
        positions.button_player,
        blinds=positions.blinds,
    )
    assert state.bets == [0, 0, 1, 2, 0]
    for hole in ["AsAh", "KsKh", "QsQh", "JsJh", "TsTh"]:
        state.deal_hole(cards(hole))
    assert state.actor == 4  # the player after the big blind


def test_heads_up_the_button_is_the_small_blind_and_the_big_blind_alternates() -> None:
    """TDA 2024 Rule 34-B."""
    first = next_hand(9, [2, 7], first_button=2)
    assert (first.button_seat, first.small_blind_seat, first.big_blind_seat) == (2, 2, 7)
    second = next_hand(9, [2, 7], first)
    assert (second.button_seat, second.big_blind_seat) == (7, 2)
    three_to_two = next_hand(9, [2, 7], next_hand(9, [2, 5, 7], first_button=2))
    assert three_to_two.big_blind_seat == 2  # after seat 7's big blind, never twice in a row


def test_missed_blinds_are_owed_and_posted_big_live_small_dead() -> None:
    hand1 = next_hand(6, [0, 1, 2, 3, 4, 5], first_button=0)
    hand2 = next_hand(6, [0, 1, 2, 4, 5], hand1)  # seat 3 sits out as the big blind passes
    owed = update_missed_blinds({}, hand1, hand2, sitting_out=[3])
    assert owed == {3: 1}
    hand3 = next_hand(6, [0, 1, 2, 3, 4, 5], hand2)
    assert missed_blind_posts(owed, hand3, 1, 2) == ((hand3.player(3), 2, 1),)


def test_bad_positions_are_refused() -> None:
    with pytest.raises(PokerError):
        next_hand(6, [1])
    with pytest.raises(PokerError):
        next_hand(6, [1, 2], first_button=3)
