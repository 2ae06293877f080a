"""``ludex chain``: on-chain settlement tooling; for now, compiling the contracts.

``compile`` runs ``scripts/compile-contracts.mjs`` (solc-js from node_modules) on
``contracts/`` and writes the artifacts into ``src/ludex/chain/artifacts``; ``--check``
writes nothing and exits 1 when the committed artifacts do not match the sources.

This is an I/O edge: it prints what the compiler printed and exits with its code. It never
contacts a chain node and never signs anything.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ludex.errors import ChainError

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
