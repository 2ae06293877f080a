"""PHH reading and writing: the standard's fields, typed actions, errors, pokerkit interop."""

from __future__ import annotations

import datetime
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ludex.errors import HandHistoryError
from ludex.poker import phh

DATA = Path(__file__).parent / "data"
REAL_HANDS = sorted(DATA.glob("*.phh"))

MINIMAL = """
variant = "NT"
antes = [0, 0, 0]
blinds_or_straddles = [1, 2, 0]
min_bet = 2
starting_stacks = [200, 200, 200]
actions = ["d dh p1 AhKh", "d dh p2 ????", "d dh p3 7c7d", "p3 cbr 6", "p1 f", "p2 cc"]
"""


def test_there_are_real_hands_in_both_variants() -> None:
    variants = {phh.loads(p.read_text()).variant for p in REAL_HANDS}
    assert len(REAL_HANDS) >= 6
    assert variants == {"NT", "PO"}


@pytest.mark.parametrize("path", REAL_HANDS, ids=lambda p: p.stem)
def test_real_hands_read_with_exact_amounts_and_round_trip(path: Path) -> None:
    history = phh.loads(path.read_text())
    assert history.finishing_stacks is not None
    assert all(isinstance(v, int) for v in (*history.starting_stacks, *history.finishing_stacks))
    # Chips only move between players in these rake-free hands.
    assert sum(history.finishing_stacks) == sum(history.starting_stacks)
    text = phh.dumps(history)
    assert phh.loads(text) == history
    assert phh.dumps(phh.loads(text)) == text


def test_typed_actions() -> None:
    history = phh.loads(MINIMAL)
    assert history.parsed_actions == (
        phh.DealHole(0, ("Ah", "Kh")),
        phh.DealHole(1, ("??", "??")),
        phh.DealHole(2, ("7c", "7d")),
        phh.CompleteBetOrRaiseTo(2, 6),
        phh.Fold(0),
        phh.CheckOrCall(1),
    )
    assert history.player_count == 3
    assert history.player_name(0) == "p1"


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("p2 sm AhKh", phh.ShowOrMuck(1, ("Ah", "Kh"))),
        ("p2 sm", phh.ShowOrMuck(1)),
        ("p2 sm -", phh.ShowOrMuck(1, (), shows_dealt=True)),
        ("p1 sd", phh.StandPatOrDiscard(0)),
        ("p1 sd 7c", phh.StandPatOrDiscard(0, ("7c",))),
        ("p3 pb", phh.PostBringIn(2)),
        ("d db 2c3d4h", phh.DealBoard(("2c", "3d", "4h"))),
        ("  p1   cbr  300  # a raise ", phh.CompleteBetOrRaiseTo(0, 300, "a raise")),
        ("# Burn card 6s is exposed", phh.NoOp("Burn card 6s is exposed")),
        ("", phh.NoOp()),
        ("p10 cc", phh.CheckOrCall(9)),
    ],
)
def test_action_grammar(text: str, action: phh.Action) -> None:
    assert phh.parse_action(text) == action
    assert phh.parse_action(phh.format_action(action)) == action


def test_muck_is_distinguished_from_show() -> None:
    assert phh.ShowOrMuck(0).mucks
    assert not phh.ShowOrMuck(0, ("Ah", "Kh")).mucks
    assert not phh.ShowOrMuck(0, (), shows_dealt=True).mucks


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("p3 cbr 6", "p3 cbr 6.5"),
            r"actions\[3\] 'p3 cbr 6.5': amount: 6.5 is not a whole number of chips",
        ),
        (("p3 cbr 6", "p3 raise 6"), r"actions\[3\] 'p3 raise 6': not an action"),
        (("p3 cbr 6", "p4 cbr 6"), r"actions\[3\] 'p4 cbr 6': p4 does not exist"),
        (("p3 cbr 6", "p0 cbr 6"), r"actions\[3\] 'p0 cbr 6': 'p0' is not a player"),
        (("p3 cbr 6", "p3 cbr 0"), r"actions\[3\] 'p3 cbr 0': the amount must be positive"),
        (("d dh p3 7c7d", "d dh p3 7c7x"), r"actions\[2\] 'd dh p3 7c7x': card '7x'"),
        (("d dh p3 7c7d", "d dh p3 7c7"), r"actions\[2\] 'd dh p3 7c7': cards '7c7' must be two"),
        (("d dh p3 7c7d", "d dh p3 AhAd"), r"actions\[2\] 'd dh p3 AhAd': Ah was already dealt by"),
        (("min_bet = 2", "min_bet = 0"), r"field 'min_bet': 0 must be positive"),
        (("min_bet = 2", 'min_bet = "2"'), r"field 'min_bet': expected a number of chips"),
        (("min_bet = 2\n", ""), r"missing field 'min_bet', required for variant 'NT'"),
        (("min_bet = 2", "min_bet = 2\nsmall_bet = 2"), r"'small_bet' is not used by variant 'NT'"),
        (('"NT"', '"XX"'), r"field 'variant': unknown variant 'XX'"),
        (
            ("[200, 200, 200]", "[200, 200.25, 200]"),
            r"starting_stacks'\[1\]: 200.25 is not a whole",
        ),
        (("[200, 200, 200]", "[200, inf, 200]"), r"starting_stacks'\[1\]: inf is not a known"),
        (("[200, 200, 200]", "[200, 0, 200]"), r"starting_stacks'\[1\]: stacks must be positive"),
        (("[200, 200, 200]", "[200]"), r"a hand needs 2 players, not 1"),
        (("antes = [0, 0, 0]", "antes = [0, 0]"), r"'antes' has 2 entries but there are 3"),
        (("antes = [0, 0, 0]", "antes = [0, -1, 0]"), r"field 'antes'\[1\]: -1 is negative"),
        (("min_bet = 2", "min_bet = 2\nfinishing_stack = [1]"), r"unknown field 'finishing_stack'"),
        (("min_bet = 2", "min_bet = 2\nyear = 2024.5"), r"field 'year': expected an integer"),
        (("min_bet = 2", "min_bet = 2 2"), r"not valid TOML"),
        (("antes = [0, 0, 0]\n", ""), r"missing required field 'antes'"),
    ],
)
def test_malformed_input_names_the_field_or_action(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in MINIMAL
    with pytest.raises(HandHistoryError, match=expected):
        phh.loads(MINIMAL.replace(old, new, 1))


def test_whole_floats_are_accepted_as_chips() -> None:
    history = phh.loads(MINIMAL.replace("antes = [0, 0, 0]", "antes = [0.0, 3.0, 0]"))
    assert history.antes == (0, 3, 0)
    assert all(type(v) is int for v in history.antes)


def test_optional_fields_and_user_fields_round_trip_in_standard_order() -> None:
    extra = """
players = ["Ann", "", "Cy"]
seats = [1, 4, 6]
seat_count = 6
table = 3
hand = "h-9"
time = 21:30:00
time_zone = "America/Toronto"
day = 1
month = 2
year = 2024
currency = "USD"
finishing_stacks = [199, 204, 197]
ante_trimming_status = false
time_limit = 30
time_banks = [60, 60.5, 0]
_site = "ludex"
_meta = {hands = [1, 2]}
"""
    history = phh.loads(MINIMAL + extra)
    assert history.time == datetime.time(21, 30)
    assert history.player_name(1) == "p2"
    assert history.player_name(2) == "Cy"
    assert history.time_banks == (60, 60.5, 0)
    text = phh.dumps(history, comment="a test hand\nsecond line")
    assert text.startswith("# a test hand\n# second line\nvariant = ")
    assert phh.loads(text) == history
    keys = [line.split(" = ")[0] for line in text.splitlines() if " = " in line]
    standard = [k for k in keys if k in phh.FIELD_ORDER]
    assert standard == sorted(standard, key=phh.FIELD_ORDER.index)
    assert "\n[_meta]\n" in text  # tables go after every top-level key


def test_phhs_files_hold_several_hands() -> None:
    text = "[1]\n" + MINIMAL + "\n[2]\n" + MINIMAL.replace("200, 200, 200", "300, 300, 300")
    first, second = phh.loads_all(text)
    assert first.starting_stacks == (200, 200, 200)
    assert second.starting_stacks == (300, 300, 300)
    broken = "[1]\n" + MINIMAL + "\n[2]\n" + MINIMAL.replace("min_bet = 2\n", "")
    with pytest.raises(HandHistoryError, match=r"hand \[2\]: missing field 'min_bet'"):
        phh.loads_all(broken)


def test_constructing_directly_validates_too() -> None:
    history = phh.loads(MINIMAL)
    with pytest.raises(HandHistoryError, match="'players' has 2 entries"):
        replace(history, players=("a", "b"))


# -- pokerkit interop (test-only dependency) --------------------------------------------


def _pokerkit_stacks(text: str) -> list[int]:
    from pokerkit import HandHistory

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        states = list(HandHistory.loads(text))
    return [int(s) for s in states[-1].stacks]


@pytest.mark.parametrize(
    "path",
    [p for p in REAL_HANDS if "2019-42" not in p.name],  # see that file's note on antes
    ids=lambda p: p.stem,
)
def test_pokerkit_parses_what_we_write(path: Path) -> None:
    history = phh.loads(path.read_text())
    assert _pokerkit_stacks(phh.dumps(history)) == list(history.finishing_stacks or ())


def test_we_read_what_pokerkit_writes() -> None:
    from pokerkit import Automation, HandHistory, NoLimitTexasHoldem

    game = NoLimitTexasHoldem(
        (
            Automation.ANTE_POSTING,
            Automation.BET_COLLECTION,
            Automation.BLIND_OR_STRADDLE_POSTING,
            Automation.CARD_BURNING,
            Automation.HOLE_CARDS_SHOWING_OR_MUCKING,
            Automation.HAND_KILLING,
            Automation.CHIPS_PUSHING,
            Automation.CHIPS_PULLING,
        ),
        True,
        0,
        (1, 2),
        2,
    )
    state = game((100, 150, 80), 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pokerkit warns when a burnt card is dealt by hand
        for hole in ("AhKh", "7c7d", "2s3s"):
            state.deal_hole(hole)
        state.complete_bet_or_raise_to(6)
        state.fold()
        state.check_or_call()
        state.deal_board("Ac7h2d")
        state.check_or_call()
        state.complete_bet_or_raise_to(20)
        state.check_or_call()
        state.deal_board("Ts")
        state.check_or_call()
        state.check_or_call()
        state.deal_board("9d")
        state.check_or_call()
        state.check_or_call()
    written = HandHistory.from_game_state(game, state, players=["a", "b", "c"]).dumps()
    history = phh.loads(written)
    assert history.players == ("a", "b", "c")
    assert history.starting_stacks == (100, 150, 80)
    assert [phh.format_action(a) for a in history.parsed_actions] == list(history.actions)
    assert _pokerkit_stacks(phh.dumps(history)) == [int(s) for s in state.stacks]


_amount = st.integers(min_value=1, max_value=10**12)


@settings(max_examples=200, deadline=None)
@given(
    stacks=st.lists(_amount, min_size=2, max_size=10),
    raise_to=_amount,
    name=st.text(max_size=20),
    event=st.text(max_size=40),
)
def test_round_trip_property(stacks: list[int], raise_to: int, name: str, event: str) -> None:
    count = len(stacks)
    history = phh.HandHistory(
        variant="PO",
        antes=(0,) * count,
        blinds_or_straddles=(1, 2) + (0,) * (count - 2),
        min_bet=2,
        starting_stacks=tuple(stacks),
        actions=(f"p{count} cbr {raise_to} # {name}".strip(), "# note", ""),
        players=(name,) * count,
        event=event,
    )
    assert phh.loads(phh.dumps(history)) == history


# -- replay with the engine -------------------------------------------------------------


@pytest.mark.parametrize("path", REAL_HANDS, ids=lambda p: p.stem)
def test_every_real_hand_replays_to_its_published_finishing_stacks(path: Path) -> None:
    history = phh.loads(path.read_text())
    result = phh.replay(history)
    assert result.complete
    assert result.finishing_stacks == history.finishing_stacks, result.mismatch_lines()
    assert result.agrees is True
    assert sum(result.payoffs) + result.rake == 0
    shares = [share for pot in result.pots for share in pot.shares]
    assert sum(shares) == sum(pot.amount for pot in result.pots) > 0


def _real(name: str) -> str:
    return (DATA / name).read_text()


def _illegal(text: str) -> phh.IllegalHistoryAction:
    with pytest.raises(phh.IllegalHistoryAction) as info:
        phh.replay(phh.loads(text))
    return info.value


def test_a_raise_below_the_minimum_is_rejected_with_index_and_reason() -> None:
    text = _real("wsop-2023-43-5-hand-03.phh").replace('"p5 cbr 700000"', '"p5 cbr 300000"')
    error = _illegal(text)
    assert error.index == 19
    assert error.action == "p5 cbr 300000"
    assert "below the minimum of 450000" in error.reason  # 225,000 bet + a 225,000 raise
    assert str(error).startswith("actions[19] 'p5 cbr 300000': ")


def test_a_pot_limit_raise_above_the_pot_is_rejected() -> None:
    # Blinds 50,000/100,000 and a 100,000 big-blind ante: the pot-sized raise is to 450,000.
    text = _real("wsop-2023-43-5-hand-27.phh").replace('"p5 cbr 350000"', '"p5 cbr 460000"')
    error = _illegal(text)
    assert (error.index, error.action) == (7, "p5 cbr 460000")
    assert "above the maximum of 450000" in error.reason


def test_an_out_of_turn_action_names_whose_turn_it_was() -> None:
    # The published dataset file itself omits p8's fold; pokerkit's reader repairs that
    # silently, ludex refuses it.
    text = _real("wsop-2019-42-3-00-01-07.phh").replace('  "p8 f",', "", 1)
    error = _illegal(text)
    assert (error.index, error.action) == (13, "p1 cc")
    assert error.reason == "p1 acted out of turn: it is p8's turn"


def test_an_action_after_the_hand_ended_is_rejected() -> None:
    text = _real("wsop-2023-43-5-hand-03.phh").replace('"p2 f",', '"p2 f", "p5 cc",')
    error = _illegal(text)
    assert error.index == 21
    assert "DONE" in error.reason


def test_a_card_dealt_twice_or_an_impossible_deal_is_refused() -> None:
    text = _real("wsop-2023-43-5-hand-01.phh").replace('"d dh p1 4s"', '"d dh p1 4s3s"')
    error = _illegal(text)
    assert error.index == 5
    assert "would hold 3 hole cards, not 2" in error.reason


def test_a_wrong_published_stack_is_reported_per_player() -> None:
    text = _real("wsop-2023-43-5-hand-30.phh").replace(
        "[10125000, 7700000, 4050000, 4300000, 3525000]",
        "[10125000, 7700000, 4050000, 4300000, 3525001]",
    )
    result = phh.replay(phh.loads(text))
    assert result.mismatches == (4,)
    assert result.agrees is False
    assert result.mismatch_lines() == [
        "p5: the file's finishing stack is 3525001, ludex ends with 3525000 (-1)"
    ]


def test_a_history_that_stops_early_reports_the_stacks_so_far() -> None:
    history = phh.loads(MINIMAL)  # stops before the flop
    result = phh.replay(history)
    assert not result.complete
    assert result.finishing_stacks == (199, 194, 194)  # p1 folded the small blind
    assert result.expected_stacks is None
    assert result.agrees is None


def test_a_history_that_stops_at_the_showdown_is_finished_by_the_rules() -> None:
    text = _real("wsop-2023-43-5-hand-01.phh").replace('  "p4 sm 6d5h",\n  "p2 sm Js8h",\n', "")
    result = phh.replay(phh.loads(text))
    assert result.complete
    assert result.agrees is True


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('variant = "NT"', 'variant = "NS"', "ludex deals only 'NT' and 'PO'"),
        ("[1, 2, 0]", "[1, 2, 0]\nbring_in = 1", "'bring_in' is not used"),
        ("antes = [0, 0, 0]", "antes = [0, 0, 5]", "no ante, one ante for everyone"),
    ],
)
def test_structures_the_engine_does_not_deal_are_refused(old: str, new: str, expected: str) -> None:
    with pytest.raises(HandHistoryError, match=expected):
        phh.replay(phh.loads(MINIMAL.replace(old, new, 1)))


def test_a_button_straddle_is_refused() -> None:
    text = (
        MINIMAL.replace("[0, 0, 0]", "[0, 0, 0, 0]")
        .replace("[1, 2, 0]", "[1, 2, 0, 4]")
        .replace("[200, 200, 200]", "[200, 200, 200, 200]")
    )
    with pytest.raises(HandHistoryError, match="straddles only on the players right after"):
        phh.replay(phh.loads(text))


# -- writing the engine's hands -----------------------------------------------------------


@pytest.mark.parametrize("path", REAL_HANDS, ids=lambda p: p.stem)
def test_engine_log_written_back_as_phh_replays_identically(path: Path) -> None:
    history = phh.loads(path.read_text())
    result = phh.replay(history)
    written = phh.from_operations(result.config, result.operations, players=history.players)
    assert written.finishing_stacks == history.finishing_stacks
    assert written.players == history.players
    text = phh.dumps(written)
    assert phh.replay(phh.loads(text)).finishing_stacks == history.finishing_stacks
    assert _pokerkit_stacks(text) == list(history.finishing_stacks or ())


def test_engine_players_are_renumbered_from_the_small_blind() -> None:
    from ludex.poker.rules import GameConfig
    from ludex.poker.state import State

    state = State(GameConfig(small_blind=1, big_blind=2), [100, 200, 300, 400], button=1)
    written = phh.from_operations(
        state.config, state.operations, players=["e0", "e1", "e2", "e3"], seats=[1, 3, 5, 6]
    )
    # Engine player 2 is left of the button (small blind), so it is p1; the button is p4.
    assert written.players == ("e2", "e3", "e0", "e1")
    assert written.seats == (5, 6, 1, 3)
    assert written.starting_stacks == (300, 400, 100, 200)
    assert written.blinds_or_straddles == (1, 2, 0, 0)
    assert written.finishing_stacks is None  # the hand has not been played
