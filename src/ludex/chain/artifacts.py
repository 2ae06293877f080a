"""Compiled contract artifacts: load the committed ones, or rebuild them from ``contracts/``.

The artifacts are JSON files written by ``scripts/compile-contracts.mjs`` (solc-js pinned in
package.json) into :data:`ARTIFACTS_DIR`, inside the package so they ship with the wheel.
Loading one needs neither node nor solc; :func:`compile_contracts` does, and only works from
a source checkout (the script and ``node_modules`` are not in the wheel).

Loading is pure file reading; compiling runs node as a subprocess, never through a shell.
Nothing here touches the network or a chain node.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ludex.errors import ChainError

REPO_ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS_DIR = Path(__file__).resolve().parent / "artifacts"
SOURCES_DIR = REPO_ROOT / "contracts"
COMPILE_SCRIPT = REPO_ROOT / "scripts" / "compile-contracts.mjs"
SOLC_PACKAGE = REPO_ROOT / "node_modules" / "solc" / "package.json"
MANIFEST = "manifest.json"
COMPILE_TIMEOUT = 600.0

_CONTRACT_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


@dataclass(frozen=True, slots=True)
class Artifact:
    """One deployable contract as solc compiled it."""

    name: str
    source_name: str
    abi: list[dict[str, Any]]
    bytecode: bytes
    deployed_bytecode: bytes
    compiler_version: str


def available_artifacts(directory: Path | None = None) -> list[str]:
    """The contract names that have an artifact in ``directory``, sorted."""
    folder = ARTIFACTS_DIR if directory is None else directory
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.json") if p.name != MANIFEST)


def _available(directory: Path) -> str:
    names = available_artifacts(directory)
    return ", ".join(names) if names else "none; run `ludex chain compile`"


def _hex_code(data: dict[str, Any], key: str, name: str) -> bytes:
    value = data.get(key)
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ChainError(f"artifact {name}: {key} is not 0x-hex")
    if "__$" in value:
        raise ChainError(
            f"artifact {name}: {key} needs library linking, which ludex does not do; "
            "make the library's functions internal"
        )
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise ChainError(f"artifact {name}: {key} is not 0x-hex") from None


@functools.cache
def load_artifact(name: str, directory: Path | None = None) -> Artifact:
    """The artifact of contract ``name`` (from :data:`ARTIFACTS_DIR` unless ``directory``).

    Raises :class:`ChainError` naming the available contracts when there is no such
    artifact, and saying what is wrong when the file is malformed.
    """
    folder = ARTIFACTS_DIR if directory is None else directory
    path = folder / f"{name}.json"
    if not _CONTRACT_NAME.fullmatch(name) or name == Path(MANIFEST).stem or not path.is_file():
        raise ChainError(
            f"no artifact for contract {name!r} in {folder}; available: {_available(folder)}"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChainError(f"artifact {name}: cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ChainError(f"artifact {name}: {path} does not hold a JSON object")
    if data.get("contractName") != name:
        raise ChainError(
            f"artifact {name}: {path} is for contract {data.get('contractName')!r}; "
            "run `ludex chain compile`"
        )
    abi = data.get("abi")
    if not isinstance(abi, list) or not all(isinstance(item, dict) for item in abi):
        raise ChainError(f"artifact {name}: abi is not a list of objects")
    source_name = data.get("sourceName")
    compiler = data.get("compiler")
    version = compiler.get("version") if isinstance(compiler, dict) else None
    if not isinstance(source_name, str) or not isinstance(version, str):
        raise ChainError(f"artifact {name}: sourceName or compiler.version is missing")
    bytecode = _hex_code(data, "bytecode", name)
    if not bytecode:
        raise ChainError(f"artifact {name}: bytecode is empty (an interface or abstract contract)")
    return Artifact(
        name=name,
        source_name=source_name,
        abi=abi,
        bytecode=bytecode,
        deployed_bytecode=_hex_code(data, "deployedBytecode", name),
        compiler_version=version,
    )


def compile_contracts(
    *, check: bool = False, sources: Path | None = None, out: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``scripts/compile-contracts.mjs`` (``--check`` compares instead of writing).

    Returns the finished process (exit 0 ok, 1 compiler error or mismatch, 2 bad usage);
    raises :class:`ChainError` when node, solc-js or the script is missing.
    """
    node = shutil.which("node")
    if node is None:
        raise ChainError("node is not on PATH; install Node.js 20+ and run `make install`")
    if not COMPILE_SCRIPT.is_file():
        raise ChainError(f"{COMPILE_SCRIPT} is missing; compiling needs a ludex source checkout")
    if not SOLC_PACKAGE.is_file():
        raise ChainError(
            f"solc-js is not installed in {REPO_ROOT / 'node_modules'}; run `make install`"
        )
    command = [
        node,
        str(COMPILE_SCRIPT),
        "--sources",
        str((SOURCES_DIR if sources is None else sources).resolve()),
        "--out",
        str((ARTIFACTS_DIR if out is None else out).resolve()),
    ]
    if check:
        command.append("--check")
    try:
        result = subprocess.run(  # noqa: S603 - fixed argv, no shell
            command,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=COMPILE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ChainError(f"compiling the contracts took over {COMPILE_TIMEOUT:.0f}s") from None
    except OSError as exc:
        raise ChainError(f"cannot run node: {exc}") from None
    if not check:
        load_artifact.cache_clear()
    return result
