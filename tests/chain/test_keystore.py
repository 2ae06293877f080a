"""The operator keystore and its signer: it signs, and the key shows up nowhere.

Keystores are written with a light scrypt work factor (DEVNET_SCRYPT_N) so the tests
stay fast; one test checks the default (eth-account's) factor once.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import stat
import traceback
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from structlog.testing import capture_logs
from typer.testing import CliRunner

from ludex.chain.keystore import DEVNET_SCRYPT_N, KeystoreSigner, new_keystore, read_password
from ludex.chain.settlement import NATIVE, ZERO_RECORD, Hand, sign_settlement, typed_data
from ludex.cli import app
from ludex.config import load_settings
from ludex.errors import ChainError, ConfigError

PASSWORD = "correct horse battery staple"
KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318")
ADDRESS = Account.from_key(KEY).address


def _secrets() -> list[str]:
    """Every spelling of the key (and the password) that must never appear."""
    return [KEY.hex(), KEY.hex().upper(), "0x" + KEY.hex(), PASSWORD, str(list(KEY))[1:30]]


def _clean(text: str) -> None:
    for secret in _secrets():
        assert secret not in text, "secret material leaked"


@pytest.fixture
def keystore(tmp_path: Path) -> Path:
    path = tmp_path / "operator.json"
    assert new_keystore(path, PASSWORD, private_key=KEY, scrypt_n=DEVNET_SCRYPT_N) == ADDRESS
    return path


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return path


def _hand() -> Hand:
    return Hand(
        table_id=1,
        hand_number=1,
        token=NATIVE,
        commitment=b"\x11" * 32,
        previous_record=ZERO_RECORD,
        rake=2,
        players=(ADDRESS, "0x000000000000000000000000000000000000dEaD"),
        deltas=(8, -10),
    )


def test_new_keystore_is_private_and_never_overwritten(keystore: Path) -> None:
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    data = json.loads(keystore.read_text())
    assert data["version"] == 3
    assert data["crypto"]["kdf"] == "scrypt"
    _clean(keystore.read_text())
    with pytest.raises(ConfigError, match="exists"):
        new_keystore(keystore, PASSWORD, scrypt_n=DEVNET_SCRYPT_N)
    with pytest.raises(ConfigError, match="non-empty password"):
        new_keystore(keystore.with_name("other.json"), "")


def test_default_work_factor_is_eth_accounts(tmp_path: Path) -> None:
    path = tmp_path / "strong.json"
    address = new_keystore(path, PASSWORD)
    assert json.loads(path.read_text())["crypto"]["kdfparams"]["n"] == 2**18
    assert KeystoreSigner.from_file(path, PASSWORD).address == address


async def test_signs_typed_data_and_transactions_like_eth_account(keystore: Path) -> None:
    signer = KeystoreSigner.from_file(keystore, PASSWORD)
    assert signer.address == ADDRESS
    contract = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    data = typed_data(31337, contract, 7, [_hand()])
    signature = await signer.sign_typed_data(data)
    assert signature == sign_settlement(KEY, 31337, contract, 7, [_hand()])
    assert len(signature) == 65
    assert signature[64] in (27, 28)
    assert Account.recover_message(encode_typed_data(full_message=data), signature=signature) == (
        ADDRESS
    )
    tx = {
        "type": 2,
        "chainId": 31337,
        "nonce": 3,
        "gas": 21_000,
        "maxFeePerGas": 2 * 10**9,
        "maxPriorityFeePerGas": 10**9,
        "to": ADDRESS,
        "value": 1,
        "data": b"",
    }
    raw = await signer.sign_transaction(tx)
    assert Account.recover_transaction(raw) == ADDRESS


def test_wrong_password_says_so_and_nothing_else(keystore: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        KeystoreSigner.from_file(keystore, "not the password")
    message = str(caught.value)
    assert "wrong password or corrupt keystore" in message
    assert str(keystore) in message
    assert "not the password" not in message
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    _clean("".join(traceback.format_exception(caught.value)))


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "is not JSON"),
        ('{"version": 1}', "not an Ethereum keystore"),
        ("[]", "not an Ethereum keystore"),
    ],
)
def test_malformed_keystores_are_config_errors(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=expected):
        KeystoreSigner.from_file(path, PASSWORD)


def test_corrupt_keystore_is_refused(keystore: Path) -> None:
    data = json.loads(keystore.read_text())
    data["crypto"]["ciphertext"] = "00" * 32
    keystore.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="wrong password or corrupt keystore"):
        KeystoreSigner.from_file(keystore, PASSWORD)


def test_missing_keystore_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.json does not exist"):
        KeystoreSigner.from_file(tmp_path / "missing.json", PASSWORD)


def test_from_settings_prefers_the_password_file(keystore: Path, password_file: Path) -> None:
    settings = load_settings(
        operator_keystore=str(keystore),
        operator_password_file=str(password_file),
        operator_password="wrong one from the environment",
    )
    assert read_password(settings) == PASSWORD  # the trailing newline is not part of it
    assert KeystoreSigner.from_settings(settings).address == ADDRESS
    from_env = load_settings(operator_keystore=str(keystore), operator_password=PASSWORD)
    assert KeystoreSigner.from_settings(from_env).address == ADDRESS


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, "LUDEX_OPERATOR_KEYSTORE is not set"),
        ({"operator_keystore": "k.json"}, "no keystore password"),
        (
            {"operator_keystore": "k.json", "operator_password_file": "/nonexistent/pw"},
            "LUDEX_OPERATOR_PASSWORD_FILE: /nonexistent/pw does not exist",
        ),
    ],
)
def test_from_settings_says_what_is_missing(overrides: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        KeystoreSigner.from_settings(load_settings(**overrides))


def test_empty_password_file_is_refused(keystore: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n")
    settings = load_settings(operator_keystore=str(keystore), operator_password_file=str(empty))
    with pytest.raises(ConfigError, match="is empty"):
        KeystoreSigner.from_settings(settings)


async def test_the_key_never_appears_in_reprs_logs_or_errors(
    keystore: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        signer = KeystoreSigner.from_file(keystore, PASSWORD)
        logging.getLogger("test").info("signer %r %s", signer, signer)
        await signer.sign_typed_data(typed_data(1, ADDRESS, 1, [_hand()]))
        with pytest.raises(ChainError) as bad_tx:
            await signer.sign_transaction({"type": 2, "nonce": "not a number", "gas": 1})
        with pytest.raises(ChainError) as bad_data:
            await signer.sign_typed_data({"types": {}, "primaryType": "Nothing"})
    assert repr(signer) == str(signer) == f"KeystoreSigner({ADDRESS})"
    for text in (
        repr(signer),
        caplog.text,
        repr(logs),
        str(bad_tx.value),
        str(bad_data.value),
        "".join(traceback.format_exception(bad_tx.value)),
        "".join(traceback.format_exception(bad_data.value)),
    ):
        _clean(text)
    assert not hasattr(signer, "__dict__")  # no attribute bag to dump
    assert {"key", "private_key", "_private_key", "account"}.isdisjoint(dir(signer))
    with pytest.raises(TypeError, match="cannot be copied or pickled"):
        pickle.dumps(signer)
    with pytest.raises(TypeError, match="cannot be copied or pickled"):
        copy.copy(signer)
    with pytest.raises(TypeError, match="cannot be copied or pickled"):
        copy.deepcopy(signer)


def test_keystore_new_command(tmp_path: Path, password_file: Path) -> None:
    runner = CliRunner()
    path = tmp_path / "keys" / "operator.json"
    result = runner.invoke(
        app, ["chain", "keystore", "new", str(path), "--password-file", str(password_file)]
    )
    assert result.exit_code == 0, result.output
    made = json.loads(result.stdout)
    assert KeystoreSigner.from_file(path, PASSWORD).address == made["address"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = runner.invoke(
        app, ["chain", "keystore", "new", str(path), "--password-file", str(password_file)]
    )
    assert again.exit_code == 2
    assert "exists" in again.stderr
    prompted = tmp_path / "prompted.json"
    asked = runner.invoke(
        app, ["chain", "keystore", "new", str(prompted)], input=f"{PASSWORD}\n{PASSWORD}\n"
    )
    assert asked.exit_code == 0, asked.output
    assert PASSWORD not in asked.output  # hidden input is not echoed
    address = json.loads(asked.stdout.strip().splitlines()[-1])["address"]
    assert KeystoreSigner.from_file(prompted, PASSWORD).address == address


def test_deploy_with_a_wrong_password_says_so(keystore: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    result = CliRunner().invoke(
        app,
        [
            "chain",
            "deploy",
            "--rpc",
            "http://127.0.0.1:1",
            "--keystore",
            str(keystore),
            "--password-file",
            str(wrong),
        ],
    )
    assert result.exit_code == 2
    assert "wrong password or corrupt keystore" in result.stderr
    _clean(result.output)
