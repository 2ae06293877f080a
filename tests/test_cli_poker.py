"""``ludex poker verify`` and ``ludex poker replay``: output, JSON and exit codes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from typer.testing import CliRunner

from ludex.cli_poker import poker_app
from ludex.poker.record import dumps_records
from tests.poker.test_record import make_chain, reseal

runner = CliRunner()
DATA = Path(__file__).parent / "poker" / "data"


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(poker_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_verify_an_honest_chain(tmp_path: Path) -> None:
    path = tmp_path / "table.jsonl"
    path.write_text(dumps_records(make_chain(3)))
    code, out, _ = _invoke("verify", str(path))
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("OK    #0 hand table-7/0: 14 cards match the committed deck")
    assert lines[-1] == "3 verified, 0 failed"


def test_verify_a_single_record_file(tmp_path: Path) -> None:
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(make_chain(1)[0].to_json(), indent=2))
    code, out, _ = _invoke("verify", str(path))
    assert code == 0
    assert out.splitlines()[-1] == "1 verified, 0 failed"


def test_verify_explains_a_tampered_card_and_exits_1(tmp_path: Path) -> None:
    chain = make_chain(3)
    dealt = list(chain[1].dealt)
    dealt[0] = replace(dealt[0], card="As" if dealt[0].card != "As" else "Ks")
    chain[1] = reseal(chain[1], dealt=tuple(dealt))
    path = tmp_path / "table.jsonl"
    path.write_text(dumps_records(chain))
    code, out, _ = _invoke("verify", str(path))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("OK ")
    assert lines[1].startswith("FAIL  #1 hand table-7/1: ")
    assert "card 0 dealt to seat 2 was" in lines[1]
    assert "links to previous hash" in lines[2]  # resealing hand 1 broke hand 2's link
    assert lines[-1] == "1 verified, 2 failed"


def test_verify_json(tmp_path: Path) -> None:
    chain = make_chain(2)
    chain[1] = replace(chain[1], record_hash="0" * 64)
    path = tmp_path / "table.jsonl"
    path.write_text(dumps_records(chain))
    code, out, _ = _invoke("verify", str(path), "--json")
    assert code == 1
    body = json.loads(out)
    assert body["ok"] is False
    assert [r["ok"] for r in body["records"]] == [True, False]
    assert "changed after it was sealed" in body["records"][1]["reason"]


def test_verify_a_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    path.write_text("{not json\n")
    code, _, err = _invoke("verify", str(path))
    assert code == 1
    assert "line 1: not JSON" in err


def test_replay_prints_stacks_deltas_pots_and_agreement() -> None:
    code, out, _ = _invoke("replay", str(DATA / "wsop-2023-43-5-hand-31.phh"))
    assert code == 0
    assert out.splitlines()[0] == "PO, 5 players (complete)"
    assert "main pot: 300000 to p1 150000, p2 150000" in out
    assert "rake: 0" in out
    assert out.rstrip().endswith("finishing stacks agree with the file")


def test_replay_json_is_machine_readable() -> None:
    code, out, _ = _invoke("replay", str(DATA / "dwan-ivey-2009.phh"), "--json")
    assert code == 0
    body = json.loads(out)
    assert body["complete"] is True
    assert body["agrees_with_file"] is True
    assert [p["finishing_stack"] for p in body["players"]] == [572100, 1997500, 1109500]
    assert [p["delta"] for p in body["players"]] == [-553500, -2500, 556000]
    assert body["players"][2]["name"] == "Tom Dwan"
    assert body["pots"] == [{"pot": 0, "amount": 1109500, "winners": ["p3"], "shares": [1109500]}]
    assert body["rake"] == 0


def test_replay_exits_1_and_names_the_differing_player(tmp_path: Path) -> None:
    text = (DATA / "wsop-2023-43-5-hand-02.phh").read_text()
    path = tmp_path / "wrong.phh"
    path.write_text(text.replace("4115000, 8765000", "4115000, 8765001"))
    code, out, err = _invoke("replay", str(path))
    assert code == 1
    assert "DIFFERS (file: 8765001)" in out
    assert "p3: the file's finishing stack is 8765001, ludex ends with 8765000 (-1)" in err


def test_replay_rejects_an_illegal_action_with_its_index(tmp_path: Path) -> None:
    text = (DATA / "wsop-2023-43-5-hand-03.phh").read_text()
    path = tmp_path / "illegal.phh"
    path.write_text(text.replace('"p5 cbr 700000"', '"p5 cbr 300000"'))
    code, _, err = _invoke("replay", str(path))
    assert code == 1
    assert "actions[19] 'p5 cbr 300000': bet/raise to 300000 is below the minimum" in err
    code, out, _ = _invoke("replay", str(path), "--json")
    assert code == 1
    error = json.loads(out)["error"]
    assert error["index"] == 19
    assert error["action"] == "p5 cbr 300000"
    assert "below the minimum of 450000" in error["reason"]


def test_replay_reports_malformed_phh(tmp_path: Path) -> None:
    path = tmp_path / "bad.phh"
    path.write_text('variant = "NT"\n')
    code, _, err = _invoke("replay", str(path))
    assert code == 1
    assert "missing required field 'starting_stacks'" in err


def test_every_command_has_help() -> None:
    for args in (["--help"], ["verify", "--help"], ["replay", "--help"]):
        code, out, _ = _invoke(*args)
        assert code == 0
        assert "Usage" in out


def test_verify_a_chain_of_engine_hands(tmp_path: Path) -> None:
    from tests.poker.test_record import engine_chain

    path = tmp_path / "table.jsonl"
    path.write_text(dumps_records(engine_chain(5)))
    code, out, _ = _invoke("verify", str(path))
    assert code == 0, out
    assert out.splitlines()[-1] == "5 verified, 0 failed"
