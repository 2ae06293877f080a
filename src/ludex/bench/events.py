"""Envelope serialization: ludex (msgspec, validated) against pydantic v2 and stdlib json.

Every contender encodes the same envelopes to JSON bytes and decodes them back with
full validation of the payload schema (stdlib json validates nothing, so it is the
floor for "parse only"). Figures are operations per second, best of ``repeat``.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec
import pydantic

from ludex.bench._common import sample_events
from ludex.events import decode, encode


class _PydBet(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    player_id: str
    provider: str
    game_id: str
    round_id: str
    transaction_id: str
    amount: int
    currency: str
    balance_after: int


class _PydEnvelope(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    id: str
    type: str
    key: str
    occurred_at: datetime
    producer: str
    version: int
    payload: _PydBet


def _rate(fn: Callable[[], Any], count: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return count / best


def run(count: int = 20_000, repeat: int = 5) -> dict[str, Any]:
    envelopes = sample_events(count, keys=997)
    ours_bytes = [encode(e) for e in envelopes]
    pyd = [_PydEnvelope.model_validate(msgspec.to_builtins(e)) for e in envelopes]
    pyd_bytes = [p.model_dump_json().encode() for p in pyd]
    plain = [msgspec.to_builtins(e) for e in envelopes]
    plain_bytes = [json.dumps(p).encode() for p in plain]
    assert decode(ours_bytes[0]) == envelopes[0]
    assert _PydEnvelope.model_validate_json(pyd_bytes[0]) == pyd[0]

    results = {
        "ludex_msgspec": {
            "encode_per_s": _rate(lambda: [encode(e) for e in envelopes], count, repeat),
            "decode_validated_per_s": _rate(lambda: [decode(b) for b in ours_bytes], count, repeat),
            "bytes_per_event": sum(map(len, ours_bytes)) / count,
        },
        "pydantic_v2": {
            "encode_per_s": _rate(lambda: [p.model_dump_json() for p in pyd], count, repeat),
            "decode_validated_per_s": _rate(
                lambda: [_PydEnvelope.model_validate_json(b) for b in pyd_bytes], count, repeat
            ),
            "bytes_per_event": sum(map(len, pyd_bytes)) / count,
        },
        "stdlib_json_unvalidated": {
            "encode_per_s": _rate(lambda: [json.dumps(p) for p in plain], count, repeat),
            "decode_validated_per_s": _rate(
                lambda: [json.loads(b) for b in plain_bytes], count, repeat
            ),
            "bytes_per_event": sum(map(len, plain_bytes)) / count,
        },
    }
    for figures in results.values():
        for name in ("encode_per_s", "decode_validated_per_s"):
            figures[name] = round(figures[name])
        figures["bytes_per_event"] = round(figures["bytes_per_event"], 1)
    return {
        "benchmark": "events",
        "input": f"{count} wallet.bet_placed envelopes",
        "repeat": repeat,
        "python": platform.python_version(),
        "versions": {"msgspec": msgspec.__version__, "pydantic": pydantic.VERSION},
        "results": results,
    }
