"""Provider request signing: HMAC-SHA256 over timestamp, nonce and the raw body.

A provider signs every request with its secret::

    X-Ludex-Provider:  the provider id
    X-Ludex-Timestamp: unix seconds (an integer)
    X-Ludex-Nonce:     8..128 characters [A-Za-z0-9._-], never used twice
    X-Ludex-Signature: hex(HMAC-SHA256(secret, timestamp + "\\n" + nonce + "\\n" + body))

where ``body`` is the exact bytes sent. :func:`check_request` checks the headers'
shape, the timestamp window and the signature (in constant time, with
``hmac.compare_digest``); whether the nonce was seen before is a question for the
KeyValue port and is asked by the service *after* the signature verified, so a
forger cannot burn a provider's nonces.

Pure: no I/O, no clock (the caller passes ``now``); this module must never log a
secret or a signature it computed.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ludex.wagering.models import Status

PROVIDER_HEADER: Final = "x-ludex-provider"
TIMESTAMP_HEADER: Final = "x-ludex-timestamp"
NONCE_HEADER: Final = "x-ludex-nonce"
SIGNATURE_HEADER: Final = "x-ludex-signature"
AUTH_HEADERS: Final = (PROVIDER_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER)

_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_NONCE = re.compile(r"^[A-Za-z0-9._-]{8,128}$")
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^[0-9a-fA-F]{64}$")

# The worked example of docs/provider-api.md; tests/wagering/test_signing.py checks that
# the document shows exactly these values and the signature they produce.
EXAMPLE_SECRET: Final = "whsec_3f9c1a7e5b2d4c6e8a0b1c2d3e4f5a6b"  # noqa: S105 - public doc example
EXAMPLE_TIMESTAMP: Final = "1735689600"
EXAMPLE_NONCE: Final = "b6f1c0d2-9e47-4a5b"
EXAMPLE_BODY: Final = (
    b'{"player_id":"p-1001","game_id":"starburst","round_id":"r-77",'
    b'"transaction_id":"tx-5001","amount":250,"currency":"CHIPS"}'
)


def valid_provider_id(value: str) -> bool:
    """Provider ids are lower-case slugs: ``[a-z0-9][a-z0-9._-]{0,63}``."""
    return bool(_PROVIDER.match(value))


def sign(secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    """The hex signature of one request."""
    message = timestamp.encode() + b"\n" + nonce.encode() + b"\n" + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class AuthHeaders:
    """The four auth headers, shape-checked."""

    provider: str
    timestamp: int
    timestamp_text: str
    nonce: str
    signature: str


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """Why a request was refused before reaching the wallet."""

    status: Status
    message: str


def parse_headers(headers: Mapping[str, str]) -> AuthHeaders | AuthFailure:
    """Read the auth headers (names case-insensitive if ``headers`` is); refuse bad shapes."""
    values = {name: headers.get(name) for name in AUTH_HEADERS}
    missing = [name for name, value in values.items() if not value]
    if missing:
        return AuthFailure(Status.INVALID_SIGNATURE, f"missing header(s): {', '.join(missing)}")
    provider = values[PROVIDER_HEADER] or ""
    timestamp = values[TIMESTAMP_HEADER] or ""
    nonce = values[NONCE_HEADER] or ""
    signature = values[SIGNATURE_HEADER] or ""
    if not _PROVIDER.match(provider):
        return AuthFailure(Status.INVALID_SIGNATURE, "X-Ludex-Provider is not a provider id")
    if not _TIMESTAMP.match(timestamp):
        return AuthFailure(Status.INVALID_SIGNATURE, "X-Ludex-Timestamp must be unix seconds")
    if not _NONCE.match(nonce):
        return AuthFailure(
            Status.INVALID_SIGNATURE, "X-Ludex-Nonce must be 8..128 characters [A-Za-z0-9._-]"
        )
    if not _SIGNATURE.match(signature):
        return AuthFailure(Status.INVALID_SIGNATURE, "X-Ludex-Signature must be 64 hex characters")
    return AuthHeaders(provider, int(timestamp), timestamp, nonce, signature.lower())


def check_request(
    auth: AuthHeaders, secret: str, body: bytes, *, now: float, window: float
) -> AuthFailure | None:
    """None if the timestamp is inside ``window`` seconds of ``now`` and the signature matches.

    The window applies both ways: a timestamp too far in the future is refused like a
    late one (a provider with a fast clock would otherwise sign requests that stay
    replayable for longer).
    """
    if abs(now - auth.timestamp) > window:
        return AuthFailure(
            Status.EXPIRED,
            f"timestamp {auth.timestamp} is more than {window:g}s from the wallet's clock; "
            "sync the clock (NTP) and sign again with a fresh nonce",
        )
    expected = sign(secret, auth.timestamp_text, auth.nonce, body)
    if not hmac.compare_digest(expected, auth.signature):
        return AuthFailure(Status.INVALID_SIGNATURE, "signature does not match the body")
    return None
