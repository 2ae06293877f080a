"""The hand state machine, rule by rule (rule numbers as cited in docs/poker.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ludex.errors import IllegalAction, PokerError
from ludex.poker.cards import cards
from ludex.poker.operations import (
    AwardPot,
    BetOrRaise,
    CheckOrCall,
    CollectRake,
    PostAnte,
    PostBlind,
    PostDead,
    PostStraddle,
    ReturnUncalled,
    ShowOrMuck,
)
from ludex.poker.rules import GameConfig, RakeConfig, Variant
from ludex.poker.state import Phase, State, replay

NLHE = GameConfig(small_blind=1, big_blind=2, seat_count=10)
PLO = GameConfig(variant=Variant.POT_LIMIT_OMAHA, small_blind=1, big_blind=2, seat_count=10)


def dealt(
    config: GameConfig, stacks: list[int], button: int, holes: list[str], **kw: object
) -> State:
    state = State(config, stacks, button, **kw)  # type: ignore[arg-type]
    for player, hole in enumerate(holes):
        state.deal_hole(cards(hole), player)
    return state


def check_down(state: State, board: str) -> None:
    """Deal the rest of ``board`` and check every street through."""
    board_cards = cards(board)
    while state.phase in (Phase.BETTING, Phase.DEAL_BOARD):
        if state.phase is Phase.DEAL_BOARD:
            due = state.board_cards_due
            state.deal_board(board_cards[len(state.board) : len(state.board) + due])
        else:
            state.check_or_call()


def finish_showdown(state: State) -> None:
    while state.phase is Phase.SHOWDOWN:
        state.show_or_muck()


# -- forced bets -------------------------------------------------------------------------


def test_blinds_are_posted_left_of_the_button_and_utg_acts_first() -> None:
    state = dealt(NLHE, [100, 100, 100, 100], 0, ["AhKh", "2c3d", "7s8s", "QdQc"])
    assert [type(op) for op in state.operations[1:3]] == [PostBlind, PostBlind]
    assert state.bets == [0, 1, 2, 0]
    assert state.actor == 3
    assert state.call_amount == 2
    assert state.total_pot == 3


def test_heads_up_button_posts_small_blind_acts_first_preflop_and_last_after() -> None:
    """TDA 2024 Rule 34-B / WSOP Tournament Rule 87: heads-up the button is the small blind."""
    state = dealt(NLHE, [100, 100], 1, ["AhKh", "2c3d"])
    assert state.bets == [2, 1]
    assert state.actor == 1
    state.check_or_call()
    assert state.actor == 0  # the big blind's option
    state.check_or_call()
    state.deal_board(cards("7s8s9s"))
    assert state.actor == 0  # the big blind acts first after the flop
    state.check_or_call()
    assert state.actor == 1


def test_regular_antes_are_live_contributions_and_a_player_all_in_on_the_ante_wins_only_antes() -> (
    None
):
    config = GameConfig(small_blind=1, big_blind=2, ante=1, seat_count=10)
    state = dealt(config, [1, 100, 100], 0, ["AsAh", "2c2d", "7h8d"])
    assert [op.amount for op in state.operations if isinstance(op, PostAnte)] == [1, 1, 1]
    assert state.stacks[0] == 0
    assert state.actor == 1  # the all-in player is skipped
    check_down(state, "AdKc9s4h5c")
    finish_showdown(state)
    assert state.stacks == [3, 101, 97]  # player 0 wins the 3 antes, player 1 the rest


def test_big_blind_ante_is_dead_money_posted_after_the_blind() -> None:
    config = GameConfig(small_blind=1, big_blind=2, ante=2, big_blind_ante=True, seat_count=10)
    state = dealt(config, [100, 100, 3], 0, ["AsAh", "2c3d", "7h8d"])
    posts = state.operations[1:4]
    assert posts == [PostBlind(1, 1), PostBlind(2, 2), PostAnte(2, 1, True)]
    assert state.total_pot == 4
    state.fold()
    state.fold()
    assert state.is_done
    assert state.stacks == [100, 99, 4]  # the dead ante is never "uncalled"


def test_straddle_acts_last_and_the_minimum_raise_is_three_big_blinds() -> None:
    """2024 WSOP Live Action Rule 11: after a 2x straddle the minimum raise is to 3 BB."""
    config = GameConfig(small_blind=1, big_blind=2, straddles=(4,), seat_count=10)
    state = dealt(config, [100] * 4, 0, ["AsAh", "2c3d", "7h8d", "KcKd"])
    assert isinstance(state.operations[3], PostStraddle)
    assert state.actor == 0
    assert state.min_bet_or_raise_to == 6
    for _ in range(3):
        state.check_or_call()
    assert state.actor == 3
    assert state.can_bet_or_raise(6)
    state.check_or_call()
    assert state.phase is Phase.DEAL_BOARD


def test_dead_small_blind_and_missed_blind_posts() -> None:
    """Dead button (TDA 2024 Rule 32): no small blind; a returning player posts BB live, SB dead."""
    state = dealt(
        NLHE,
        [100, 100, 100, 100],
        0,
        ["AsAh", "2c3d", "7h8d", "KcKd"],
        blinds=(None, 1),
        missed_blinds=((3, 2, 1),),
    )
    assert state.operations[1:][:3] == [PostBlind(1, 2), PostBlind(3, 2), PostDead(3, 1)]
    assert state.bets == [0, 2, 0, 2]
    assert state.total_pot == 5
    assert state.actor == 2


# -- betting -----------------------------------------------------------------------------


def test_minimum_raise_is_the_largest_increment_of_the_street() -> None:
    state = dealt(NLHE, [500, 500, 500], 0, ["AsAh", "2c3d", "7h8d"])
    assert state.min_bet_or_raise_to == 4
    state.bet_or_raise(6)  # +4
    assert state.min_bet_or_raise_to == 10
    state.bet_or_raise(30)  # +24
    assert state.min_bet_or_raise_to == 54
    with pytest.raises(IllegalAction, match="below the minimum of 54"):
        state.bet_or_raise(53)


def test_postflop_minimum_bet_is_the_big_blind() -> None:
    state = dealt(NLHE, [500, 500], 0, ["AsAh", "2c3d"])
    state.check_or_call()
    state.check_or_call()
    state.deal_board(cards("7h8d9c"))
    assert state.min_bet_or_raise_to == 2
    state.bet_or_raise(5)
    assert state.min_bet_or_raise_to == 10


def test_incomplete_all_in_does_not_reopen_betting_for_players_who_acted() -> None:
    """TDA 2024 Rule 47-A / WSOP Tournament Rule 96: a short all-in does not reopen the betting."""
    state = dealt(NLHE, [15, 200, 200, 200], 0, ["AsAh", "2c3d", "7h8d", "KcKd"])
    state.bet_or_raise(10)  # UTG (3), a raise of 8
    state.bet_or_raise(15)  # button all-in: +5, less than a full raise
    assert state.actor == 1
    assert state.min_bet_or_raise_to == 23  # players yet to act may raise a full 8 more
    state.check_or_call()
    state.check_or_call()
    assert state.actor == 3
    legal = state.legal_actions()
    assert legal is not None
    assert (legal.fold, legal.call, legal.min_to, legal.max_to) == (True, 5, None, None)
    before = state.to_bytes()
    with pytest.raises(IllegalAction, match="not reopened"):
        state.bet_or_raise(30)
    assert state.to_bytes() == before


def test_short_all_ins_that_add_up_to_a_full_raise_reopen_the_betting() -> None:
    """The rule looks at what a player faces since they acted: 9 after a raise of 8."""
    state = dealt(
        NLHE, [19, 200, 200, 200, 15, 200], 0, ["AsAh", "2c3d", "7h8d", "KcKd", "5s5d", "6s6d"]
    )
    assert state.actor == 3
    state.bet_or_raise(10)
    state.bet_or_raise(15)  # player 4 all-in: +5
    state.check_or_call()  # player 5 calls 15
    state.bet_or_raise(19)  # the button all-in: +4
    state.fold()
    state.fold()
    assert state.actor == 3  # faces 9 since acting: at least a full raise
    assert state.min_bet_or_raise_to == 27
    state.check_or_call()
    assert state.actor == 5  # faces 4 since acting: call or fold only
    assert state.min_bet_or_raise_to is None


def test_pot_limit_maximums_are_exact() -> None:
    state = dealt(PLO, [1000] * 3, 0, ["AsAhKsKh", "2c3d4h5s", "7h8d9cTs"])
    assert state.max_bet_or_raise_to == 7  # pot 3 + call 2 = 5 raise, to 7
    state.bet_or_raise(7)
    assert state.max_bet_or_raise_to == 23  # call 6 makes 16; raise 16 to 23
    state.check_or_call()
    state.check_or_call()
    state.deal_board(cards("2s7c9h"))
    assert state.max_bet_or_raise_to == 21  # pot 21
    state.bet_or_raise(10)
    assert state.max_bet_or_raise_to == 51  # call 10 makes 41; raise 41 to 51
    with pytest.raises(IllegalAction, match="above the maximum of 51"):
        state.bet_or_raise(52)
    state.bet_or_raise(51)
    assert state.max_bet_or_raise_to == 2 * 51 - 0 + 21 + 61


def test_pot_limit_is_capped_by_the_stack() -> None:
    state = dealt(PLO, [5, 1000, 1000], 0, ["AsAhKsKh", "2c3d4h5s", "7h8d9cTs"])
    assert (state.min_bet_or_raise_to, state.max_bet_or_raise_to) == (4, 5)


def test_pot_limit_counts_dead_or_short_blinds_in_full_before_the_flop() -> None:
    """TDA 2024 Rule 54-B: with a dead small blind, or a big blind all-in for less, the
    pot-limit maximum before the flop is computed as if the full blinds were posted."""
    plo = GameConfig(variant=Variant.POT_LIMIT_OMAHA, small_blind=100, big_blind=200)
    holes = ["AsAhKsKh", "2c3d4h5s", "7h8d9cTs"]
    full = dealt(plo, [10_000] * 3, 0, holes)
    assert full.max_bet_or_raise_to == 700  # 100 + 200 + call 200, raise 500 to 700
    dead_small = dealt(plo, [10_000] * 3, 0, holes, blinds=(None, 2))
    assert dead_small.total_pot == 200  # only the big blind posted
    assert dead_small.max_bet_or_raise_to == 700
    short_big = dealt(plo, [10_000, 10_000, 100], 0, holes)
    assert short_big.stacks[2] == 0  # the big blind is all-in for 100
    assert short_big.max_bet_or_raise_to == 700
    # after the flop the real pot counts again
    dead_small.bet_or_raise(700)
    dead_small.check_or_call()
    dead_small.check_or_call()
    dead_small.deal_board(cards("2s7c9h"))
    assert dead_small.total_pot == 2_100
    assert dead_small.max_bet_or_raise_to == 2_100


def test_uncalled_bet_is_returned() -> None:
    state = dealt(NLHE, [100, 100], 0, ["AsAh", "2c3d"])
    state.bet_or_raise(50)
    state.fold()
    assert ReturnUncalled(0, 48) in state.operations
    assert state.stacks == [102, 98]
    assert state.payoffs == [2, -2]


def test_no_raise_when_everyone_else_is_all_in() -> None:
    state = dealt(NLHE, [100, 20], 0, ["AsAh", "2c3d"])
    state.check_or_call()
    state.bet_or_raise(20)  # big blind all-in
    legal = state.legal_actions()
    assert legal is not None
    assert (legal.call, legal.min_to) == (18, None)
    with pytest.raises(IllegalAction, match="every other player"):
        state.bet_or_raise(40)


# -- pots and showdown -------------------------------------------------------------------


def test_side_pots_with_four_all_ins_of_different_sizes() -> None:
    state = dealt(NLHE, [10, 30, 60, 100, 200], 4, ["AsAh", "KsKh", "QsQh", "8s8h", "5d4d"])
    assert state.actor == 2
    state.bet_or_raise(60)
    state.bet_or_raise(100)
    state.check_or_call()  # button calls 100
    state.check_or_call()  # small blind all-in for 10
    state.check_or_call()  # big blind all-in for 30
    assert state.phase is Phase.DEAL_BOARD  # only one player has chips left: no more betting
    assert [(p.amount, p.eligible) for p in state.pots()] == [
        (50, (0, 1, 2, 3, 4)),
        (80, (1, 2, 3, 4)),
        (90, (2, 3, 4)),
        (80, (3, 4)),
    ]
    check_down(state, "2c7d9hJs3c")
    assert state.is_done
    assert state.stacks == [50, 80, 90, 80, 100]
    assert state.chips_in_play() == 400


def test_split_pot_odd_chip_goes_to_first_seat_left_of_button() -> None:
    state = dealt(NLHE, [100, 100, 100], 0, ["2c3d", "4h5h", "2d3c"])
    state.check_or_call()  # button calls 2
    state.fold()  # small blind leaves 1 behind
    state.check_or_call()
    check_down(state, "AsKsQsJsTs")
    finish_showdown(state)
    awards = [op for op in state.operations if isinstance(op, AwardPot)]
    assert awards == [AwardPot(0, 5, (2, 0), (3, 2))]
    assert state.stacks == [100, 99, 101]


def test_heads_up_odd_chip_goes_to_the_big_blind() -> None:
    """Heads-up the first seat left of the button is the big blind."""
    config = GameConfig(small_blind=1, big_blind=2, ante=1, big_blind_ante=True)
    state = dealt(config, [100, 100], 0, ["2c3d", "2d3c"])
    state.check_or_call()
    state.check_or_call()
    check_down(state, "AsKsQsJsTs")
    finish_showdown(state)
    assert [op for op in state.operations if isinstance(op, AwardPot)] == [
        AwardPot(0, 5, (1, 0), (3, 2))
    ]


def test_showdown_order_last_aggressor_first_and_losers_may_muck() -> None:
    """TDA 2024 Rule 17-A: the last aggressor on the final round shows first; others may muck."""
    state = dealt(NLHE, [100, 100, 100], 0, ["KcKd", "AsAh", "QcQd"])
    for _ in range(3):
        state.check_or_call()
    state.deal_board(cards("2c7d9h"))
    for _ in range(3):
        state.check_or_call()
    state.deal_board(cards("Js"))
    for _ in range(3):
        state.check_or_call()
    state.deal_board(cards("3c"))
    state.check_or_call()  # 1 checks
    state.bet_or_raise(10)  # 2 bets
    state.check_or_call()
    state.check_or_call()
    assert state.phase is Phase.SHOWDOWN
    assert state.actor == 2
    assert state.show_or_muck() == ShowOrMuck(2, tuple(cards("QcQd")))
    assert state.show_or_muck() == ShowOrMuck(0, tuple(cards("KcKd")))  # beats QQ: shows
    assert state.show_or_muck() == ShowOrMuck(1, tuple(cards("AsAh")))
    assert state.stacks == [88, 124, 88]


def test_checked_down_showdown_starts_left_of_button_and_default_mucks_losers() -> None:
    state = dealt(NLHE, [100, 100, 100], 0, ["KcKd", "AsAh", "QcQd"])
    for _ in range(3):
        state.check_or_call()
    check_down(state, "2c7d9hJs3c")
    assert state.actor == 1
    assert state.show_or_muck() == ShowOrMuck(1, tuple(cards("AsAh")))
    assert state.show_or_muck() == ShowOrMuck(2, ())  # QQ loses to AA: mucked
    assert state.show_or_muck() == ShowOrMuck(0, ())
    assert state.stacks == [98, 104, 98]


def test_the_last_live_hand_wins_without_being_shown() -> None:
    """TDA 2024 Rule 17-B: once every other hand is mucked, the last live hand wins
    without being tabled; by default it is not shown, and it may still be shown."""
    state = dealt(NLHE, [100, 100], 0, ["KcKd", "AsAh"])
    state.check_or_call()
    state.check_or_call()
    check_down(state, "2c7d9hJs3c")
    assert state.actor == 1
    assert state.show_or_muck(False) == ShowOrMuck(1, ())  # the aces are mucked: forfeit
    assert state.show_or_muck() == ShowOrMuck(0, ())  # kings win unshown
    assert state.phase is Phase.DONE
    assert state.stacks == [102, 98]

    shown = dealt(NLHE, [100, 100], 0, ["KcKd", "AsAh"])
    shown.check_or_call()
    shown.check_or_call()
    check_down(shown, "2c7d9hJs3c")
    shown.show_or_muck(False)
    assert shown.show_or_muck(True) == ShowOrMuck(0, tuple(cards("KcKd")))
    assert shown.stacks == [102, 98]


def test_with_a_player_all_in_nobody_may_muck_at_showdown() -> None:
    """TDA 2024 Rule 16 (and its Example 3): a player is all-in before the flop, the two
    others check the hand down; when the action is complete every hand is tabled."""
    state = dealt(NLHE, [10, 100, 100], 0, ["KcKd", "AsAh", "QcQd"])
    state.bet_or_raise(10)  # player 0 (button) all-in
    state.check_or_call()
    state.check_or_call()
    assert state.stacks[0] == 0
    check_down(state, "2c7d9hJs3c")
    assert state.phase is Phase.SHOWDOWN
    loser = state.actor
    assert loser is not None
    with pytest.raises(IllegalAction, match="a player is all-in"):
        state.show_or_muck(False)
    while state.phase is Phase.SHOWDOWN:
        state.show_or_muck()
    shown = {op.player: op.cards for op in state.operations if isinstance(op, ShowOrMuck)}
    assert shown == {0: tuple(cards("KcKd")), 1: tuple(cards("AsAh")), 2: tuple(cards("QcQd"))}
    assert state.stacks == [0, 120, 90]


def test_all_in_preflop_shows_every_hand_and_deals_the_board_without_betting() -> None:
    """TDA 2024 Rule 16: when a player is all-in and the action is complete, hands are tabled."""
    state = dealt(NLHE, [50, 100], 0, ["KcKd", "AsAh"])
    state.bet_or_raise(50)
    state.check_or_call()
    shown = [op for op in state.operations if isinstance(op, ShowOrMuck)]
    assert shown == [ShowOrMuck(1, tuple(cards("AsAh"))), ShowOrMuck(0, tuple(cards("KcKd")))]
    assert state.phase is Phase.DEAL_BOARD
    assert state.actor is None
    state.deal_board(cards("2c7d9h"))
    assert state.phase is Phase.DEAL_BOARD
    state.deal_board(cards("Kh"))
    state.deal_board(cards("3c"))
    assert state.is_done
    assert state.stacks == [100, 50]


# -- rake --------------------------------------------------------------------------------


def test_no_flop_no_drop() -> None:
    config = GameConfig(small_blind=1, big_blind=2, rake=RakeConfig(500, 3))
    state = dealt(config, [100, 100, 100], 0, ["KcKd", "AsAh", "QcQd"])
    state.bet_or_raise(10)
    state.fold()
    state.fold()
    assert state.rake == 0
    assert state.stacks == [103, 99, 98]


def test_rake_percentage_floor_and_cap() -> None:
    config = GameConfig(small_blind=1, big_blind=2, rake=RakeConfig(500, 3))
    state = dealt(config, [100, 100], 0, ["KcKd", "AsAh"])
    state.bet_or_raise(19)
    state.check_or_call()  # pot 38: 5% is 1.9, floored to 1
    check_down(state, "2c7d9hJs3c")
    finish_showdown(state)
    assert state.rake == 1
    assert state.stacks == [81, 118]
    assert state.chips_in_play() == 200
    state = dealt(config, [100, 100], 0, ["KcKd", "AsAh"])
    state.bet_or_raise(100)
    state.check_or_call()  # pot 200: 5% is 10, capped at 3
    check_down(state, "2c7d9hJs3c")
    assert [op for op in state.operations if isinstance(op, CollectRake)] == [CollectRake(3, (3,))]
    assert state.stacks == [0, 197]


# -- refusals ----------------------------------------------------------------------------


def test_illegal_actions_are_refused_with_a_reason_and_change_nothing() -> None:
    state = dealt(NLHE, [100, 100, 100], 0, ["KcKd", "AsAh", "QcQd"])
    before = state.to_bytes()
    attempts: list[tuple[Callable[[], object], str]] = [
        (lambda: state.check_or_call(player=1), "out of turn"),
        (lambda: state.fold(player=2), "out of turn"),
        (lambda: state.bet_or_raise(3), "below the minimum of 4"),
        (lambda: state.bet_or_raise(101), "above the maximum of 100"),
        (lambda: state.deal_board(cards("2c7d9h")), "no board cards are due"),
        (lambda: state.deal_hole(cards("2c7d")), "before the betting"),
        (lambda: state.show_or_muck(), "nobody shows"),
    ]
    for attempt, reason in attempts:
        with pytest.raises(IllegalAction, match=reason):
            attempt()
        assert state.to_bytes() == before
    state.check_or_call()
    state.check_or_call()
    with pytest.raises(IllegalAction, match="may check"):
        state.fold()
    state.check_or_call()
    with pytest.raises(IllegalAction, match="needs 3 cards"):
        state.deal_board(cards("2c7d"))
    with pytest.raises(IllegalAction, match="already dealt"):
        state.deal_board(cards("2c7dKc"))
    assert not state.can_deal_board([0, 0, 20])


def test_hole_deal_refusals() -> None:
    state = State(PLO, [100, 100], 0)
    with pytest.raises(IllegalAction, match="needs 4 cards"):
        state.deal_hole(cards("AsAh"))
    state.deal_hole(cards("AsAhKsKh"), 1)
    with pytest.raises(IllegalAction, match="already has hole cards"):
        state.deal_hole(cards("2c3c4c5c"), 1)
    with pytest.raises(IllegalAction, match="already dealt"):
        state.deal_hole(cards("2c3c4cAs"))
    with pytest.raises(IllegalAction, match=r"not in 0\.\.51"):
        state.deal_hole([0, 1, 2, 52])


def test_bad_setups_are_refused() -> None:
    with pytest.raises(PokerError, match=r"2\.\.6 players"):
        State(GameConfig(), [100] * 7, 0)
    with pytest.raises(PokerError, match="positive"):
        State(NLHE, [100, 0], 0)
    with pytest.raises(PokerError, match="button"):
        State(NLHE, [100, 100], 2)
    with pytest.raises(PokerError, match="straddle"):
        State(GameConfig(straddles=(4,)), [100, 100], 0)
    with pytest.raises(PokerError, match="exceed"):
        GameConfig(straddles=(2,))


# -- persistence -------------------------------------------------------------------------


def test_bytes_round_trip_mid_hand_continues_identically() -> None:
    state = dealt(PLO, [100, 80, 60], 2, ["AsAhKsKh", "2c3d4h5s", "7h8d9cTs"])
    state.bet_or_raise(7)
    copy = State.from_bytes(state.to_bytes())
    assert copy == state
    for each in (state, copy):
        each.check_or_call()
        each.check_or_call()
        each.deal_board(cards("2s7c9h"))
        each.bet_or_raise(21)
    assert copy == state
    assert copy.to_bytes() == state.to_bytes()


def test_replay_rebuilds_the_state_from_its_log() -> None:
    state = dealt(NLHE, [100, 100, 100], 0, ["KcKd", "AsAh", "QcQd"])
    state.bet_or_raise(6)
    state.check_or_call()
    state.check_or_call()
    check_down(state, "2c7d9hJs3c")
    finish_showdown(state)
    rebuilt = replay(NLHE, state.operations)
    assert rebuilt == state
    tampered = list(state.operations)
    index = next(i for i, op in enumerate(tampered) if isinstance(op, BetOrRaise))
    tampered[index] = BetOrRaise(0, 3, 3)
    with pytest.raises(IllegalAction, match=f"operation {index}"):
        replay(NLHE, tampered)
    tampered[index] = CheckOrCall(0, 2)
    with pytest.raises(IllegalAction, match="operation"):
        replay(NLHE, tampered)
