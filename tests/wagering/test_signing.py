"""Pure signing rules, the documented worked example, and secrets at rest."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from ludex.errors import ProviderSecretError
from ludex.wagering import crypto
from ludex.wagering.models import Status
from ludex.wagering.signing import (
    EXAMPLE_BODY,
    EXAMPLE_NONCE,
    EXAMPLE_SECRET,
    EXAMPLE_TIMESTAMP,
    AuthFailure,
    AuthHeaders,
    check_request,
    parse_headers,
    sign,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "provider-api.md"


def _doc_value(text: str, name: str) -> str:
    match = re.search(rf"^{name}:\s+(.+)$", text, re.MULTILINE)
    assert match, f"docs/provider-api.md has no '{name}:' line in the worked example"
    return match.group(1).strip()


def test_the_documented_example_signature_is_right() -> None:
    text = DOC.read_text(encoding="utf-8")
    secret, timestamp = _doc_value(text, "secret"), _doc_value(text, "timestamp")
    nonce, body = _doc_value(text, "nonce"), _doc_value(text, "body").encode()
    assert (secret, timestamp, nonce, body) == (
        EXAMPLE_SECRET,
        EXAMPLE_TIMESTAMP,
        EXAMPLE_NONCE,
        EXAMPLE_BODY,
    )
    expected = sign(secret, timestamp, nonce, body)
    assert f"\n{expected}\n" in text
    auth = parse_headers(
        {
            "x-ludex-provider": "acme",
            "x-ludex-timestamp": timestamp,
            "x-ludex-nonce": nonce,
            "x-ludex-signature": expected,
        }
    )
    assert isinstance(auth, AuthHeaders)
    assert check_request(auth, secret, body, now=float(timestamp), window=30) is None


def _auth(**override: str) -> AuthHeaders | AuthFailure:
    headers = {
        "x-ludex-provider": "acme",
        "x-ludex-timestamp": "1000",
        "x-ludex-nonce": "nonce-0001",
        "x-ludex-signature": sign("s3cret", "1000", "nonce-0001", b"{}"),
    }
    headers.update(override)
    return parse_headers(headers)


def test_window_is_symmetric_and_inclusive() -> None:
    auth = _auth()
    assert isinstance(auth, AuthHeaders)
    for now in (970.0, 1000.0, 1030.0):
        assert check_request(auth, "s3cret", b"{}", now=now, window=30) is None
    for now in (969.0, 1031.0):
        failure = check_request(auth, "s3cret", b"{}", now=now, window=30)
        assert failure is not None
        assert failure.status is Status.EXPIRED


def test_any_changed_byte_breaks_the_signature() -> None:
    auth = _auth()
    assert isinstance(auth, AuthHeaders)
    for secret, body in (("s3cret", b"{ }"), ("s3creT", b"{}")):
        failure = check_request(auth, secret, body, now=1000, window=30)
        assert failure is not None
        assert failure.status is Status.INVALID_SIGNATURE
    other_nonce = _auth(**{"x-ludex-nonce": "nonce-0002"})
    assert isinstance(other_nonce, AuthHeaders)
    assert check_request(other_nonce, "s3cret", b"{}", now=1000, window=30) is not None
    # Leading zeros are part of the signed text: the header is signed as sent.
    padded = _auth(**{"x-ludex-timestamp": "01000"})
    assert isinstance(padded, AuthHeaders)
    assert check_request(padded, "s3cret", b"{}", now=1000, window=30) is not None


@pytest.mark.parametrize(
    "override",
    [
        {"x-ludex-provider": ""},
        {"x-ludex-provider": "Has Space"},
        {"x-ludex-timestamp": "-5"},
        {"x-ludex-timestamp": "1e3"},
        {"x-ludex-nonce": "short"},
        {"x-ludex-nonce": "bad nonce with spaces"},
        {"x-ludex-signature": "xyz"},
        {"x-ludex-signature": "a" * 63},
    ],
)
def test_malformed_headers_are_refused(override: dict[str, str]) -> None:
    failure = _auth(**override)
    assert isinstance(failure, AuthFailure)
    assert failure.status is Status.INVALID_SIGNATURE


def test_secrets_are_encrypted_and_bound_to_their_provider() -> None:
    key = crypto.key_bytes(SecretStr(crypto.new_key()))
    stored = crypto.encrypt(key, "acme", "whsec_abc")
    assert b"whsec_abc" not in stored
    assert crypto.decrypt(key, "acme", stored) == "whsec_abc"
    with pytest.raises(ProviderSecretError):
        crypto.decrypt(key, "other", stored)
    with pytest.raises(ProviderSecretError, match="LUDEX_SECRETS_KEY"):
        crypto.decrypt(crypto.LOCAL_ONLY_KEY, "acme", stored)


def test_settings_refuse_production_without_a_secrets_key() -> None:
    from ludex.config import load_settings
    from ludex.errors import ConfigError

    production = {
        "environment": "production",
        "jwt_secret": "x" * 32,
        "chain_url": "https://rpc.example.org",
    }
    with pytest.raises(ConfigError, match="LUDEX_SECRETS_KEY"):
        load_settings(**production)
    assert load_settings(**production, secrets_key=crypto.new_key()).secrets_key is not None
    with pytest.raises(ConfigError, match="expected 32"):
        load_settings(secrets_key="c2hvcnQ=")
    with pytest.raises(ConfigError, match="LUDEX_ADMIN_TOKEN"):
        load_settings(admin_token="short")
