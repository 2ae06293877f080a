"""Authentication and authorisation for the gateway.

Sign-In with Ethereum (EIP-4361) messages, short-lived JWT access tokens with rotating
refresh tokens, API keys, role/scope checks, and the FastAPI dependency that applies
them. Errors::

    LudexError
    ├── AuthError          credentials missing, malformed, expired, tampered or revoked (401)
    │   └── SiweError      a SIWE message is malformed (also a ValueError); names the line
    └── AccessDenied       authenticated, but the role, scope or client address is not allowed (403)

State (nonces, refresh tokens, the access-token deny list, API key records) lives in the
KeyValue port under ``auth:``; every one-time use is a single atomic KeyValue operation
(``delete`` or ``compare_and_set``) so two concurrent requests can never both win.

This module must never log, repr or raise a secret: the JWT signing secret, refresh
tokens and API key secrets only leave it as return values for their owner. Refresh
tokens and API keys are stored hashed (SHA-256 and argon2 respectively).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import json
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal
from urllib.parse import urlsplit

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import Argon2Error, InvalidHashError
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils.address import to_checksum_address
from fastapi import HTTPException, Request

from ludex.errors import ConfigError, LudexError
from ludex.ports.kv import KeyValue

Clock = Callable[[], float]
Role = Literal["player", "admin", "operator"]
ROLES: Final[frozenset[str]] = frozenset({"player", "admin", "operator"})

_ALGORITHM: Final = "HS256"
_KEY_PREFIX: Final = "ldx_"


class AuthError(LudexError):
    """Credentials are missing, malformed, expired, tampered with or revoked (HTTP 401)."""


class SiweError(AuthError, ValueError):
    """A Sign-In with Ethereum message is malformed; the message names the line."""


class AccessDenied(LudexError):
    """The caller is authenticated but lacks the role or scope, or its address is not
    on the allow-list (HTTP 403)."""


# --- Sign-In with Ethereum (EIP-4361), pure ------------------------------------------

_HEADER_SUFFIX: Final = " wants you to sign in with your Ethereum account:"
_DOMAIN = re.compile(r"^[^\s/?#]+$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_NONCE = re.compile(r"^[A-Za-z0-9]{8,}$")
_CHAIN_ID = re.compile(r"^[1-9][0-9]{0,19}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_MAX_MESSAGE: Final = 8192


@dataclass(frozen=True, slots=True)
class SiweMessage:
    """A parsed EIP-4361 message; ``address`` is EIP-55 checksummed."""

    domain: str
    address: str
    uri: str
    chain_id: int
    nonce: str
    issued_at: datetime
    expiration_time: datetime | None = None
    not_before: datetime | None = None
    statement: str | None = None
    request_id: str | None = None
    resources: tuple[str, ...] = ()


def _rfc3339(value: datetime, what: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise SiweError(f"{what} must be timezone-aware, got {value!r}")
    text = value.astimezone(UTC).isoformat()
    return text.removesuffix("+00:00") + "Z"


def siwe_message(
    domain: str,
    address: str,
    uri: str,
    chain_id: int,
    nonce: str,
    issued_at: datetime,
    expiration: datetime | None,
    *,
    statement: str | None = None,
    not_before: datetime | None = None,
    request_id: str | None = None,
    resources: Sequence[str] = (),
) -> str:
    """The exact EIP-4361 text a wallet signs; raises :class:`SiweError` on bad input.

    The text is checked by :func:`parse_siwe`, so whatever this builds also parses.
    """
    lines = [f"{domain}{_HEADER_SUFFIX}", address, ""]
    if statement is not None:
        lines += [statement, ""]
    else:
        lines.append("")
    lines += [
        f"URI: {uri}",
        "Version: 1",
        f"Chain ID: {chain_id}",
        f"Nonce: {nonce}",
        f"Issued At: {_rfc3339(issued_at, 'issued_at')}",
    ]
    if expiration is not None:
        lines.append(f"Expiration Time: {_rfc3339(expiration, 'expiration')}")
    if not_before is not None:
        lines.append(f"Not Before: {_rfc3339(not_before, 'not_before')}")
    if request_id is not None:
        lines.append(f"Request ID: {request_id}")
    if resources:
        lines.append("Resources:")
        lines += [f"- {r}" for r in resources]
    text = "\n".join(lines)
    parse_siwe(text)
    return text


def _bad(number: int, line: str, expected: str) -> SiweError:
    shown = line if len(line) <= 80 else line[:77] + "..."
    return SiweError(f"SIWE message line {number}: expected {expected}, got {shown!r}")


def _check_uri(value: str, number: int, line: str, what: str) -> str:
    if not value or any(c.isspace() for c in value) or not urlsplit(value).scheme:
        raise _bad(number, line, f"{what} to be an absolute URI")
    return value


def _parse_time(value: str, number: int, line: str) -> datetime:
    if not _DATETIME.match(value):
        raise _bad(number, line, "an RFC 3339 date-time with an offset")
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise _bad(number, line, "a valid RFC 3339 date-time") from None


def parse_siwe(text: str) -> SiweMessage:
    """Parse an EIP-4361 message strictly: fields in order, nothing extra, LF line ends,
    an EIP-55 address, version 1. Raises :class:`SiweError` naming the bad line."""
    if not isinstance(text, str):
        raise SiweError(f"SIWE message must be text, got {type(text).__name__}")
    if len(text) > _MAX_MESSAGE:
        raise SiweError(f"SIWE message is longer than {_MAX_MESSAGE} characters")
    if "\r" in text:
        raise SiweError("SIWE message must use LF line ends, found CR")
    lines = text.split("\n")
    pos = 0

    def take(expected: str) -> tuple[int, str]:
        nonlocal pos
        if pos >= len(lines):
            raise SiweError(f"SIWE message ends at line {pos}: expected {expected}")
        pos += 1
        return pos, lines[pos - 1]

    def field_value(name: str, expected: str) -> tuple[int, str, str]:
        number, line = take(f"'{name}: {expected}'")
        prefix = f"{name}: "
        if not line.startswith(prefix):
            raise _bad(number, line, f"'{name}: {expected}'")
        return number, line, line[len(prefix) :]

    def optional(name: str) -> bool:
        return pos < len(lines) and lines[pos].startswith(f"{name}:")

    number, line = take("the domain header")
    if not line.endswith(_HEADER_SUFFIX):
        raise _bad(number, line, f"'<domain>{_HEADER_SUFFIX}'")
    domain = line[: -len(_HEADER_SUFFIX)]
    if not _DOMAIN.match(domain):
        raise _bad(number, line, "a domain (host[:port]) before the header text")

    number, line = take("an address")
    if not _ADDRESS.match(line) or to_checksum_address(line) != line:
        raise _bad(number, line, "an EIP-55 checksummed 0x address")
    address = line

    number, line = take("an empty line")
    if line != "":
        raise _bad(number, line, "an empty line")
    number, line = take("a statement or an empty line")
    statement: str | None = None
    if line != "":
        statement = line
        number, line = take("an empty line after the statement")
        if line != "":
            raise _bad(number, line, "an empty line after the statement")

    number, line, uri = field_value("URI", "<uri>")
    _check_uri(uri, number, line, "URI")
    number, line, version = field_value("Version", "1")
    if version != "1":
        raise _bad(number, line, "'Version: 1'")
    number, line, chain = field_value("Chain ID", "<decimal chain id>")
    if not _CHAIN_ID.match(chain):
        raise _bad(number, line, "a positive decimal chain id")
    number, line, nonce = field_value("Nonce", "<at least 8 letters or digits>")
    if not _NONCE.match(nonce):
        raise _bad(number, line, "a nonce of at least 8 letters or digits")
    number, line, issued = field_value("Issued At", "<RFC 3339 date-time>")
    issued_at = _parse_time(issued, number, line)

    expiration_time = not_before = None
    request_id: str | None = None
    resources: list[str] = []
    if optional("Expiration Time"):
        number, line, value = field_value("Expiration Time", "<RFC 3339 date-time>")
        expiration_time = _parse_time(value, number, line)
    if optional("Not Before"):
        number, line, value = field_value("Not Before", "<RFC 3339 date-time>")
        not_before = _parse_time(value, number, line)
    if optional("Request ID"):
        number, line, request_id = field_value("Request ID", "<id>")
    if pos < len(lines) and lines[pos] == "Resources:":
        take("'Resources:'")
        while pos < len(lines):
            number, line = take("'- <uri>'")
            if not line.startswith("- "):
                raise _bad(number, line, "'- <uri>' in the resources list")
            resources.append(_check_uri(line[2:], number, line, "resource"))
        if not resources:
            raise SiweError(f"SIWE message line {pos}: 'Resources:' lists no resource")
    if pos < len(lines):
        raise _bad(pos + 1, lines[pos], "the end of the message")
    return SiweMessage(
        domain=domain,
        address=address,
        uri=uri,
        chain_id=int(chain),
        nonce=nonce,
        issued_at=issued_at,
        expiration_time=expiration_time,
        not_before=not_before,
        statement=statement,
        request_id=request_id,
        resources=tuple(resources),
    )


# --- records -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tokens:
    """What a sign-in or a refresh returns. ``refresh_token`` is shown only here."""

    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"  # noqa: S105 (a scheme name, not a secret)

    def __repr__(self) -> str:
        return f"Tokens(token_type={self.token_type!r}, expires_in={self.expires_in})"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a wallet or admin (via a JWT) or an API key."""

    subject: str
    via: Literal["jwt", "api_key"]
    token_id: str
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A new API key. ``secret`` is shown once, here; only its argon2 hash is stored."""

    key_id: str
    name: str
    scopes: frozenset[str]
    secret: str = field(repr=False)


class _Secret:
    """Holds the signing key; its repr never shows it (so vars() or a log dump is safe)."""

    __slots__ = ("value",)

    def __init__(self, value: bytes) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _check_roles(roles: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(roles)
    unknown = chosen - ROLES
    if unknown or not chosen:
        raise ConfigError(
            f"roles must be a non-empty subset of {sorted(ROLES)}, got {sorted(chosen)}"
        )
    return chosen


def _check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    chosen = frozenset(scopes)
    for scope in chosen:
        if not isinstance(scope, str) or not re.fullmatch(r"[a-z0-9_.-]+:[a-z0-9_.*-]+", scope):
            raise ConfigError(
                f"scope {scope!r} must look like 'resource:action', e.g. 'wallet:read'"
            )
    return chosen


# --- the service ---------------------------------------------------------------------


class AuthService:
    """Issues and checks credentials; state lives in the KeyValue port.

    ``secret`` signs access tokens (HS256, at least 32 bytes); ``domain`` and ``chain_id``
    are what SIWE messages must name. ``clock`` returns unix seconds (tests step it).
    ``hasher`` hashes API keys (argon2; tests pass cheap parameters). Argon2 runs in a
    worker thread so it never blocks the event loop.
    """

    def __init__(
        self,
        kv: KeyValue,
        secret: str | bytes,
        *,
        domain: str,
        chain_id: int,
        access_ttl: int = 900,
        refresh_ttl: int = 30 * 86400,
        nonce_ttl: int = 300,
        clock_skew: int = 60,
        clock: Clock = time.time,
        hasher: PasswordHasher | None = None,
    ) -> None:
        key = secret.encode() if isinstance(secret, str) else bytes(secret)
        if len(key) < 32:
            raise ConfigError("the access-token secret must be at least 32 bytes; generate one")
        for name, value in (
            ("access_ttl", access_ttl),
            ("refresh_ttl", refresh_ttl),
            ("nonce_ttl", nonce_ttl),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
        self._kv = kv
        self.__secret = _Secret(key)
        self.domain = domain
        self.chain_id = chain_id
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.nonce_ttl = nonce_ttl
        self.clock_skew = clock_skew
        self._clock = clock
        self._hasher = hasher or PasswordHasher()
        self._dummy_hash: str | None = None

    def __repr__(self) -> str:
        return f"AuthService(domain={self.domain!r}, chain_id={self.chain_id})"

    # sign-in --------------------------------------------------------------------------

    async def new_nonce(self) -> str:
        """A fresh nonce for one SIWE message, valid for ``nonce_ttl`` seconds, once."""
        nonce = secrets.token_hex(16)
        await self._kv.set(f"auth:nonce:{nonce}", b"1", ttl=self.nonce_ttl)
        return nonce

    async def sign_in(self, message: str, signature: str | bytes) -> Tokens:
        """Verify a signed SIWE message and return tokens for its address (role player).

        The nonce is consumed last, by one atomic delete, so a failed attempt does not
        burn it and two concurrent sign-ins with one nonce cannot both succeed.
        """
        parsed = parse_siwe(message)
        if parsed.domain != self.domain:
            raise AuthError(f"SIWE message is for domain {parsed.domain!r}, not {self.domain!r}")
        if parsed.chain_id != self.chain_id:
            raise AuthError(f"SIWE message is for chain {parsed.chain_id}, not {self.chain_id}")
        now = self._clock()
        if parsed.issued_at.timestamp() > now + self.clock_skew:
            raise AuthError("SIWE message is issued in the future; check the client clock")
        if parsed.expiration_time is not None and now >= parsed.expiration_time.timestamp():
            raise AuthError("SIWE message has expired; request a new nonce and sign again")
        if parsed.not_before is not None and now < parsed.not_before.timestamp():
            raise AuthError("SIWE message is not valid yet (Not Before)")
        try:
            signer = Account.recover_message(encode_defunct(text=message), signature=signature)
        except Exception:  # eth-account raises several types for a malformed signature
            raise AuthError("SIWE signature is malformed") from None
        if signer != parsed.address:
            raise AuthError("SIWE signature was not made by the message's address")
        if not await self._kv.delete(f"auth:nonce:{parsed.nonce}"):
            raise AuthError("SIWE nonce is unknown, expired or already used; request a new one")
        return await self.issue_tokens(parsed.address, ("player",))

    # tokens ---------------------------------------------------------------------------

    async def issue_tokens(self, subject: str, roles: Iterable[str]) -> Tokens:
        """Access and refresh tokens for ``subject`` (a checksum address or an admin id)
        in a new refresh family."""
        chosen = _check_roles(roles)
        if not subject:
            raise ConfigError("a token subject must be a non-empty string")
        return await self._tokens(subject, chosen, secrets.token_hex(16))

    async def _tokens(self, subject: str, roles: frozenset[str], family: str) -> Tokens:
        now = int(self._clock())
        access = jwt.encode(
            {
                "sub": subject,
                "roles": sorted(roles),
                "iat": now,
                "exp": now + self.access_ttl,
                "jti": secrets.token_urlsafe(16),
            },
            self.__secret.value,
            algorithm=_ALGORITHM,
        )
        refresh = secrets.token_urlsafe(32)
        record = {"sub": subject, "roles": sorted(roles), "family": family, "used": False}
        if not await self._kv.compare_and_set(
            f"auth:family:{family}", None, b"live", ttl=self.refresh_ttl
        ) and not await self._kv.compare_and_set(
            f"auth:family:{family}", b"live", b"live", ttl=self.refresh_ttl
        ):
            raise AuthError("this sign-in session was revoked; sign in again")
        await self._kv.set(
            f"auth:refresh:{_sha256(refresh)}",
            json.dumps(record).encode(),
            ttl=self.refresh_ttl,
        )
        return Tokens(access_token=access, refresh_token=refresh, expires_in=self.access_ttl)

    async def verify(self, token: str) -> Principal:
        """The principal of a valid access token; :class:`AuthError` for any refusal."""
        try:
            claims = jwt.decode(
                token,
                self.__secret.value,
                algorithms=[_ALGORITHM],
                # Expiry is checked below against the injectable clock.
                options={
                    "require": ["sub", "exp", "iat", "jti"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidTokenError:
            raise AuthError("access token is malformed or its signature is invalid") from None
        sub, roles, jti = claims.get("sub"), claims.get("roles"), claims.get("jti")
        exp, iat = claims.get("exp"), claims.get("iat")
        if (
            not isinstance(sub, str)
            or not isinstance(jti, str)
            or not isinstance(roles, list)
            or not all(isinstance(r, str) and r in ROLES for r in roles)
            or not isinstance(exp, int)
            or not isinstance(iat, int)
        ):
            raise AuthError("access token claims are malformed")
        now = self._clock()
        if now >= exp:
            raise AuthError("access token has expired; refresh it")
        if iat > now + self.clock_skew:
            raise AuthError("access token is issued in the future")
        if await self._kv.get(f"auth:deny:{jti}") is not None:
            raise AuthError("access token was revoked")
        return Principal(
            subject=sub, via="jwt", token_id=jti, roles=frozenset(roles), expires_at=float(exp)
        )

    async def revoke(self, jti: str, *, expires_at: float | None = None) -> None:
        """Deny the access token ``jti`` until it would expire anyway (``expires_at``,
        unix seconds; by default the longest an access token can live)."""
        if not jti:
            raise ConfigError("jti must be a non-empty string")
        ttl = float(self.access_ttl) if expires_at is None else expires_at - self._clock()
        if ttl > 0:
            await self._kv.set(f"auth:deny:{jti}", b"1", ttl=ttl + self.clock_skew)

    async def refresh(self, refresh_token: str) -> Tokens:
        """Rotate a refresh token: the old one stops working and new tokens come back.

        Presenting a token that was already rotated (a replay, so possibly stolen)
        revokes its whole family: every refresh token descended from the same sign-in.
        """
        key = f"auth:refresh:{_sha256(refresh_token)}"
        raw = await self._kv.get(key)
        if raw is None:
            raise AuthError("refresh token is unknown or expired; sign in again")
        record = json.loads(raw)
        family = str(record["family"])
        if record["used"]:
            await self._revoke_family(family)
            raise AuthError("refresh token was already used; the session is revoked")
        if await self._kv.get(f"auth:family:{family}") != b"live":
            raise AuthError("this sign-in session was revoked; sign in again")
        used = json.dumps({**record, "used": True}).encode()
        if not await self._kv.compare_and_set(key, raw, used, ttl=self.refresh_ttl):
            # Someone rotated it between our read and write: a concurrent replay.
            await self._revoke_family(family)
            raise AuthError("refresh token was already used; the session is revoked")
        return await self._tokens(str(record["sub"]), frozenset(record["roles"]), family)

    async def _revoke_family(self, family: str) -> None:
        await self._kv.set(f"auth:family:{family}", b"revoked", ttl=self.refresh_ttl)

    # API keys -------------------------------------------------------------------------

    async def create_api_key(self, name: str, scopes: Iterable[str]) -> ApiKey:
        """A new key ``ldx_<id>_<secret>``; only its argon2 hash is stored."""
        if not name:
            raise ConfigError("an API key needs a non-empty name")
        chosen = _check_scopes(scopes)
        key_id = secrets.token_hex(8)
        secret = f"{_KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        hashed = await asyncio.to_thread(self._hasher.hash, secret)
        record = {"name": name, "scopes": sorted(chosen), "hash": hashed}
        await self._kv.set(f"auth:apikey:{key_id}", json.dumps(record).encode())
        return ApiKey(key_id=key_id, name=name, scopes=chosen, secret=secret)

    async def check_api_key(self, secret: str, scope: str | None) -> Principal:
        """The principal of a valid key; :class:`AuthError` if unknown, malformed or
        revoked, :class:`AccessDenied` if it lacks ``scope``."""
        parts = secret.split("_", 2) if isinstance(secret, str) else []
        if (
            len(parts) != 3
            or parts[0] != _KEY_PREFIX[:-1]
            or not re.fullmatch(r"[0-9a-f]{16}", parts[1])
        ):
            raise AuthError("API key is malformed; it looks like ldx_<id>_<secret>")
        raw = await self._kv.get(f"auth:apikey:{parts[1]}")
        if raw is None:
            # Spend the same time as a real check so unknown ids are not distinguishable.
            await asyncio.to_thread(self._verify_hash, await self._dummy(), secret)
            raise AuthError("API key is unknown or revoked")
        record = json.loads(raw)
        if not await asyncio.to_thread(self._verify_hash, str(record["hash"]), secret):
            raise AuthError("API key is unknown or revoked")
        scopes = frozenset(str(s) for s in record["scopes"])
        if scope is not None and scope not in scopes:
            raise AccessDenied(f"API key {parts[1]} lacks the scope {scope!r}")
        return Principal(
            subject=f"apikey:{parts[1]}", via="api_key", token_id=parts[1], scopes=scopes
        )

    async def revoke_api_key(self, key_id: str) -> bool:
        """Revoke a key at once; True if it existed."""
        return bool(await self._kv.delete(f"auth:apikey:{key_id}"))

    def _verify_hash(self, hashed: str, secret: str) -> bool:
        try:
            return bool(self._hasher.verify(hashed, secret))
        except (Argon2Error, InvalidHashError):
            return False

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash, secrets.token_urlsafe(32))
        return self._dummy_hash


# --- FastAPI dependencies ------------------------------------------------------------


class IpAllowList:
    """Client networks allowed to reach a route (e.g. admin routes)."""

    def __init__(self, networks: Iterable[str]) -> None:
        parsed: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for net in networks:
            try:
                parsed.append(ipaddress.ip_network(net, strict=True))
            except ValueError as exc:
                raise ConfigError(f"IP allow-list entry {net!r} is not a network: {exc}") from None
        self.networks = tuple(parsed)

    def allows(self, host: str | None) -> bool:
        if not host:
            return False
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)


def _unauthorized(exc: AuthError) -> HTTPException:
    return HTTPException(401, str(exc), headers={"WWW-Authenticate": "Bearer"})


def require(
    permission: str | None, *, allow: IpAllowList | None = None
) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency admitting callers with ``permission``: a role name
    (``player``, ``admin``, ``operator``, checked on a bearer JWT), a scope
    (``resource:action``, checked on an ``X-API-Key``), or None for any valid token or
    key. ``allow`` restricts the client address first. The :class:`AuthService` is
    ``request.app.state.auth``.

    Answers 401 for missing or invalid credentials and 403 for a missing role or scope
    or a client outside ``allow``.
    """
    role: str | None = None
    scope: str | None = None
    if permission in ROLES:
        role = permission
    elif permission is not None:
        _check_scopes([permission])
        scope = permission

    async def dependency(request: Request) -> Principal:
        if allow is not None:
            host = request.client.host if request.client else None
            if not allow.allows(host):
                raise HTTPException(403, "this route is not reachable from your address")
        service = getattr(request.app.state, "auth", None)
        if not isinstance(service, AuthService):
            raise ConfigError("app.state.auth must hold the AuthService")
        bearer = request.headers.get("authorization")
        api_key = request.headers.get("x-api-key")
        try:
            if bearer and api_key:
                raise AuthError("send either a bearer token or an API key, not both")
            if bearer:
                scheme, _, token = bearer.partition(" ")
                if scheme.lower() != "bearer" or not token.strip():
                    raise AuthError("Authorization must be 'Bearer <token>'")
                principal = await service.verify(token.strip())
            elif api_key:
                principal = await service.check_api_key(api_key, scope)
            else:
                raise AuthError("credentials required: a bearer token or an X-API-Key")
        except AuthError as exc:
            raise _unauthorized(exc) from None
        except AccessDenied as exc:
            raise HTTPException(403, str(exc)) from None
        if role is not None and role not in principal.roles:
            raise HTTPException(403, f"this route needs the role {role!r}")
        if scope is not None and scope not in principal.scopes:
            raise HTTPException(403, f"this route needs the scope {scope!r}")
        return principal

    return dependency
