"""The event envelope and catalog: round trips, ordering of ids, and clear rejections."""

from __future__ import annotations

import types
import typing
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ludex.errors import MalformedEvent, UnknownEventType
from ludex.events import (
    Envelope,
    Payload,
    catalog,
    decode,
    encode,
    new_event,
    spec_for,
    topic_for,
    topics,
)
from tests.factories import bet_placed

# Every kind of event the seeds name must have a type in the catalog.
SEED_EVENTS = {
    "bets placed": "wallet.bet_placed",
    "wins settled": "wallet.win_settled",
    "rollbacks": "wallet.rolled_back",
    "limit refusals": "wallet.limit_refused",
    "games finalized": "game.finalized",
    "treasury movements": "treasury.moved",
    "chain logs": "chain.log",
    "blocks": "chain.block",
    "transactions": "chain.transaction",
    "token transfers": "chain.token_transfer",
    "reorgs": "chain.block_reverted",
    "hands started": "poker.hand_started",
    "hand actions": "poker.action",
    "hands completed": "poker.hand_completed",
    "settlement submitted": "settlement.submitted",
    "settlement confirmed": "settlement.confirmed",
    "settlement failed": "settlement.failed",
    "deposits": "wallet.deposit_credited",
    "withdrawals": "wallet.withdrawal_debited",
}


def _value(annotation: Any, draw: st.DataObject) -> Any:
    origin = typing.get_origin(annotation)
    if annotation is str:
        return draw.draw(st.text(max_size=20))
    if annotation is int:
        return draw.draw(st.integers(min_value=-(2**255), max_value=2**256))
    if annotation is Any:
        return draw.draw(st.one_of(st.integers(), st.text(max_size=5), st.booleans()))
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation)]
        return _value(draw.draw(st.sampled_from(options)), draw) if options else None
    if annotation is type(None):
        return None
    if origin is list:
        (inner,) = typing.get_args(annotation)
        return [_value(inner, draw) for _ in range(draw.draw(st.integers(0, 3)))]
    if origin is dict:
        _, inner = typing.get_args(annotation)
        return {draw.draw(st.text(max_size=8)): _value(inner, draw) for _ in range(2)}
    raise AssertionError(f"no generator for {annotation!r}")


def _payload(cls: type[Payload], draw: st.DataObject) -> Payload:
    hints = typing.get_type_hints(cls)
    kwargs = {f.name: _value(hints[f.name], draw) for f in msgspec.structs.fields(cls)}
    return cls(**kwargs)


def test_catalog_covers_every_seed_event() -> None:
    known = {spec.type for spec in catalog()}
    missing = {name: t for name, t in SEED_EVENTS.items() if t not in known}
    assert not missing


def test_topics_group_by_domain() -> None:
    assert topic_for("wallet.bet_placed") == "ludex.wallet"
    assert spec_for("poker.hand_completed").topic == "ludex.poker"
    assert set(topics()) >= {
        "ludex.wallet",
        "ludex.poker",
        "ludex.chain",
        "ludex.settlement",
        "ludex.treasury",
        "ludex.game",
    }


@pytest.mark.parametrize("spec", list(catalog()), ids=lambda s: s.type)
@given(data=st.data())
def test_every_event_type_round_trips(spec: Any, data: st.DataObject) -> None:
    payload = _payload(spec.payload, data)
    event = new_event(payload, key="k-1", producer="test")
    again = decode(encode(event))
    assert again == event
    assert type(again.payload) is spec.payload
    assert again.topic == spec.topic


def test_ids_sort_by_time() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    payload = bet_placed(amount=1)
    ids = [
        new_event(payload, key="p", producer="t", occurred_at=start + timedelta(milliseconds=i)).id
        for i in range(0, 1000, 7)
    ]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def _bet_json(**changes: Any) -> bytes:
    payload = bet_placed()
    raw = msgspec.to_builtins(new_event(payload, key="p", producer="t"))
    for path, value in changes.items():
        target = raw
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        if value is ...:
            del target[leaf]
        else:
            target[leaf] = value
    return msgspec.json.encode(raw)


@pytest.mark.parametrize(
    ("changes", "error", "says"),
    [
        ({"type": "wallet.jackpot"}, UnknownEventType, "unknown event type 'wallet.jackpot'"),
        ({"payload__amount": "five"}, MalformedEvent, "Expected `int`"),
        ({"payload__amount": ...}, MalformedEvent, "missing required field `amount`"),
        ({"payload__surprise": 1}, MalformedEvent, "unknown field `surprise`"),
        ({"version": 99}, MalformedEvent, "schema version 99 is not supported"),
        ({"id": "short"}, MalformedEvent, "is not a ULID"),
        ({"key": ...}, MalformedEvent, "missing required field `key`"),
        ({"occurred_at": "2026-01-01T00:00:00"}, MalformedEvent, "no timezone"),
    ],
)
def test_bad_events_are_rejected_with_a_reason(
    changes: dict[str, Any], error: type[Exception], says: str
) -> None:
    with pytest.raises(error) as info:
        decode(_bet_json(**changes))
    assert says in str(info.value)


def test_not_json_is_rejected() -> None:
    with pytest.raises(MalformedEvent, match="malformed event envelope"):
        decode(b"\x00not json")


def test_encode_refuses_mismatched_payloads() -> None:
    payload = bet_placed()
    event = new_event(payload, key="p", producer="t")
    forged = Envelope(
        id=event.id,
        type="wallet.win_settled",
        key="p",
        occurred_at=event.occurred_at,
        producer="t",
        version=1,
        payload=payload,
    )
    with pytest.raises(MalformedEvent, match="expected WinSettled"):
        encode(forged)


def test_new_event_requires_a_key_and_an_aware_time() -> None:
    payload = bet_placed()
    with pytest.raises(MalformedEvent, match="partition key"):
        new_event(payload, key="", producer="t")
    with pytest.raises(MalformedEvent, match="timezone-aware"):
        new_event(payload, key="p", producer="t", occurred_at=datetime(2026, 1, 1))
