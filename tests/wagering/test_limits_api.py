"""Risk limits through the API: each one refuses with its name; the admin endpoint."""

from __future__ import annotations

import json

import httpx
import msgspec
from sqlalchemy import select

from ludex.adapters.sql.tables import audit_log, outbox
from ludex.events import decode
from tests.wagering.conftest import ADMIN_TOKEN, Harness

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


async def _put(client: httpx.AsyncClient, **change: object) -> httpx.Response:
    return await client.put("/admin/v1/limits", json=change, headers=AUTH)


async def _limit_events(wallet: Harness) -> list[dict[str, object]]:
    async with wallet.store.transaction() as session:
        rows = (
            await session.scalars(
                select(outbox.c.payload).where(outbox.c.event_type == "wallet.limit_refused")
            )
        ).all()
    return [msgspec.to_builtins(decode(bytes(p)).payload) for p in rows]


async def test_each_limit_refuses_with_its_name(wallet: Harness) -> None:
    c = wallet.client
    a, b, d, e = [await wallet.add_player(10_000) for _ in range(4)]
    assert (await _put(c, scope="player", key=a, name="max_stake", value=100)).status_code == 200
    before = await wallet.snapshot(a)
    refused = await wallet.bet(a, 101, "a-1")
    assert refused["status"] == "LIMIT_REACHED"
    assert refused["limit"] == "max_stake"
    assert (await wallet.bet(a, 100, "a-2"))["status"] == "OK"
    assert (await wallet.snapshot(a))[0] == (before[0][0] - 100,)

    await _put(c, scope="game", key="crash", name="max_round_exposure", value=150)
    assert (await wallet.bet(b, 100, "b-1", round_id="rb", game="crash"))["status"] == "OK"
    over = await wallet.bet(b, 60, "b-2", round_id="rb", game="crash")
    assert over["limit"] == "max_round_exposure"
    assert (await wallet.bet(b, 50, "b-3", round_id="rb", game="crash"))["status"] == "OK"

    await _put(c, scope="player", key=d, name="daily_loss", value=300)
    await wallet.bet(d, 200, "d-1", round_id="rd1")
    await wallet.win(d, 50, "d-w1", round_id="rd1")
    assert (await wallet.bet(d, 151, "d-2", round_id="rd2"))["limit"] == "daily_loss"
    assert (await wallet.bet(d, 150, "d-3", round_id="rd2"))["status"] == "OK"

    await _put(c, scope="player", key=e, name="bet_velocity", value=3)
    for i in range(3):
        assert (await wallet.bet(e, 1, f"e-{i}", round_id=f"re{i}"))["status"] == "OK"
    fast = await wallet.bet(e, 1, "e-3", round_id="re3")
    assert fast["status"] == "LIMIT_REACHED"
    assert fast["limit"] == "bet_velocity"

    await _put(c, scope="provider", key="studio", name="max_liability", value=1000)
    # Open stakes: a 100 + 100, b 150, d 150 (its first round is closed), e 3 = 503.
    liability = await wallet.bet(a, 100, "a-3", round_id="ra2")
    assert liability["status"] == "OK"
    too_much = await wallet.bet(a, 101, "a-4", round_id="ra3")
    assert (too_much["status"], too_much["limit"]) == ("LIMIT_REACHED", "max_stake")
    await _put(c, scope="player", key=a, name="max_stake", value=None)
    too_much = await wallet.bet(a, 500, "a-5", round_id="ra3")
    assert too_much["limit"] == "max_liability", too_much

    events = await _limit_events(wallet)
    assert [ev["limit"] for ev in events] == [
        "max_stake",
        "max_round_exposure",
        "daily_loss",
        "bet_velocity",
        "max_stake",
        "max_liability",
    ]
    assert events[0]["requested"] == 101
    assert events[0]["allowed"] == 100
    assert events[0]["player_id"] == a
    assert events[0]["transaction_id"] == "a-1"


async def test_admin_endpoint_requires_the_token_and_audits(wallet: Harness) -> None:
    c = wallet.client
    change = {"scope": "game", "key": "slots", "name": "max_stake", "value": 500}
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": ADMIN_TOKEN},
    ):
        refused = await c.put("/admin/v1/limits", json=change, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "unauthorized"
        assert (await c.get("/admin/v1/limits", headers=headers)).status_code == 401
    assert (await c.get("/admin/v1/limits", headers=AUTH)).json() == []

    assert (await _put(c, **change)).json()["old"] is None
    assert (await _put(c, **{**change, "value": 700, "actor": "risk-team"})).json() == {
        "scope": "game",
        "key": "slots",
        "name": "max_stake",
        "old": 500,
        "new": 700,
    }
    assert (await c.get("/admin/v1/limits", headers=AUTH)).json() == [
        {"scope": "game", "key": "slots", "name": "max_stake", "value": 700}
    ]
    assert (await _put(c, **{**change, "value": None})).json()["old"] == 700
    bad = await _put(c, scope="provider", key="studio", name="max_stake", value=1)
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_limit"

    async with wallet.store.transaction() as session:
        rows = (await session.execute(select(audit_log).order_by("id"))).all()
    limit_rows = [r for r in rows if r.subject == "limit:game:slots:max_stake"]
    assert [(r.actor, r.action, r.old_value, r.new_value) for r in limit_rows] == [
        ("admin-api", "limit.set", None, "500"),
        ("risk-team", "limit.set", "500", "700"),
        ("admin-api", "limit.removed", "700", None),
    ]
    assert all(r.at is not None for r in limit_rows)


async def test_openapi_documents_the_provider_api(wallet: Harness) -> None:
    spec = (await wallet.client.get("/openapi.json")).json()
    bet = spec["paths"]["/provider/v1/bet"]["post"]
    assert set(bet["responses"]) >= {"200", "400", "401", "403", "500"}
    described = json.dumps(bet["responses"])
    for code in (
        "INSUFFICIENT_FUNDS",
        "LIMIT_REACHED",
        "DUPLICATE_DIFFERENT_PAYLOAD",
        "EXPIRED",
        "NONCE_REUSED",
        "UNKNOWN_PLAYER",
        "PLAYER_BLOCKED",
    ):
        assert code in described
    assert "amount" in json.dumps(bet["requestBody"])
    assert {p["name"] for p in bet["parameters"]} >= {"X-Ludex-Signature", "X-Ludex-Nonce"}
    assert "/admin/v1/limits" in spec["paths"]
