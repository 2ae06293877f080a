"""``ludex chain``: on-chain settlement tooling; for now, compiling the contracts.

``compile`` runs ``scripts/compile-contracts.mjs`` (solc-js from node_modules) on
``contracts/`` and writes the artifacts into ``src/ludex/chain/artifacts``; ``--check``
writes nothing and exits 1 when the committed artifacts do not match the sources.

This is an I/O edge: it prints what the compiler printed and exits with its code. It never
contacts a chain node and never signs anything.

``keystore new`` writes an operator keystore; ``deploy`` deploys Ludex with the keystore's
key (``ludex.chain.deployment``); ``devnet`` starts anvil and prepares it for local play.
They never print or log a key: the operator's stays in its keystore.

``reconcile`` compares the vault's on-chain balances with the ledger per player and token
(``ludex.chain.reconcile``) and exits 1 on any difference; it reads, never writes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ludex.errors import ChainError

if TYPE_CHECKING:
    from ludex.config import Settings

chain_app = typer.Typer(
    help="On-chain settlement: contracts, deployment, reconciliation.",
    no_args_is_help=True,
)


@chain_app.command("compile")
def chain_compile(
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Write nothing; exit 1 if the artifacts do not match the sources."
        ),
    ] = False,
) -> None:
    """Compile contracts/ with the pinned solc-js into src/ludex/chain/artifacts."""
    from ludex.chain.artifacts import compile_contracts

    try:
        result = compile_contracts(check=check)
    except ChainError as exc:
        typer.echo(f"ludex: ChainError: {exc}", err=True)
        raise typer.Exit(1) from None
    if result.stdout:
        typer.echo(result.stdout, nl=False)
    if result.stderr:
        typer.echo(result.stderr, nl=False, err=True)
    raise typer.Exit(result.returncode)


@chain_app.command("reconcile")
def chain_reconcile(
    contract: Annotated[
        str | None,
        typer.Option("--contract", help="The Ludex contract (default: LUDEX_CHAIN_CONTRACT)."),
    ] = None,
    rpc: Annotated[
        str | None,
        typer.Option(
            "--rpc",
            help="JSON-RPC URL of the node (default: LUDEX_CHAIN_URL; anvil:// reads the "
            "local node on LUDEX_ANVIL_PORT).",
        ),
    ] = None,
    players: Annotated[
        list[str] | None,
        typer.Option(
            "--players",
            metavar="ADDR",
            help="Also compare these players (repeat the option or separate with commas).",
        ),
    ] = None,
    block: Annotated[
        int | None,
        typer.Option(
            "--block",
            help="Read the contract at this block (default: the watcher's "
            "confirmed block, its cursor minus LUDEX_CHAIN_CONFIRMATIONS).",
        ),
    ] = None,
) -> None:
    """Compare the vault's on-chain balances with the ledger per player; exit 1 on any
    difference (reads only: the store named by LUDEX_STORE_URL and the node)."""
    import asyncio
    from urllib.parse import urlsplit

    from ludex.adapters.chain.jsonrpc import JsonRpcChain
    from ludex.adapters.sql import create_store
    from ludex.chain.reconcile import Report, reconcile
    from ludex.config import load_settings
    from ludex.errors import ConfigError, LudexError

    try:
        settings = load_settings()
    except ConfigError as exc:
        typer.echo(f"ludex: configuration error\n{exc}", err=True)
        raise typer.Exit(2) from None
    address = contract or settings.chain_contract
    if address is None:
        typer.echo("ludex: no contract: pass --contract or set LUDEX_CHAIN_CONTRACT", err=True)
        raise typer.Exit(2)
    url = rpc or settings.chain_url
    if urlsplit(url).scheme == "anvil":
        url = f"http://127.0.0.1:{settings.anvil_port}"
    named = [p.strip() for value in players or [] for p in value.split(",") if p.strip()]

    async def main() -> Report:
        store = create_store(settings.store_url, pool_size=2)
        node = JsonRpcChain(url)
        await store.start()
        await node.start()
        try:
            await store.migrate()
            return await reconcile(
                store,
                node,
                contract=address,
                ledger_unit=settings.chain_ledger_unit,
                confirmations=settings.chain_confirmations,
                players=named,
                block=block,
            )
        finally:
            await node.close()
            await store.close()

    try:
        report = asyncio.run(main())
    except (LudexError, ValueError) as exc:
        typer.echo(f"ludex: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1) from None
    for difference in report.differences:
        typer.echo(f"DIFF  {difference}")
    where = f"{report.contract} on chain {report.chain_id} at block {report.block}"
    counted = f"{report.players} players, {report.tokens} tokens, {report.compared} balances"
    if report.ok:
        typer.echo(f"{counted} compared, {where}: no differences")
        return
    typer.echo(f"{counted} compared, {where}: {len(report.differences)} difference(s)")
    raise typer.Exit(1)


# --- the operator keystore, deployment and the devnet (ludex.chain.keystore, .deployment)

keystore_app = typer.Typer(
    help="The operator key: an encrypted Ethereum keystore (v3 JSON).", no_args_is_help=True
)
chain_app.add_typer(keystore_app, name="keystore")


def _chain_fail(exc: Exception, code: int = 1) -> typer.Exit:
    from ludex.errors import ConfigError

    prefix = "configuration error: " if isinstance(exc, ConfigError) else ""
    typer.echo(f"ludex: {prefix}{type(exc).__name__}: {exc}", err=True)
    return typer.Exit(2 if isinstance(exc, ConfigError) else code)


def _chain_settings(**overrides: object) -> Settings:
    from ludex.config import load_settings
    from ludex.errors import ConfigError
    from ludex.ops.logging import configure_logging

    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigError as exc:
        typer.echo(f"ludex: configuration error\n{exc}", err=True)
        raise typer.Exit(2) from None
    configure_logging(settings.log_level, json=settings.log_json, service=settings.service_name)
    return settings


@keystore_app.command("new")
def keystore_new(
    path: Annotated[str, typer.Argument(help="Where to write the keystore (never overwritten).")],
    password_file: Annotated[
        str | None,
        typer.Option(
            "--password-file", help="Read the password from this file (else asked twice)."
        ),
    ] = None,
) -> None:
    """Create a new operator key in an encrypted keystore (mode 0600); print its address."""
    import json
    from pathlib import Path

    from ludex.chain.keystore import new_keystore
    from ludex.errors import ConfigError

    try:
        if password_file is not None:
            text = Path(password_file).read_text(encoding="utf-8").rstrip("\r\n")
        else:
            text = typer.prompt("Keystore password", hide_input=True, confirmation_prompt=True)
        address = new_keystore(path, text)
    except (ConfigError, OSError) as exc:
        raise _chain_fail(exc) from None
    typer.echo(json.dumps({"address": address, "keystore": path}))


@chain_app.command("deploy")
def chain_deploy(
    rpc: Annotated[str, typer.Option("--rpc", help="JSON-RPC URL of the node (http or https).")],
    keystore: Annotated[
        str | None,
        typer.Option("--keystore", help="Deployer keystore (default: LUDEX_OPERATOR_KEYSTORE)."),
    ] = None,
    password_file: Annotated[
        str | None,
        typer.Option(
            "--password-file",
            help="Its password file (default: LUDEX_OPERATOR_PASSWORD_FILE, then "
            "LUDEX_OPERATOR_PASSWORD).",
        ),
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option("--owner", help="Hand ownership to this address (it must accept)."),
    ] = None,
    operator: Annotated[
        str | None, typer.Option("--operator", help="The operator (default: the deployer).")
    ] = None,
) -> None:
    """Deploy the Ludex contract, appoint the operator; print JSON (address, chain, tx, gas)."""
    import asyncio
    import json

    from ludex.adapters.chain.jsonrpc import JsonRpcChain
    from ludex.chain.deployment import Deployed, deploy_ludex
    from ludex.chain.keystore import KeystoreSigner
    from ludex.errors import LudexError

    settings = _chain_settings(operator_keystore=keystore, operator_password_file=password_file)

    async def main() -> Deployed:
        signer = await asyncio.to_thread(KeystoreSigner.from_settings, settings)
        node = JsonRpcChain(rpc)
        try:
            return await deploy_ludex(node, signer, owner=owner, operator=operator)
        finally:
            await node.close()

    try:
        deployed = asyncio.run(main())
    except (LudexError, ValueError) as exc:
        raise _chain_fail(exc) from None
    typer.echo(json.dumps(deployed.as_json(), indent=2))


@chain_app.command("devnet")
def chain_devnet(
    port: Annotated[
        int, typer.Option("--port", help="anvil's port (reused if a node answers).")
    ] = (8545),
    players: Annotated[int, typer.Option("--players", min=0, max=100, help="Test players.")] = 3,
    directory: Annotated[
        str | None,
        typer.Option("--dir", help="Keystore and players file (default: LUDEX_DATA_DIR/devnet)."),
    ] = None,
    no_wait: Annotated[
        bool,
        typer.Option(
            "--no-wait",
            help="Exit after the setup (a node this command started stops with it).",
        ),
    ] = False,
) -> None:
    """Start anvil, deploy Ludex and a TestToken, fund test players; print JSON; run until
    Ctrl-C."""
    import asyncio
    import json
    from pathlib import Path

    from ludex.adapters.chain.anvil import AnvilChain
    from ludex.chain.deployment import setup_devnet
    from ludex.errors import LudexError

    settings = _chain_settings()
    where = Path(directory) if directory else Path(settings.data_dir) / "devnet"

    async def main() -> None:
        node = AnvilChain(anvil_bin=settings.anvil_bin, port=port)
        await node.start()
        try:
            summary = await setup_devnet(
                node, where, players=players, rpc_url=f"http://127.0.0.1:{port}"
            )
            typer.echo(json.dumps(summary, indent=2))
            if not no_wait:
                typer.echo(f"ludex: devnet on http://127.0.0.1:{port}; Ctrl-C stops it", err=True)
                await asyncio.Event().wait()
        finally:
            await node.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return
    except (LudexError, OSError) as exc:
        raise _chain_fail(exc) from None
