"""The pure risk rules."""

from __future__ import annotations

import pytest

from ludex.wagering.limits import Limit, Usage, check_bet, check_definition, effective_limits


def test_lowest_applicable_limit_wins_and_others_are_ignored() -> None:
    found = effective_limits(
        [
            Limit("player", "p1", "max_stake", 500),
            Limit("game", "slots", "max_stake", 200),
            Limit("game", "poker", "max_stake", 1),
            Limit("player", "p2", "daily_loss", 1),
            Limit("provider", "acme", "max_liability", 10_000),
            Limit("provider", "acme", "max_stake", 1),  # not a provider limit: ignored
        ],
        player_id="p1",
        game_id="slots",
        provider_id="acme",
    )
    assert {n: (e.value, e.scope) for n, e in found.items()} == {
        "max_stake": (200, "game"),
        "max_liability": (10_000, "provider"),
    }


@pytest.mark.parametrize(
    ("row", "usage", "breached"),
    [
        (Limit("player", "p1", "max_stake", 100), Usage(amount=100), None),
        (Limit("player", "p1", "max_stake", 100), Usage(amount=101), "max_stake"),
        (
            Limit("game", "slots", "max_round_exposure", 100),
            Usage(amount=40, round_open_stakes=60),
            None,
        ),
        (
            Limit("game", "slots", "max_round_exposure", 100),
            Usage(amount=41, round_open_stakes=60),
            "max_round_exposure",
        ),
        (Limit("player", "p1", "daily_loss", 100), Usage(amount=50, daily_loss=51), "daily_loss"),
        (Limit("player", "p1", "daily_loss", 100), Usage(amount=50, daily_loss=-500), None),
        (Limit("player", "p1", "bet_velocity", 3), Usage(amount=1, bets_last_minute=2), None),
        (
            Limit("player", "p1", "bet_velocity", 3),
            Usage(amount=1, bets_last_minute=3),
            "bet_velocity",
        ),
        (
            Limit("provider", "acme", "max_liability", 10),
            Usage(amount=5, provider_open_stakes=6),
            "max_liability",
        ),
    ],
)
def test_each_rule(row: Limit, usage: Usage, breached: str | None) -> None:
    breach = check_bet(
        effective_limits([row], player_id="p1", game_id="slots", provider_id="acme"), usage
    )
    assert (breach.limit if breach else None) == breached
    if breach:
        assert breach.requested > breach.allowed == row.value
        assert breach.limit in breach.message


def test_missing_usage_figure_is_a_bug_not_a_pass() -> None:
    limits = effective_limits(
        [Limit("player", "p1", "daily_loss", 1)], player_id="p1", game_id="g", provider_id="x"
    )
    with pytest.raises(ValueError, match="daily_loss"):
        check_bet(limits, Usage(amount=5))


def test_definitions() -> None:
    assert check_definition("player", "max_stake", 5) is None
    assert "not on provider" in (check_definition("provider", "max_stake", 5) or "")
    assert "unknown limit" in (check_definition("player", "max_fun", 5) or "")
