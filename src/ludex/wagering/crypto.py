"""Provider secrets at rest: AES-256-GCM with the key from ``LUDEX_SECRETS_KEY``.

A stored secret is ``nonce (12 bytes) || ciphertext+tag``, with the provider id as
associated data, so a ciphertext copied onto another provider's row does not
decrypt. Without ``LUDEX_SECRETS_KEY`` (allowed outside production only; the
settings refuse to start in production without it) a fixed, public, local-only key
is used: secrets are then obfuscated, not protected.

No I/O; this module must never log or put a secret or the key in an error message.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

from ludex.errors import ProviderSecretError

NONCE_BYTES: Final = 12
LOCAL_ONLY_KEY: Final = hashlib.sha256(b"ludex local-only secrets key, not a secret").digest()


def new_key() -> str:
    """A fresh ``LUDEX_SECRETS_KEY`` value (base64 of 32 random bytes)."""
    return base64.b64encode(os.urandom(32)).decode()


def new_provider_secret() -> str:
    """A fresh provider HMAC secret (256 bits, URL-safe text)."""
    return "whsec_" + secrets.token_urlsafe(32)


def key_bytes(setting: SecretStr | None) -> bytes:
    """The AES key from the setting (already validated by Settings), or the local-only key."""
    if setting is None:
        return LOCAL_ONLY_KEY
    return base64.b64decode(setting.get_secret_value())


def encrypt(key: bytes, provider_id: str, secret: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, secret.encode(), provider_id.encode())


def decrypt(key: bytes, provider_id: str, stored: bytes) -> str:
    """The plain secret; ProviderSecretError if the key (or the row) is not the one used."""
    nonce, ciphertext = stored[:NONCE_BYTES], stored[NONCE_BYTES:]
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, provider_id.encode()).decode()
    except (InvalidTag, ValueError):
        raise ProviderSecretError(
            f"provider {provider_id!r}: its stored secret does not decrypt with the current "
            "LUDEX_SECRETS_KEY; restore the key it was stored with or issue a new secret"
        ) from None
