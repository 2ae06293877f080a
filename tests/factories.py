"""Small builders of valid domain objects for tests (override any field by keyword)."""

from __future__ import annotations

from typing import Any

from ludex.events import BetPlaced


def bet_placed(**fields: Any) -> BetPlaced:
    """A valid ``wallet.bet_placed`` payload."""
    values: dict[str, Any] = {
        "player_id": "p",
        "provider": "x",
        "game_id": "g",
        "round_id": "r",
        "transaction_id": "t",
        "amount": 5,
        "currency": "CHIPS",
        "balance_after": 0,
    }
    values.update(fields)
    return BetPlaced(**values)
