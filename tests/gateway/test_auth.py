"""Authentication: SIWE sign-in, tokens, API keys and the RBAC dependency."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import jwt
import pytest
from argon2 import PasswordHasher
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount
from fastapi import Depends, FastAPI

from ludex.adapters.kv import create_key_value
from ludex.adapters.kv.memory import MemoryKeyValue
from ludex.errors import LudexError
from ludex.gateway.auth import (
    AccessDenied,
    AuthError,
    AuthService,
    IpAllowList,
    Principal,
    SiweError,
    parse_siwe,
    require,
    siwe_message,
)
from ludex.ports.kv import KeyValue
from tests.conftest import service_url

SECRET = "s" * 64
DOMAIN = "play.ludex.test"
CHAIN = 31337
NOW = 1_800_000_000.0
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
async def kv(request: pytest.FixtureRequest) -> AsyncIterator[KeyValue]:
    if request.param == "memory":
        store: KeyValue = MemoryKeyValue()
    else:
        store = create_key_value(service_url("redis"), namespace=f"t-{uuid.uuid4().hex[:8]}:")
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def service(kv: KeyValue, clock: Clock, **extra: object) -> AuthService:
    return AuthService(
        kv,
        SECRET,
        domain=DOMAIN,
        chain_id=CHAIN,
        clock=clock,
        hasher=FAST_HASHER,
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def auth(clock: Clock) -> AuthService:
    return service(MemoryKeyValue(), clock)


def at(offset: float = 0) -> datetime:
    return datetime.fromtimestamp(NOW + offset, UTC)


def signed(
    account: LocalAccount,
    nonce: str,
    *,
    domain: str = DOMAIN,
    chain_id: int = CHAIN,
    expiration: datetime | None = None,
    not_before: datetime | None = None,
    signer: LocalAccount | None = None,
) -> tuple[str, str]:
    address = account.address
    text = siwe_message(
        domain,
        address,
        f"https://{domain}/login",
        chain_id,
        nonce,
        at(-5),
        expiration if expiration is not None else at(300),
        statement="Sign in to ludex.",
        not_before=not_before,
    )
    key = signer or account
    signature = key.sign_message(encode_defunct(text=text)).signature.hex()
    return text, signature


# --- SIWE text ----------------------------------------------------------------------


def test_siwe_message_is_the_exact_eip4361_text_and_parses_back() -> None:
    address = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"
    text = siwe_message(
        "example.com",
        address,
        "https://example.com/login",
        1,
        "32891756abcdef",
        datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC),
        datetime(2021, 10, 1, 16, 25, 24, tzinfo=UTC),
        statement="I accept the ExampleOrg Terms of Service: https://example.com/tos",
        resources=["ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/"],
    )
    assert text == (
        "example.com wants you to sign in with your Ethereum account:\n"
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n"
        "\n"
        "I accept the ExampleOrg Terms of Service: https://example.com/tos\n"
        "\n"
        "URI: https://example.com/login\n"
        "Version: 1\n"
        "Chain ID: 1\n"
        "Nonce: 32891756abcdef\n"
        "Issued At: 2021-09-30T16:25:24Z\n"
        "Expiration Time: 2021-10-01T16:25:24Z\n"
        "Resources:\n"
        "- ipfs://bafybeiemxf5abjwjbikoz4mc3a3dla6ual3jsgpdr4cjr3oz3evfyavhwq/"
    )
    parsed = parse_siwe(text)
    assert parsed.address == address
    assert parsed.chain_id == 1
    assert parsed.nonce == "32891756abcdef"
    assert parsed.issued_at == datetime(2021, 9, 30, 16, 25, 24, tzinfo=UTC)
    assert parsed.statement is not None
    assert parsed.statement.startswith("I accept")
    assert len(parsed.resources) == 1


def test_siwe_without_statement_has_two_empty_lines() -> None:
    text = siwe_message(
        "example.com",
        "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
        "https://example.com",
        1,
        "abcdefgh1",
        at(),
        None,
    )
    assert "Cc2\n\n\nURI: https://example.com\n" in text
    parsed = parse_siwe(text)
    assert parsed.statement is None
    assert parsed.expiration_time is None


GOOD = siwe_message(
    "example.com",
    "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
    "https://example.com",
    1,
    "abcdefgh1",
    datetime(2030, 1, 1, tzinfo=UTC),
    None,
)


@pytest.mark.parametrize(
    ("old", "new", "line"),
    [
        ("example.com wants", "example.com asks", 1),
        (
            "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
            "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2",
            2,
        ),
        ("Version: 1", "Version: 2", 6),
        ("Chain ID: 1", "Chain ID: 01", 7),
        ("Nonce: abcdefgh1", "Nonce: abc", 8),
        ("Issued At: 2030-01-01T00:00:00Z", "Issued At: 2030-01-01 00:00:00", 9),
        ("URI: https://example.com", "URI: not a uri", 5),
    ],
)
def test_parse_siwe_names_the_bad_line(old: str, new: str, line: int) -> None:
    assert old in GOOD
    with pytest.raises(SiweError, match=f"line {line}:") as caught:
        parse_siwe(GOOD.replace(old, new))
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, LudexError)


def test_parse_siwe_refuses_extra_lines_cr_and_truncation() -> None:
    with pytest.raises(SiweError, match="line 10"):
        parse_siwe(GOOD + "\nSurprise: yes")
    with pytest.raises(SiweError, match="CR"):
        parse_siwe(GOOD.replace("\n", "\r\n"))
    with pytest.raises(SiweError, match="ends at line"):
        parse_siwe("\n".join(GOOD.split("\n")[:7]))
    with pytest.raises(SiweError, match="timezone"):
        siwe_message(
            "a.b",
            "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2",
            "https://a.b",
            1,
            "abcdefgh1",
            datetime(2030, 1, 1),
            None,
        )


# --- sign-in ------------------------------------------------------------------------


async def test_sign_in_with_a_real_signature(kv: KeyValue, clock: Clock) -> None:
    auth = service(kv, clock)
    account = Account.create()
    text, signature = signed(account, await auth.new_nonce())
    tokens = await auth.sign_in(text, signature)
    principal = await auth.verify(tokens.access_token)
    assert principal.subject == account.address
    assert principal.roles == frozenset({"player"})
    assert principal.via == "jwt"
    claims = jwt.decode(
        tokens.access_token,
        SECRET,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims["exp"] - claims["iat"] == auth.access_ttl
    assert {"sub", "roles", "exp", "iat", "jti"} <= claims.keys()
    # the same nonce cannot be used twice
    with pytest.raises(AuthError, match="nonce"):
        await auth.sign_in(text, signature)


async def test_unissued_nonce_refused(auth: AuthService) -> None:
    text, signature = signed(Account.create(), "deadbeef00")
    with pytest.raises(AuthError, match="nonce"):
        await auth.sign_in(text, signature)


async def test_two_concurrent_sign_ins_with_one_nonce_only_one_wins(
    kv: KeyValue, clock: Clock
) -> None:
    auth = service(kv, clock)
    text, signature = signed(Account.create(), await auth.new_nonce())
    results = await asyncio.gather(
        *(auth.sign_in(text, signature) for _ in range(5)), return_exceptions=True
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, AuthError) for r in results if isinstance(r, BaseException))


async def test_wrong_domain_chain_expired_and_not_before_refused(auth: AuthService) -> None:
    account = Account.create()
    nonce = await auth.new_nonce()
    cases = [
        (signed(account, nonce, domain="evil.test"), "domain"),
        (signed(account, nonce, chain_id=1), "chain"),
        (signed(account, nonce, expiration=at(-1)), "expired"),
        (signed(account, nonce, not_before=at(60)), "not valid yet"),
        (signed(account, nonce, signer=Account.create()), "not made by"),
    ]
    for (text, signature), reason in cases:
        with pytest.raises(AuthError, match=reason):
            await auth.sign_in(text, signature)
    text, _ = signed(account, nonce)
    with pytest.raises(AuthError, match="malformed"):
        await auth.sign_in(text, "0x1234")
    # failed attempts did not burn the nonce
    text, signature = signed(account, nonce)
    assert (await auth.verify((await auth.sign_in(text, signature)).access_token)).subject == (
        account.address
    )


async def test_nonce_expires(clock: Clock) -> None:
    kv_clock = [0.0]
    auth = service(MemoryKeyValue(clock=lambda: kv_clock[0]), clock, nonce_ttl=10)
    text, signature = signed(Account.create(), await auth.new_nonce())
    kv_clock[0] = 11.0
    with pytest.raises(AuthError, match="nonce"):
        await auth.sign_in(text, signature)


# --- access tokens ------------------------------------------------------------------


async def test_access_token_expires(auth: AuthService, clock: Clock) -> None:
    tokens = await auth.issue_tokens("admin-1", ["admin"])
    clock.now += auth.access_ttl - 1
    assert (await auth.verify(tokens.access_token)).roles == frozenset({"admin"})
    clock.now += 1
    with pytest.raises(AuthError, match="expired"):
        await auth.verify(tokens.access_token)


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def test_tampered_tokens_refused(auth: AuthService) -> None:
    token = (await auth.issue_tokens("0xabc", ["player"])).access_token
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    flipped = signature[:5] + ("A" if signature[5] != "A" else "B") + signature[6:]
    escalated = _b64({**claims, "roles": ["admin"]})
    forged = [
        f"{header}.{payload}.{flipped}",
        f"{header}.{escalated}.{signature}",
        jwt.encode(claims, "", algorithm="none"),
        f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        jwt.encode(claims, SECRET, algorithm="HS512"),
        jwt.encode(claims, "o" * 40, algorithm="HS256"),
        "not.a.jwt",
        "",
    ]
    for bad in forged:
        with pytest.raises(AuthError):
            await auth.verify(bad)
    assert (await auth.verify(token)).subject == "0xabc"


async def test_revoked_token_refused_until_it_would_expire(clock: Clock) -> None:
    kv_clock = [0.0]
    auth = service(MemoryKeyValue(clock=lambda: kv_clock[0]), clock)
    one = (await auth.issue_tokens("0xabc", ["player"])).access_token
    two = (await auth.issue_tokens("0xabc", ["player"])).access_token
    principal = await auth.verify(one)
    await auth.revoke(principal.token_id, expires_at=principal.expires_at)
    with pytest.raises(AuthError, match="revoked"):
        await auth.verify(one)
    assert (await auth.verify(two)).subject == "0xabc"
    # the deny-list entry outlives the token (expiry plus clock skew), then goes away
    kv_clock[0] = auth.access_ttl + auth.clock_skew + 1
    assert await auth._kv.get(f"auth:deny:{principal.token_id}") is None


def test_secret_never_in_repr_and_short_secret_refused() -> None:
    auth = AuthService(MemoryKeyValue(), SECRET, domain=DOMAIN, chain_id=CHAIN)
    assert SECRET not in repr(auth)
    assert SECRET not in str(vars(auth))
    with pytest.raises(LudexError, match="32 bytes"):
        AuthService(MemoryKeyValue(), "short", domain=DOMAIN, chain_id=CHAIN)


# --- refresh tokens -----------------------------------------------------------------


async def test_refresh_rotates_and_reuse_revokes_the_family(kv: KeyValue, clock: Clock) -> None:
    auth = service(kv, clock)
    first = await auth.issue_tokens("0xabc", ["player"])
    assert "refresh" not in repr(first)
    assert first.refresh_token not in repr(first)
    second = await auth.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert (await auth.verify(second.access_token)).subject == "0xabc"
    third = await auth.refresh(second.refresh_token)
    # replaying a rotated token is refused and kills the live descendant too
    with pytest.raises(AuthError, match="already used"):
        await auth.refresh(first.refresh_token)
    with pytest.raises(AuthError, match="revoked"):
        await auth.refresh(third.refresh_token)
    # another session is untouched
    other = await auth.issue_tokens("0xdef", ["player"])
    assert (await auth.refresh(other.refresh_token)).refresh_token
    with pytest.raises(AuthError, match="unknown"):
        await auth.refresh("made-up")


async def test_refresh_token_stored_only_as_its_hash() -> None:
    kv = MemoryKeyValue()
    auth = service(kv, Clock())
    tokens = await auth.issue_tokens("0xabc", ["player"])
    stored = b"".join(v.data for v in kv._values.values()).decode()
    stored += "".join(kv._values)
    assert tokens.refresh_token not in stored
    assert len(base64.urlsafe_b64decode(tokens.refresh_token + "=")) == 32


async def test_concurrent_refresh_with_one_token_at_most_one_wins(auth: AuthService) -> None:
    tokens = await auth.issue_tokens("0xabc", ["player"])
    results = await asyncio.gather(
        *(auth.refresh(tokens.refresh_token) for _ in range(4)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, AuthError) for r in results if isinstance(r, BaseException))
    # the losers were replays: the family is revoked, the winner's token included
    with pytest.raises(AuthError, match="revoked"):
        await auth.refresh(winners[0].refresh_token)


# --- API keys -----------------------------------------------------------------------


async def test_api_key_scopes_and_revocation(kv: KeyValue, clock: Clock) -> None:
    auth = service(kv, clock)
    key = await auth.create_api_key("reporting", ["wallet:read", "events:read"])
    assert key.secret.startswith(f"ldx_{key.key_id}_")
    assert key.secret not in repr(key)
    stored = await kv.get(f"auth:apikey:{key.key_id}")
    assert stored is not None
    assert key.secret.encode() not in stored
    assert json.loads(stored)["hash"].startswith("$argon2id$")
    principal = await auth.check_api_key(key.secret, "wallet:read")
    assert principal.via == "api_key"
    assert principal.scopes == {"wallet:read", "events:read"}
    with pytest.raises(AccessDenied, match="wallet:write"):
        await auth.check_api_key(key.secret, "wallet:write")
    wrong = key.secret[:-2] + ("aa" if not key.secret.endswith("aa") else "bb")
    for bad in (wrong, "ldx_0000000000000000_nope", "garbage", f"ldx_{key.key_id}"):
        with pytest.raises(AuthError):
            await auth.check_api_key(bad, "wallet:read")
    assert await auth.revoke_api_key(key.key_id)
    with pytest.raises(AuthError, match="revoked"):
        await auth.check_api_key(key.secret, "wallet:read")


# --- RBAC over HTTP -----------------------------------------------------------------


def _app(auth: AuthService, allow: IpAllowList) -> FastAPI:
    app = FastAPI()
    app.state.auth = auth

    @app.get("/me")
    async def me(who: Principal = Depends(require("player"))) -> dict[str, str]:  # noqa: B008
        return {"subject": who.subject}

    @app.get("/admin")
    async def admin(who: Principal = Depends(require("admin", allow=allow))) -> dict[str, str]:  # noqa: B008
        return {"subject": who.subject}

    @app.get("/report")
    async def report(who: Principal = Depends(require("wallet:read"))) -> dict[str, str]:  # noqa: B008
        return {"subject": who.subject}

    return app


async def _get(
    app: FastAPI, path: str, client: str = "127.0.0.1", **headers: str
) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, client=(client, 5555))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        return await http.get(path, headers=headers)


async def test_rbac_answers_401_and_403(auth: AuthService) -> None:
    app = _app(auth, IpAllowList(["127.0.0.0/8", "10.0.0.0/8"]))
    player = (await auth.issue_tokens("0xabc", ["player"])).access_token
    admin = (await auth.issue_tokens("root", ["admin"])).access_token
    key = (await auth.create_api_key("r", ["wallet:read"])).secret
    other_key = (await auth.create_api_key("w", ["wallet:write"])).secret

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    assert (await _get(app, "/me")).status_code == 401
    assert (await _get(app, "/me", Authorization="Basic abc")).status_code == 401
    assert (await _get(app, "/me", **bearer(player + "x"))).status_code == 401
    unauth = await _get(app, "/me", **bearer("nope"))
    assert unauth.status_code == 401
    assert unauth.headers["www-authenticate"] == "Bearer"
    ok = await _get(app, "/me", **bearer(player))
    assert ok.status_code == 200
    assert ok.json() == {"subject": "0xabc"}
    assert (await _get(app, "/admin", **bearer(player))).status_code == 403
    assert (await _get(app, "/admin", **bearer(admin))).json() == {"subject": "root"}
    assert (await _get(app, "/report", **{"X-API-Key": key})).status_code == 200
    assert (await _get(app, "/report", **{"X-API-Key": other_key})).status_code == 403
    assert (await _get(app, "/report", **{"X-API-Key": "ldx_bad"})).status_code == 401
    assert (await _get(app, "/report", **bearer(player))).status_code == 403
    assert (await _get(app, "/me", **{"X-API-Key": key})).status_code == 403
    assert (await _get(app, "/me", **bearer(player), **{"X-API-Key": key})).status_code == 401
    await auth.revoke((await auth.verify(player)).token_id)
    assert (await _get(app, "/me", **bearer(player))).status_code == 401


async def test_admin_ip_allow_list(auth: AuthService) -> None:
    app = _app(auth, IpAllowList(["10.0.0.0/8", "2001:db8::/32"]))
    admin = {"Authorization": f"Bearer {(await auth.issue_tokens('root', ['admin'])).access_token}"}
    assert (await _get(app, "/admin", client="10.1.2.3", **admin)).status_code == 200
    assert (await _get(app, "/admin", client="2001:db8::1", **admin)).status_code == 200
    assert (await _get(app, "/admin", client="::ffff:10.9.9.9", **admin)).status_code == 200
    refused = await _get(app, "/admin", client="192.168.1.1", **admin)
    assert refused.status_code == 403
    # outside the allow-list, even without credentials the answer is 403, not 401
    assert (await _get(app, "/admin", client="192.168.1.1")).status_code == 403
    assert (await _get(app, "/admin", client="testclient", **admin)).status_code == 403
    # the player route has no allow-list
    player = {
        "Authorization": f"Bearer {(await auth.issue_tokens('0xabc', ['player'])).access_token}"
    }
    assert (await _get(app, "/me", client="192.168.1.1", **player)).status_code == 200


def test_bad_configuration_refused() -> None:
    with pytest.raises(LudexError, match="not a network"):
        IpAllowList(["10.0.0.1/8"])
    with pytest.raises(LudexError, match="resource:action"):
        require("superuser")
