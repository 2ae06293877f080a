"""The offline Solidity pipeline: scripts/compile-contracts.mjs, its artifacts and loader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ludex.chain.artifacts import (
    ARTIFACTS_DIR,
    SOLC_PACKAGE,
    Artifact,
    compile_contracts,
    load_artifact,
)
from ludex.cli import app
from ludex.errors import ChainError

COUNTER = """// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.28;

interface ICounter {
    function count() external view returns (uint256);
}

contract Counter is ICounter {
    uint256 public count;

    function bump() external {
        count += 1;
    }
}
"""

USER = """// SPDX-License-Identifier: UNLICENSED
pragma solidity 0.8.28;

import {Counter} from "../lib/Counter.sol";

contract CounterUser {
    Counter public immutable counter;

    constructor() {
        counter = new Counter();
    }
}
"""


@pytest.fixture(autouse=True)
def _needs_solc() -> None:
    if shutil.which("node") and SOLC_PACKAGE.is_file():
        return
    reason = "node or node_modules/solc is missing: run `make install`"
    if os.environ.get("LUDEX_REQUIRE_SERVICES") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    root = tmp_path / "somewhere" / "src"
    (root / "lib").mkdir(parents=True)
    (root / "test").mkdir()
    (root / "lib" / "Counter.sol").write_text(COUNTER)
    (root / "test" / "CounterUser.sol").write_text(USER)
    return root


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def test_compile_writes_one_artifact_per_deployable_contract(sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = compile_contracts(sources=sources, out=out)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "Counter.json",
        "CounterUser.json",
        "manifest.json",
    ]  # the interface has no bytecode, so no artifact

    counter = json.loads((out / "Counter.json").read_text())
    assert counter["contractName"] == "Counter"
    assert counter["sourceName"] == "contracts/lib/Counter.sol"
    assert counter["compiler"]["version"].startswith("0.8.28+")
    assert counter["compiler"]["settings"]["optimizer"] == {"enabled": True, "runs": 20000}
    assert counter["compiler"]["settings"]["evmVersion"] == "cancun"
    assert {item["name"] for item in counter["abi"]} == {"count", "bump"}
    for key in ("bytecode", "deployedBytecode"):
        assert counter[key].startswith("0x")
        assert len(counter[key]) > 100
        bytes.fromhex(counter[key][2:])
    text = (out / "Counter.json").read_text()
    assert text.endswith("}\n")
    assert text == json.dumps(counter, indent=2, sort_keys=True) + "\n"

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["contracts"] == {
        "Counter": "contracts/lib/Counter.sol",
        "CounterUser": "contracts/test/CounterUser.sol",
    }
    assert set(manifest["sources"]) == {
        "contracts/lib/Counter.sol",
        "contracts/test/CounterUser.sol",
    }
    assert manifest["sources"]["contracts/lib/Counter.sol"] == counter["sourceSha256"]


def test_compile_is_deterministic_whatever_the_directory(sources: Path, tmp_path: Path) -> None:
    first, second, moved = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert compile_contracts(sources=sources, out=first).returncode == 0
    assert compile_contracts(sources=sources, out=second).returncode == 0
    elsewhere = shutil.copytree(sources, tmp_path / "elsewhere" / "contracts")
    assert compile_contracts(sources=elsewhere, out=moved).returncode == 0
    assert _snapshot(first) == _snapshot(second) == _snapshot(moved)


def test_check_passes_then_names_what_differs_and_what_is_stale(
    sources: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert compile_contracts(sources=sources, out=out).returncode == 0
    before = _snapshot(out)

    ok = compile_contracts(check=True, sources=sources, out=out)
    assert ok.returncode == 0, ok.stderr
    assert "artifacts match the sources" in ok.stdout

    path = sources / "lib" / "Counter.sol"
    path.write_text(path.read_text().replace("count += 1;", "count += 2;"))
    (out / "Gone.json").write_text("{}\n")
    (out / "CounterUser.json").unlink()
    bad = compile_contracts(check=True, sources=sources, out=out)
    assert bad.returncode == 1
    assert "differs: Counter.json" in bad.stderr
    assert "missing: CounterUser.json" in bad.stderr
    assert "stale: Gone.json" in bad.stderr
    assert "artifacts match" not in bad.stdout
    after = _snapshot(out)
    assert after.pop("Gone.json") == b"{}\n"
    assert after == {k: v for k, v in before.items() if k != "CounterUser.json"}  # untouched

    assert compile_contracts(sources=sources, out=out).returncode == 0
    assert not (out / "Gone.json").exists()  # compiling removes stale artifacts
    assert (out / "CounterUser.json").exists()
    assert compile_contracts(check=True, sources=sources, out=out).returncode == 0


def test_syntax_error_fails_with_solc_message_and_writes_nothing(
    sources: Path, tmp_path: Path
) -> None:
    (sources / "Broken.sol").write_text("pragma solidity 0.8.28;\ncontract Broken { uint x }\n")
    out = tmp_path / "out"
    result = compile_contracts(sources=sources, out=out)
    assert result.returncode == 1
    assert "ParserError" in result.stderr
    assert "contracts/Broken.sol:2" in result.stderr
    assert not out.exists()


def test_same_contract_name_in_two_files_fails(sources: Path, tmp_path: Path) -> None:
    (sources / "Other.sol").write_text(
        COUNTER.replace("interface ICounter", "interface ICounter2").replace(
            "is ICounter", "is ICounter2"
        )
    )
    result = compile_contracts(sources=sources, out=tmp_path / "out")
    assert result.returncode == 1
    assert "contract Counter is defined in both" in result.stderr


def test_load_artifact_reads_a_compiled_contract(sources: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert compile_contracts(sources=sources, out=out).returncode == 0
    artifact = load_artifact("CounterUser", out)
    assert isinstance(artifact, Artifact)
    assert artifact.source_name == "contracts/test/CounterUser.sol"
    solc_0_8_28 = bytes.fromhex("64736f6c634300081c0033")  # CBOR metadata: "solc": 0.8.28
    assert artifact.bytecode.endswith(solc_0_8_28)
    assert artifact.deployed_bytecode.endswith(solc_0_8_28)
    assert len(artifact.deployed_bytecode) < len(artifact.bytecode)
    assert artifact.compiler_version.startswith("0.8.28+")
    assert [(item["type"], item.get("name")) for item in artifact.abi] == [
        ("constructor", None),
        ("function", "counter"),
    ]


def test_load_artifact_missing_names_the_available_ones(tmp_path: Path) -> None:
    (tmp_path / "Alpha.json").write_text("{}\n")
    (tmp_path / "Beta.json").write_text("{}\n")
    (tmp_path / "manifest.json").write_text("{}\n")
    with pytest.raises(ChainError, match=r"'Gamma'.*available: Alpha, Beta$"):
        load_artifact("Gamma", tmp_path)
    with pytest.raises(ChainError, match="available: Alpha, Beta"):
        load_artifact("manifest", tmp_path)
    with pytest.raises(ChainError, match="available: Alpha, Beta"):
        load_artifact("../Alpha", tmp_path)
    with pytest.raises(ChainError, match=r"artifact Alpha: .* is for contract None"):
        load_artifact("Alpha", tmp_path)


def test_load_artifact_rejects_malformed_bytecode(tmp_path: Path) -> None:
    body = {
        "abi": [],
        "bytecode": "0xzz",
        "compiler": {"version": "0.8.28"},
        "contractName": "Bad",
        "deployedBytecode": "0x",
        "sourceName": "contracts/Bad.sol",
    }
    (tmp_path / "Bad.json").write_text(json.dumps(body))
    with pytest.raises(ChainError, match="bytecode is not 0x-hex"):
        load_artifact("Bad", tmp_path)


def test_committed_artifacts_match_the_sources() -> None:
    result = compile_contracts(check=True)
    assert result.returncode == 0, (
        f"{result.stderr}\nthe committed artifacts in {ARTIFACTS_DIR} are out of date: "
        "run `ludex chain compile` and commit them"
    )
    assert "artifacts match the sources" in result.stdout


def test_compile_without_node_says_to_run_make_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ludex.chain.artifacts.shutil.which", lambda _name: None)
    with pytest.raises(ChainError, match="make install"):
        compile_contracts(check=True)


def test_cli_compile_echoes_the_script_and_exits_with_its_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[bool] = []

    def fake(*, check: bool = False) -> subprocess.CompletedProcess[str]:
        calls.append(check)
        return subprocess.CompletedProcess([], 1, stdout="", stderr="differs: Ludex.json\n")

    monkeypatch.setattr("ludex.chain.artifacts.compile_contracts", fake)
    result = CliRunner().invoke(app, ["chain", "compile", "--check"])
    assert calls == [True]
    assert result.exit_code == 1
    assert result.stderr == "differs: Ludex.json\n"
