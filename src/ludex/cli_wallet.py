"""``ludex wallet``: providers, players, risk limits and reconciliation of the seamless wallet.

Every change is audited (``audit_log``: who, when, old, new; the actor is
``cli:<user>`` unless ``--actor`` says otherwise). ``provider add`` prints the
provider's new secret once; only its AES-GCM ciphertext is stored. ``reconcile``
compares the ledger, the provider log and the event log and exits 1 on any
difference.

This is an I/O edge: it opens the operational store named by ``LUDEX_STORE_URL``
(migrating it), calls :class:`~ludex.wagering.service.WalletService` and prints.
It must never print a secret except the one ``provider add``/``rotate`` just made.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from ludex.errors import ConfigError, LudexError

T = TypeVar("T")

wallet_app = typer.Typer(
    help="Seamless wallet: providers, players, risk limits, reconciliation.",
    no_args_is_help=True,
)
provider_app = typer.Typer(help="Game providers and their signing secrets.", no_args_is_help=True)
player_app = typer.Typer(help="Players (test and demo funding).", no_args_is_help=True)
limits_app = typer.Typer(help="Risk limits (audited).", no_args_is_help=True)
wallet_app.add_typer(provider_app, name="provider")
wallet_app.add_typer(player_app, name="player")
wallet_app.add_typer(limits_app, name="limits")

Actor = Annotated[str | None, typer.Option("--actor", help="Who makes the change (audit log).")]


def _actor(actor: str | None) -> str:
    return actor or f"cli:{getpass.getuser()}"


def _with_service(work: Callable[[Any], Awaitable[T]]) -> T:
    """Open the store (migrated), run ``work(service)``, close; ludex errors exit 1."""
    from ludex.adapters.kv import create_key_value
    from ludex.adapters.sql import create_store
    from ludex.config import load_settings
    from ludex.wagering.service import WalletService

    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"ludex: configuration error\n{exc}", err=True)
        raise typer.Exit(2) from None

    async def main() -> T:
        store = create_store(settings.store_url, pool_size=2)
        kv = create_key_value("memory://")
        await store.start()
        await kv.start()
        try:
            await store.migrate()
            service = WalletService(
                store,
                kv,
                timestamp_window=settings.provider_timestamp_window,
                cache_seconds=0,
                secrets_key=settings.secrets_key,
                producer=settings.service_name,
            )
            return await work(service)
        finally:
            await kv.close()
            await store.close()

    try:
        return asyncio.run(main())
    except LudexError as exc:
        typer.echo(f"ludex: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None


@wallet_app.command("keygen")
def keygen() -> None:
    """Print a new LUDEX_SECRETS_KEY (base64 of 32 random bytes)."""
    from ludex.wagering.crypto import new_key

    typer.echo(new_key())


@provider_app.command("add")
def provider_add(
    provider_id: Annotated[str, typer.Argument(metavar="NAME", help="Provider id (a slug).")],
    name: Annotated[str | None, typer.Option(help="Display name (default: NAME).")] = None,
    actor: Actor = None,
) -> None:
    """Register a provider; print its signing secret ONCE (store it in your secret manager)."""

    async def work(service: Any) -> str:
        secret: str = await service.add_provider(
            provider_id, name or provider_id, actor=_actor(actor)
        )
        return secret

    secret = _with_service(work)
    typer.echo(f"provider {provider_id} added; its secret (shown once):", err=True)
    typer.echo(secret)


@provider_app.command("rotate")
def provider_rotate(provider_id: str, actor: Actor = None) -> None:
    """Issue a new secret for a provider (the old one stops working); print it once."""

    async def work(service: Any) -> str:
        secret: str = await service.rotate_provider_secret(provider_id, actor=_actor(actor))
        return secret

    typer.echo(_with_service(work))


@provider_app.command("block")
def provider_block(provider_id: str, actor: Actor = None) -> None:
    """Refuse every request of a provider (PROVIDER_BLOCKED)."""
    _with_service(lambda s: s.set_provider_status(provider_id, "blocked", actor=_actor(actor)))
    typer.echo(f"provider {provider_id} blocked")


@provider_app.command("unblock")
def provider_unblock(provider_id: str, actor: Actor = None) -> None:
    """Accept a blocked provider's requests again."""
    _with_service(lambda s: s.set_provider_status(provider_id, "active", actor=_actor(actor)))
    typer.echo(f"provider {provider_id} active")


@player_app.command("add")
def player_add(
    player_id: str,
    balance: Annotated[int, typer.Option(min=0, help="Fund from the house account.")] = 0,
    actor: Actor = None,
) -> None:
    """Create a player with a ledger account, funded with BALANCE chips from the house."""
    result = _with_service(lambda s: s.add_player(player_id, balance=balance, actor=_actor(actor)))
    typer.echo(f"player {player_id}: balance {result}")


@player_app.command("block")
def player_block(player_id: str, actor: Actor = None) -> None:
    """Refuse the player's bets (PLAYER_BLOCKED); wins and rollbacks still credit."""
    _with_service(lambda s: s.set_player_status(player_id, "blocked", actor=_actor(actor)))
    typer.echo(f"player {player_id} blocked")


@player_app.command("unblock")
def player_unblock(player_id: str, actor: Actor = None) -> None:
    """Accept the player's bets again."""
    _with_service(lambda s: s.set_player_status(player_id, "active", actor=_actor(actor)))
    typer.echo(f"player {player_id} active")


@player_app.command("balance")
def player_balance(player_id: str) -> None:
    """Print the player's available balance."""
    typer.echo(_with_service(lambda s: s.player_balance(player_id)))


@limits_app.command("set")
def limits_set(
    scope: Annotated[str, typer.Argument(help="player | game | provider")],
    key: Annotated[str, typer.Argument(help="The player, game or provider id.")],
    name: Annotated[
        str,
        typer.Argument(
            help="max_stake | max_round_exposure | daily_loss | bet_velocity | max_liability"
        ),
    ],
    value: Annotated[int, typer.Argument(min=0)],
    actor: Actor = None,
) -> None:
    """Set one limit (audited)."""
    _change(scope, key, name, value, actor)


@limits_app.command("unset")
def limits_unset(scope: str, key: str, name: str, actor: Actor = None) -> None:
    """Remove one limit (audited)."""
    _change(scope, key, name, None, actor)


def _change(scope: str, key: str, name: str, value: int | None, actor: str | None) -> None:
    from pydantic import ValidationError

    from ludex.wagering.models import LimitChange

    try:
        change = LimitChange.model_validate(
            {"scope": scope, "key": key, "name": name, "value": value, "actor": _actor(actor)}
        )
    except ValidationError as exc:
        problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        typer.echo(f"ludex: {problems}", err=True)
        raise typer.Exit(2) from None
    old, new = _with_service(lambda s: s.set_limit(change))
    typer.echo(f"{scope} {key} {name}: {old} -> {new}")


@limits_app.command("list")
def limits_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Every limit."""
    rows = _with_service(lambda s: s.list_limits())
    if as_json:
        typer.echo(
            json.dumps(
                [{"scope": r.scope, "key": r.key, "name": r.name, "value": r.value} for r in rows],
                indent=2,
            )
        )
        return
    for r in rows:
        typer.echo(f"{r.scope:<9} {r.key:<24} {r.name:<20} {r.value}")


@wallet_app.command("reconcile")
def reconcile(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Compare the ledger, the provider log and the event log; exit 1 on any difference."""
    from ludex.wagering.reconcile import reconcile as run

    async def work(service: Any) -> Any:
        return await run(service.store)

    report = _with_service(work)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": report.ok,
                    "transactions": report.transactions,
                    "transfers": report.transfers,
                    "events": report.events,
                    "differences": [
                        {
                            "source": d.source,
                            "provider": d.provider,
                            "transaction_id": d.transaction_id,
                            "detail": d.detail,
                        }
                        for d in report.differences
                    ],
                },
                indent=2,
            )
        )
    else:
        for difference in report.differences:
            typer.echo(f"DIFF  {difference}")
        typer.echo(
            f"{report.transactions} provider transactions, {report.transfers} ledger transfers, "
            f"{report.events} events: {len(report.differences)} difference(s)"
        )
    if not report.ok:
        raise typer.Exit(1)
