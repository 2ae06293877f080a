"""``ludex bench realtime`` on a tiny load: real uvicorn servers (ludex's stream and
python-socketio) in their own processes, real WebSocket clients in others.

No timing is asserted. These tests check the JSON: its shape, and that every
subscriber of every channel received every message published to it, once, in order.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from ludex.bench import realtime
from ludex.cli import app

SMALL = realtime.Options(
    subscribers=(12,),
    tables=3,
    messages=7,
    client_processes=2,
    bot_tables=2,
    bot_players=2,
    bot_seconds=3.0,
    bot_think_ms=(20.0, 0.0),
)


def _check_run(entry: dict[str, Any], subscribers: int, channels: int, messages: int) -> None:
    assert "failed" not in entry, entry
    assert entry["subscribers"] == subscribers
    assert entry["channels"] == channels
    assert entry["messages_per_channel"] == messages
    assert entry["expected"] == entry["delivered"] == subscribers * messages
    assert entry["subscribers_complete_in_order"] == subscribers
    assert entry["all_in_order"] is True
    assert entry["delivered_per_s"] > 0
    latency = entry["latency"]
    assert latency["samples"] == subscribers * messages
    assert 0 <= latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    assert entry["cpu_seconds"]["server"] > 0


async def test_every_subscriber_gets_every_message_in_order() -> None:
    result = await realtime.run(SMALL)
    assert result["benchmark"] == "realtime"
    assert result["machine"]["cpus"] >= 1
    assert result["note"]
    json.dumps(result)  # printable as it is
    assert set(result["backends"]) == {"ludex", "python-socketio"}
    names = {"one_channel_12": 1, "3_tables_12": 3}
    for kind in realtime.KINDS:
        backend = result["backends"][kind]
        assert "failed" not in backend, backend
        assert set(backend["scenarios"]) == set(names)
        for name, channels in names.items():
            _check_run(backend["scenarios"][name], 12, channels, 7)
    ours = result["backends"]["ludex"]["scenarios"]
    assert all(entry["slow_consumers_dropped"] == 0 for entry in ours.values())
    for name in names:
        row = result["comparison"][name]
        assert row["ludex_over_socketio"] > 0
        assert set(row["goals_met"]) == {"delivered_per_s", "p99_ms", "ahead_of_peer"}
    assert result["file_descriptors"]["soft"] >= result["file_descriptors"]["needed"]
    runs = result["action_to_broadcast"]
    assert set(runs) == {"think_20ms", "think_0ms"}, runs
    for name, bots in runs.items():
        assert bots["tables"] == 2
        assert bots["think_ms"] == (20.0 if name == "think_20ms" else 0.0)
        assert bots["actions"] > 0
        assert bots["hands"] > 0
        assert bots["actions_per_s"] == pytest.approx(bots["actions"] / bots["seconds"], rel=0.01)
        timing = bots["action_to_broadcast_ms"]
        assert 0 < timing["p50"] <= timing["p99"] <= timing["max"]
        assert bots["server_cpu_s"] > 0
        assert bots["server_cpu_ms_per_action"] > 0
    # The goal is judged only where the bots think, as players do.
    assert "meets_goal" in runs["think_20ms"]
    assert "meets_goal" not in runs["think_0ms"]
    # Thinking bots act less often than bots that answer at once.
    assert runs["think_20ms"]["actions_per_s"] < runs["think_0ms"]["actions_per_s"]


def test_scenarios_follow_the_options() -> None:
    defaults = realtime.Options().scenarios()
    assert [(s.subscribers, s.channels) for s in defaults] == [(1000, 1), (5000, 1), (5000, 500)]
    assert [s.messages for s in defaults] == [200, 40, 40]  # 200,000 deliveries each
    assert defaults[2].channel_names()[:2] == ["table:0", "table:1"]
    assert len(set(defaults[2].channel_names())) == 500
    no_tables = realtime.Options(subscribers=(10,), tables=0).scenarios()
    assert [(s.subscribers, s.channels) for s in no_tables] == [(10, 1)]


@pytest.mark.usefixtures("logging_restored")
def test_cli_prints_json() -> None:
    args = ["bench", "realtime", "--subscribers", "5", "--tables", "0", "--messages", "4"]
    bots = ["--bot-tables", "1", "--bot-players", "2", "--bot-seconds", "2", "--bot-think-ms", "5"]
    result = CliRunner().invoke(app, [*args, *bots, "--no-peer", "--client-processes", "1"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["benchmark"] == "realtime"
    assert set(printed["backends"]) == {"ludex"}
    _check_run(printed["backends"]["ludex"]["scenarios"]["one_channel_5"], 5, 1, 4)
    runs = printed["action_to_broadcast"]
    assert set(runs) == {"think_5ms"}, runs
    assert (runs["think_5ms"]["tables"], runs["think_5ms"]["players_per_table"]) == (1, 2)
