"""Forged, late, replayed and malformed requests: rejected, logged, and nothing changes."""

from __future__ import annotations

import json
import time
import uuid

from sqlalchemy import select

from ludex.adapters.sql.tables import audit_log, provider_requests
from tests.wagering.conftest import Harness


def _bet(player: str, tx: str, amount: int = 100) -> bytes:
    return json.dumps(
        {
            "player_id": player,
            "game_id": "slots",
            "round_id": "r1",
            "transaction_id": tx,
            "amount": amount,
            "currency": "CHIPS",
        }
    ).encode()


async def test_every_forgery_is_rejected_logged_and_changes_nothing(wallet: Harness) -> None:
    player = await wallet.add_player(1000)
    body = _bet(player, "tx-1")
    now = int(time.time())
    window = int(wallet.settings.provider_timestamp_window)
    good = wallet.signed_headers(body)
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        (
            "forged signature",
            body,
            {**good, "X-Ludex-Signature": "0" * 64},
            401,
            "INVALID_SIGNATURE",
        ),
        (
            "wrong secret",
            body,
            wallet.signed_headers(body, secret="whsec_not-the-secret"),
            401,
            "INVALID_SIGNATURE",
        ),
        ("tampered body", _bet(player, "tx-1", amount=1), good, 401, "INVALID_SIGNATURE"),
        (
            "late timestamp",
            body,
            wallet.signed_headers(body, timestamp=now - window - 5),
            401,
            "EXPIRED",
        ),
        (
            "future timestamp",
            body,
            wallet.signed_headers(body, timestamp=now + window + 5),
            401,
            "EXPIRED",
        ),
        (
            "unknown provider",
            body,
            wallet.signed_headers(body, provider="nobody"),
            401,
            "INVALID_SIGNATURE",
        ),
        (
            "non-numeric timestamp",
            body,
            {**good, "X-Ludex-Timestamp": "yesterday"},
            401,
            "INVALID_SIGNATURE",
        ),
        ("short nonce", body, wallet.signed_headers(body, nonce="abc"), 401, "INVALID_SIGNATURE"),
    ]
    for header in ("X-Ludex-Provider", "X-Ludex-Timestamp", "X-Ludex-Nonce", "X-Ludex-Signature"):
        cases.append(
            (
                f"missing {header}",
                body,
                {k: v for k, v in good.items() if k != header},
                401,
                "INVALID_SIGNATURE",
            )
        )
    before = await wallet.snapshot(player)
    logged = await wallet.logged()
    for name, sent, headers, http, status in cases:
        response = await wallet.raw("bet", sent, headers)
        assert (response.status_code, response.json()["status"]) == (http, status), name
        assert "balance" not in response.json(), name
    assert await wallet.snapshot(player) == before
    assert await wallet.logged() == logged + len(cases)
    async with wallet.store.transaction() as session:
        rows = (await session.execute(select(provider_requests).order_by("id"))).all()
    refused = rows[-len(cases) :]
    assert [r.status for r in refused] == [c[4] for c in cases]
    assert all(r.http_status == 401 for r in refused)
    assert bytes(refused[2].body) == _bet(player, "tx-1", amount=1)

    # The genuine request still goes through once; its replay is refused.
    ok = await wallet.raw("bet", body, good)
    assert ok.json()["status"] == "OK"
    replay = await wallet.raw("bet", body, good)
    assert (replay.status_code, replay.json()["status"]) == (401, "NONCE_REUSED")
    assert await wallet.balance(player) == 900


async def test_forged_nonce_does_not_burn_the_real_one(wallet: Harness) -> None:
    player = await wallet.add_player(1000)
    body = _bet(player, "tx-n")
    nonce = uuid.uuid4().hex
    forged = wallet.signed_headers(body, nonce=nonce, secret="whsec_forger")
    assert (await wallet.raw("bet", body, forged)).json()["status"] == "INVALID_SIGNATURE"
    genuine = wallet.signed_headers(body, nonce=nonce)
    assert (await wallet.raw("bet", body, genuine)).json()["status"] == "OK"


async def test_blocked_provider_and_rotated_secret(wallet: Harness) -> None:
    player = await wallet.add_player(1000)
    await wallet.service.set_provider_status("studio", "blocked", actor="ops")
    answer = await wallet.bet(player, 10, "tx-blocked")
    assert (answer["_http"], answer["status"]) == (403, "PROVIDER_BLOCKED")
    await wallet.service.set_provider_status("studio", "active", actor="ops")
    new_secret = await wallet.service.rotate_provider_secret("studio", actor="ops")
    assert (await wallet.bet(player, 10, "tx-old"))["status"] == "INVALID_SIGNATURE"
    wallet.secret = new_secret
    assert (await wallet.bet(player, 10, "tx-new"))["status"] == "OK"
    async with wallet.store.transaction() as session:
        actions = (await session.scalars(select(audit_log.c.action).order_by("id"))).all()
        secrets = (await session.scalars(select(audit_log.c.new_value))).all()
    assert actions[-3:] == ["provider.blocked", "provider.active", "provider.secret_rotated"]
    assert not any(new_secret in (s or "") for s in secrets)
