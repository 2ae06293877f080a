"""``ludex poker``: check a table's hand records and replay PHH hand histories.

``verify FILE`` re-derives each hand's deck from its revealed seeds and checks every
dealt card, the record hashes and the chain links (:mod:`ludex.poker.record`);
``replay FILE.phh`` plays a hand history through the engine and compares the result
with the file's ``finishing_stacks`` (:func:`ludex.poker.phh.replay`). Both exit 1 when
something does not match and say what.

This is the I/O edge: it reads the file and prints; the checks themselves are pure.
It is mounted on the main command as ``ludex poker`` (``ludex.cli``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ludex.errors import FairnessError, HandHistoryError
from ludex.poker.phh import ReplayResult

poker_app = typer.Typer(
    help="Poker: verify provably fair hand records, replay PHH hand histories.",
    no_args_is_help=True,
)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        typer.echo(f"ludex: cannot read {path}: {exc}", err=True)
        raise typer.Exit(1) from None


@poker_app.command("verify")
def verify(
    path: Annotated[
        Path,
        typer.Argument(
            help="A hand record (JSON) or a table's chain of records (JSON lines), in order.",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON.")] = False,
) -> None:
    """Re-derive each hand's deck from its seeds; check every card, hash and chain link."""
    from ludex.poker.record import loads_records, verify_chain

    try:
        records = loads_records(_read(path))
    except FairnessError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": str(exc)}, indent=2))
        else:
            typer.echo(f"ludex: {path}: {exc}", err=True)
        raise typer.Exit(1) from None
    verdicts = verify_chain(records)
    failed = sum(not v.ok for v in verdicts)
    if as_json:
        body = {
            "ok": not failed,
            "records": [
                {
                    "sequence": v.sequence,
                    "hand_id": v.hand_id,
                    "ok": v.ok,
                    "reason": v.reason or None,
                }
                for v in verdicts
            ],
        }
        typer.echo(json.dumps(body, indent=2))
    else:
        for record, verdict in zip(records, verdicts, strict=True):
            label = f"#{verdict.sequence} hand {verdict.hand_id}"
            if verdict.ok:
                typer.echo(f"OK    {label}: {len(record.dealt)} cards match the committed deck")
            else:
                typer.echo(f"FAIL  {label}: {verdict.reason}")
        typer.echo(f"{len(verdicts) - failed} verified, {failed} failed")
    if failed:
        raise typer.Exit(1)


def _result_json(result: ReplayResult) -> dict[str, Any]:
    expected = result.expected_stacks
    return {
        "variant": result.variant,
        "complete": result.complete,
        "players": [
            {
                "player": f"p{i + 1}",
                "name": name,
                "starting_stack": result.starting_stacks[i],
                "finishing_stack": result.finishing_stacks[i],
                "delta": result.payoffs[i],
                "file_finishing_stack": None if expected is None else expected[i],
            }
            for i, name in enumerate(result.players)
        ],
        "pots": [
            {
                "pot": pot.pot,
                "amount": pot.amount,
                "winners": [f"p{w + 1}" for w in pot.winners],
                "shares": list(pot.shares),
            }
            for pot in result.pots
        ],
        "rake": result.rake,
        "agrees_with_file": result.agrees,
        "mismatches": result.mismatch_lines(),
    }


@poker_app.command("replay")
def replay(
    path: Annotated[
        Path,
        typer.Argument(
            help="A PHH hand history (.phh).", exists=True, dir_okay=False, readable=True
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Replay a PHH hand with the ludex engine; print finishing stacks, deltas, pots, rake.

    Exits 1 if an action is illegal (naming its 0-based index in ``actions`` and the
    engine's reason) or if the result differs from the file's ``finishing_stacks``.
    """
    from ludex.poker import phh

    try:
        result = phh.replay(phh.loads(_read(path)))
    except HandHistoryError as exc:
        if as_json:
            error: dict[str, Any] = {"message": str(exc)}
            if isinstance(exc, phh.IllegalHistoryAction):
                error |= {"index": exc.index, "action": exc.action, "reason": exc.reason}
            typer.echo(json.dumps({"error": error}, indent=2))
        else:
            typer.echo(f"ludex: {path}: {exc}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(_result_json(result), indent=2))
    else:
        _print_result(result)
    if result.mismatches:
        if not as_json:
            typer.echo("finishing stacks differ from the file:", err=True)
            for line in result.mismatch_lines():
                typer.echo(f"  {line}", err=True)
        raise typer.Exit(1)


def _print_result(result: ReplayResult) -> None:
    state = "complete" if result.complete else "incomplete: stacks after the last action"
    typer.echo(f"{result.variant}, {len(result.players)} players ({state})")
    names = [
        f"p{i + 1} {name}" if name != f"p{i + 1}" else name for i, name in enumerate(result.players)
    ]
    width = max(len("player"), *(len(n) for n in names))
    expected = result.expected_stacks
    header = f"{'player':<{width}}  {'start':>12}  {'finish':>12}  {'delta':>12}"
    typer.echo(header + ("  file" if expected is not None else ""))
    for i, name in enumerate(names):
        line = (
            f"{name:<{width}}  {result.starting_stacks[i]:>12}  {result.finishing_stacks[i]:>12}"
            f"  {result.payoffs[i]:>+12}"
        )
        if expected is not None:
            line += "  ok" if i not in result.mismatches else f"  DIFFERS (file: {expected[i]})"
        typer.echo(line)
    for pot in result.pots:
        winners = ", ".join(
            f"p{w + 1} {share}" for w, share in zip(pot.winners, pot.shares, strict=True)
        )
        typer.echo(
            f"{'main pot' if pot.pot == 0 else f'side pot {pot.pot}'}: {pot.amount} to {winners}"
        )
    typer.echo(f"rake: {result.rake}")
    if expected is not None and not result.mismatches:
        typer.echo("finishing stacks agree with the file")
