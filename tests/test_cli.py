"""The `ludex` command: help everywhere, clear configuration errors, catalog tools."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from typer.main import get_command
from typer.testing import CliRunner

from ludex.cli import app
from ludex.events import encode, new_event
from tests.factories import bet_placed

runner = CliRunner()


def _commands() -> list[list[str]]:
    root = get_command(app)
    paths: list[list[str]] = [[]]
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        paths.append([name])
        for sub in getattr(command, "commands", {}):
            paths.append([name, sub])
    return paths


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "ludex")
def test_every_command_has_help(path: list[str]) -> None:
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("LUDEX_STORE_URL", "oracle://db/x"),
        ("LUDEX_ANALYTICS_URL", "duckdb://x"),
        ("LUDEX_BUS_URL", "rabbitmq://x"),
        ("LUDEX_CACHE_URL", "memcached://x"),
        ("LUDEX_CHAIN_URL", "ftp://node"),
    ],
)
def test_bad_port_url_stops_with_one_clear_line(env: str, value: str) -> None:
    result = runner.invoke(app, ["config", "check"], env={env: value})
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "ludex: configuration error"
    assert len(lines) == 2
    assert lines[1].startswith(f"{env}: '{value}' is not accepted; use ")


def test_config_show_hides_passwords() -> None:
    result = runner.invoke(
        app, ["config", "show"], env={"LUDEX_STORE_URL": "postgresql://u:s3cret@db:5432/x"}
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert shown["store_url"] == "postgresql://u:***@db:5432/x"
    assert "s3cret" not in result.stdout
    assert shown["jwt_secret"] == "**********"


def test_events_list_names_every_type() -> None:
    result = runner.invoke(app, ["events", "list", "--json"])
    assert result.exit_code == 0
    types = {e["type"] for e in json.loads(result.stdout)}
    assert {"wallet.bet_placed", "poker.hand_completed", "chain.log"} <= types


def test_events_validate_reports_each_bad_line(tmp_path: Path) -> None:
    good = encode(
        new_event(
            bet_placed(amount=1),
            key="p",
            producer="t",
        )
    )
    unknown = msgspec.json.decode(good)
    unknown["type"] = "wallet.nope"
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([good, msgspec.json.encode(unknown), b"{", good]) + b"\n")
    result = runner.invoke(app, ["events", "validate", str(path)])
    assert result.exit_code == 1
    assert "2 valid, 2 invalid" in result.stdout
    assert f"{path}:2: unknown event type 'wallet.nope'" in result.stderr
    assert f"{path}:3: malformed event envelope" in result.stderr


def test_unknown_service_is_refused() -> None:
    result = runner.invoke(app, ["serve", "nope"])
    assert result.exit_code == 2
    assert "unknown service 'nope'" in result.stderr
