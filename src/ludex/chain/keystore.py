"""The operator key: an encrypted Ethereum keystore (v3 JSON) and the signer it opens.

:class:`KeystoreSigner` implements the :class:`~ludex.ports.signer.Signer` port with a
local key decrypted from a keystore file (eth-account's ``Account.decrypt``: scrypt or
PBKDF2, AES-128-CTR, MAC checked). The password comes from a secret file
(``LUDEX_OPERATOR_PASSWORD_FILE``, preferred: a mounted secret) or from
``LUDEX_OPERATOR_PASSWORD``. :func:`new_keystore` writes a new keystore with mode
0600 and never overwrites a file.

The decrypted key lives only inside the closures that sign with it: it is not an
attribute, ``repr`` and ``str`` show the address alone, the signer refuses to be
pickled or copied, and every error names the file and what to do but never the
password or the key. This module must never log, print or raise key material or the
password; it opens no network connection.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, NoReturn

from eth_account import Account
from eth_account.datastructures import SignedMessage
from eth_account.messages import SignableMessage, encode_typed_data
from eth_account.signers.local import LocalAccount

from ludex.config import Settings
from ludex.errors import ChainError, ConfigError

KEYSTORE_MODE: Final = 0o600
DEVNET_SCRYPT_N: Final = 2**12
"""A light scrypt work factor for throw-away devnet keystores (tests, ``ludex chain devnet``)."""


def _read_password_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"LUDEX_OPERATOR_PASSWORD_FILE: {path} does not exist; point it at the file "
            "holding the keystore password"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"LUDEX_OPERATOR_PASSWORD_FILE: cannot read {path} ({type(exc).__name__})"
        ) from None
    password = text.rstrip("\r\n")
    if not password:
        raise ConfigError(f"LUDEX_OPERATOR_PASSWORD_FILE: {path} is empty")
    return password


def read_password(settings: Settings) -> str:
    """The keystore password: from the password file if set, else the variable."""
    if settings.operator_password_file:
        return _read_password_file(settings.operator_password_file)
    if settings.operator_password is not None and settings.operator_password.get_secret_value():
        return settings.operator_password.get_secret_value()
    raise ConfigError(
        "no keystore password: set LUDEX_OPERATOR_PASSWORD_FILE (a file holding it, "
        "preferred) or LUDEX_OPERATOR_PASSWORD"
    )


def _refuse_copy(*_: object) -> NoReturn:
    raise TypeError("a KeystoreSigner cannot be copied or pickled: the key stays in memory")


class KeystoreSigner:
    """Signs with a key decrypted from an Ethereum keystore; shows only its address."""

    __slots__ = ("_address", "_sign_message", "_sign_transaction")

    def __init__(self, account: LocalAccount) -> None:
        self._address = str(account.address)
        # The account (and its key) is reachable only through these two closures.
        self._sign_message: Callable[[SignableMessage], SignedMessage] = account.sign_message
        self._sign_transaction: Callable[[dict[str, Any]], Any] = account.sign_transaction

    @classmethod
    def from_file(cls, path: str | Path, password: str) -> KeystoreSigner:
        """Decrypt the keystore at ``path``; ConfigError if it cannot be read or opened."""
        return cls(_decrypt(Path(path), password))

    @classmethod
    def from_settings(cls, settings: Settings) -> KeystoreSigner:
        """The signer of ``LUDEX_OPERATOR_KEYSTORE`` with the configured password."""
        if not settings.operator_keystore:
            raise ConfigError(
                "LUDEX_OPERATOR_KEYSTORE is not set; create a keystore with "
                "`ludex chain keystore new PATH` and point the variable at it"
            )
        return cls.from_file(settings.operator_keystore, read_password(settings))

    @property
    def address(self) -> str:
        return self._address

    async def sign_typed_data(self, data: dict[str, Any]) -> bytes:
        try:
            message = encode_typed_data(full_message=data)
        except (TypeError, ValueError, KeyError) as exc:
            raise ChainError(f"typed data cannot be encoded: {type(exc).__name__}") from None
        return bytes(self._sign_message(message).signature)

    async def sign_transaction(self, tx: dict[str, Any]) -> bytes:
        try:
            signed = self._sign_transaction(tx)
        except (TypeError, ValueError, KeyError) as exc:
            # eth-account's messages describe the transaction fields, never the key.
            raise ChainError(f"transaction cannot be signed: {exc}") from None
        return bytes(signed.raw_transaction)

    def __repr__(self) -> str:
        return f"KeystoreSigner({self._address})"

    __str__ = __repr__
    __reduce__ = __reduce_ex__ = __copy__ = __deepcopy__ = _refuse_copy


def _decrypt(path: Path, password: str) -> LocalAccount:
    try:
        keyfile = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"LUDEX_OPERATOR_KEYSTORE: {path} does not exist; create one with "
            "`ludex chain keystore new PATH`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"LUDEX_OPERATOR_KEYSTORE: cannot read {path} ({type(exc).__name__})"
        ) from None
    except ValueError:
        raise ConfigError(f"LUDEX_OPERATOR_KEYSTORE: {path} is not JSON") from None
    if not isinstance(keyfile, dict) or keyfile.get("version") != 3 or "crypto" not in keyfile:
        raise ConfigError(
            f"LUDEX_OPERATOR_KEYSTORE: {path} is not an Ethereum keystore (version 3 JSON)"
        )
    try:
        account: LocalAccount = Account.from_key(Account.decrypt(keyfile, password))
        return account
    except Exception:  # whatever failed (MAC, cipher, format), say only what is safe to say
        raise ConfigError(
            f"LUDEX_OPERATOR_KEYSTORE: cannot decrypt {path}: wrong password or corrupt keystore"
        ) from None


def new_keystore(
    path: str | Path,
    password: str,
    *,
    private_key: bytes | None = None,
    scrypt_n: int | None = None,
) -> str:
    """Write a new keystore (a fresh key unless one is given) with mode 0600; its address.

    ``scrypt_n`` lowers the work factor (``DEVNET_SCRYPT_N`` for devnets); the default
    is eth-account's (2**18). Refuses to overwrite an existing file.
    """
    if not password:
        raise ConfigError("a keystore needs a non-empty password")
    target = Path(path)
    account = Account.from_key(private_key) if private_key is not None else Account.create()
    keyfile = Account.encrypt(account.key, password, kdf="scrypt", iterations=scrypt_n)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEYSTORE_MODE)
    except FileExistsError:
        raise ConfigError(
            f"{target} exists; choose another path (keystores are never overwritten)"
        ) from None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(keyfile, out)
    return str(account.address)
