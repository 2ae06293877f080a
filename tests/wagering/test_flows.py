"""Valid flows, idempotency, rollbacks and ordering through the HTTP API, on every store."""

from __future__ import annotations

import asyncio

import msgspec
from sqlalchemy import select

from ludex import ledger
from ludex.adapters.sql.tables import outbox, provider_requests, provider_rounds
from ludex.events import decode
from tests.wagering.conftest import Harness


async def _events(wallet: Harness) -> list[tuple[str, str, dict[str, object]]]:
    async with wallet.store.transaction() as session:
        rows = (await session.execute(select(outbox).order_by(outbox.c.id))).all()
    out = []
    for row in rows:
        envelope = decode(bytes(row.payload))
        out.append((row.event_type, row.partition_key, msgspec.to_builtins(envelope.payload)))
    return out


async def test_bet_win_balance_events_and_request_log(wallet: Harness) -> None:
    player = await wallet.add_player(1000)
    answer = await wallet.call("balance", {"player_id": player})
    assert answer == {"status": "OK", "balance": 1000, "currency": "CHIPS", "_http": 200}

    bet = await wallet.bet(player, 300, "tx-1")
    assert bet == {
        "status": "OK",
        "balance": 700,
        "currency": "CHIPS",
        "transaction_id": "tx-1",
        "_http": 200,
    }
    win = await wallet.win(player, 500, "tx-2")
    assert win["status"] == "OK"
    assert win["balance"] == 1200
    assert await wallet.balance(player) == 1200
    assert await wallet.float_balance() == -200

    events = await _events(wallet)
    types = [t for t, _, _ in events]
    assert types == ["treasury.moved", "wallet.bet_placed", "wallet.win_settled", "game.finalized"]
    assert all(key == player for _, key, _ in events)
    assert events[1][2]["amount"] == 300
    assert events[1][2]["balance_after"] == 700
    assert events[2][2]["amount"] == 500
    assert events[2][2]["balance_after"] == 1200

    async with wallet.store.transaction() as session:
        logged = (await session.execute(select(provider_requests).order_by("id"))).all()
        [round_row] = (await session.execute(select(provider_rounds))).all()
    assert [r.endpoint for r in logged] == ["balance", "bet", "win"]
    assert all(r.http_status == 200 and r.status == "OK" and r.duration_ms > 0 for r in logged)
    assert b'"transaction_id": "tx-1"' in bytes(logged[1].body)
    assert bytes(logged[1].response).startswith(b'{"status":"OK","balance":700')
    assert "x-ludex-signature" in logged[1].headers
    assert round_row.status == "closed"
    assert round_row.total_bet == 300
    assert round_row.total_win == 500


async def test_duplicates_same_and_different_payload(wallet: Harness) -> None:
    player = await wallet.add_player(1000)
    first = await wallet.bet(player, 100, "tx-d")
    again = await wallet.bet(player, 100, "tx-d")
    assert again == first
    assert first["balance"] == 900
    assert await wallet.balance(player) == 900

    before = await wallet.snapshot(player)
    other = await wallet.bet(player, 101, "tx-d")
    assert other["status"] == "DUPLICATE_DIFFERENT_PAYLOAD"
    assert other["_http"] == 200
    as_win = await wallet.win(player, 100, "tx-d")
    assert as_win["status"] == "DUPLICATE_DIFFERENT_PAYLOAD"
    assert await wallet.snapshot(player) == before

    win = await wallet.win(player, 50, "tx-w", round_closed=False)
    assert await wallet.win(player, 50, "tx-w", round_closed=False) == win
    assert await wallet.balance(player) == 950


async def test_rollback_after_bet_exactly_once(wallet: Harness) -> None:
    player = await wallet.add_player(1000)
    await wallet.bet(player, 400, "tx-b")
    done = await wallet.rollback(player, "rb-1", "tx-b")
    assert done["status"] == "OK"
    assert done["balance"] == 1000
    assert await wallet.rollback(player, "rb-1", "tx-b") == done
    second = await wallet.rollback(player, "rb-2", "tx-b")
    assert second["status"] == "ROLLED_BACK"
    assert second["balance"] == 1000
    assert await wallet.balance(player) == 1000
    assert await wallet.float_balance() == 0
    # The round lost its only bet: a win for it is refused.
    win = await wallet.win(player, 800, "tx-late-win")
    assert win["status"] == "ROLLED_BACK"
    bet_again = await wallet.bet(player, 10, "tx-b2")
    assert bet_again["status"] == "ROLLED_BACK"
    assert await wallet.balance(player) == 1000
    [rolled] = [p for t, _, p in await _events(wallet) if t == "wallet.rolled_back"]
    assert rolled["amount"] == 400
    assert rolled["rolled_back_transaction_id"] == "tx-b"


async def test_rollback_before_bet_refuses_the_bet(wallet: Harness) -> None:
    player = await wallet.add_player(1000)
    ack = await wallet.rollback(player, "rb-early", "tx-late")
    assert ack["status"] == "OK"
    assert ack["balance"] == 1000
    before = await wallet.snapshot(player)
    late = await wallet.bet(player, 300, "tx-late")
    assert late["status"] == "ROLLED_BACK"
    assert await wallet.bet(player, 300, "tx-late") == late
    assert await wallet.snapshot(player) == before
    assert await wallet.rollback(player, "rb-early", "tx-late") == ack
    assert (await wallet.rollback(player, "rb-other", "tx-late"))["status"] == "ROLLED_BACK"


async def test_wins_for_unknown_rolled_back_and_closed_rounds(wallet: Harness) -> None:
    player = await wallet.add_player(1000)
    before = await wallet.snapshot(player)
    # Out of order: the win overtook its bet.
    early = await wallet.win(player, 100, "w-early", round_id="r-x")
    assert early["status"] == "UNKNOWN_ROUND"
    assert early["_http"] == 200
    assert await wallet.snapshot(player) == before
    await wallet.bet(player, 100, "b-x", round_id="r-x")
    # The retry of the same win id after the bet is evaluated again and accepted.
    assert (await wallet.win(player, 100, "w-early", round_id="r-x"))["status"] == "OK"
    closed = await wallet.win(player, 100, "w-again", round_id="r-x")
    assert closed["status"] == "ROUND_CLOSED"
    assert (await wallet.bet(player, 5, "b-after", round_id="r-x"))["status"] == "ROUND_CLOSED"
    assert (await wallet.rollback(player, "rb-x", "b-x"))["status"] == "ROUND_CLOSED"

    await wallet.bet(player, 50, "b-y", round_id="r-y")
    unknown_bet = await wallet.win(player, 10, "w-y", round_id="r-y", bet_transaction_id="nope")
    assert unknown_bet["status"] == "UNKNOWN_TRANSACTION"
    await wallet.bet(player, 20, "b-y2", round_id="r-y")
    await wallet.rollback(player, "rb-y", "b-y")
    refused = await wallet.win(player, 10, "w-y2", round_id="r-y", bet_transaction_id="b-y")
    assert refused["status"] == "ROLLED_BACK"
    ok = await wallet.win(player, 10, "w-y3", round_id="r-y", bet_transaction_id="b-y2")
    assert ok["status"] == "OK"
    assert ok["balance"] == 1000 - 20 + 10


async def test_insufficient_funds_unknown_and_blocked_players(wallet: Harness) -> None:
    player = await wallet.add_player(100)
    before = await wallet.snapshot(player)
    poor = await wallet.bet(player, 101, "tx-poor")
    assert poor["status"] == "INSUFFICIENT_FUNDS"
    assert poor["balance"] == 100
    assert await wallet.snapshot(player) == before
    # Not stored: after a deposit the same id is accepted.
    async with wallet.store.transaction() as session:
        await ledger.transfer(
            session,
            [ledger.TransferSpec("top-up", "house", f"player:{player}", 50, "CHIPS", "funding")],
        )
    assert (await wallet.bet(player, 101, "tx-poor"))["balance"] == 49

    ghost = await wallet.bet("ghost", 1, "tx-ghost")
    assert ghost["status"] == "UNKNOWN_PLAYER"
    assert (await wallet.call("balance", {"player_id": "ghost"}))["status"] == "UNKNOWN_PLAYER"

    await wallet.bet(player, 10, "tx-open", round_id="r-open")
    await wallet.service.set_player_status(player, "blocked", actor="test")
    blocked = await wallet.bet(player, 1, "tx-blocked", round_id="r-open")
    assert blocked["status"] == "PLAYER_BLOCKED"
    # What the player is owed still arrives.
    assert (await wallet.win(player, 30, "tx-owed", round_id="r-open"))["status"] == "OK"


async def test_malformed_requests_are_400_and_change_nothing(wallet: Harness) -> None:
    player = await wallet.add_player(100)
    before = await wallet.snapshot(player)
    for payload in (
        {"player_id": player},
        {
            "player_id": player,
            "game_id": "g",
            "round_id": "r",
            "transaction_id": "t",
            "amount": "10",
            "currency": "CHIPS",
        },
        {
            "player_id": player,
            "game_id": "g",
            "round_id": "r",
            "transaction_id": "t",
            "amount": 10.5,
            "currency": "CHIPS",
        },
        {
            "player_id": player,
            "game_id": "g",
            "round_id": "r",
            "transaction_id": "t",
            "amount": 10,
            "currency": "USD",
        },
        {
            "player_id": player,
            "game_id": "g",
            "round_id": "r",
            "transaction_id": "t",
            "amount": -1,
            "currency": "CHIPS",
        },
        {
            "player_id": player,
            "game_id": "g",
            "round_id": "r",
            "transaction_id": "t",
            "amount": 1,
            "currency": "CHIPS",
            "extra": 1,
        },
    ):
        answer = await wallet.call("bet", payload)
        assert (answer["status"], answer["_http"]) == ("INVALID_REQUEST", 400), payload
    body = b"not json"
    response = await wallet.raw("bet", body, wallet.signed_headers(body))
    assert response.status_code == 400
    assert response.json()["status"] == "INVALID_REQUEST"
    assert await wallet.snapshot(player) == before


async def test_parallel_duplicate_bets_move_money_once(wallet: Harness) -> None:
    player = await wallet.add_player(1000)
    others = [await wallet.add_player(1000) for _ in range(3)]
    answers = await asyncio.gather(
        *(wallet.bet(player, 100, "tx-race", round_id="r-race") for _ in range(8)),
        *(wallet.bet(p, 100, f"tx-{i}", round_id=f"r-{i}") for i, p in enumerate(others)),
    )
    assert {a["status"] for a in answers} == {"OK"}
    race = answers[:8]
    assert all(a == race[0] for a in race)
    assert race[0]["balance"] == 900
    assert await wallet.balance(player) == 900
    assert await wallet.float_balance() == 400
    rollbacks = await asyncio.gather(
        *(wallet.rollback(player, f"rb-race-{i}", "tx-race") for i in range(4))
    )
    assert sorted(a["status"] for a in rollbacks) == [
        "OK",
        "ROLLED_BACK",
        "ROLLED_BACK",
        "ROLLED_BACK",
    ]
    assert await wallet.balance(player) == 1000
