"""Reconciliation of the vault mirror: the contract's balances against the ledger's.

For every player and token the mirror knows (their ``vault:`` / ``locked:`` ledger
accounts and the events the watcher stored) plus any player named, the contract's
``available`` and ``locked`` are read, converted to ledger units (floor of the exact
amount over ``ledger_unit``, what the watcher mirrors; see :mod:`ludex.chain.vault`)
and compared with the ledger's posted balances. For every token, the contract's
``treasury(token)`` (the rake of settled hands) is compared the same way with the
``vault-treasury:`` account. :func:`compare` and :func:`compare_treasury` are the pure
comparisons; :func:`reconcile` gathers both sides (the store, then the node).

The contract is read at the watcher's confirmed block (its cursor minus the
confirmation depth) unless a block is given, so events still waiting for their
confirmations are not reported as differences. Settled hands are mirrored by the
settlement service when their batch is confirmed, at its own depth: a batch confirmed
above the block read (a watcher lagging behind) shows as ``locked`` and ``treasury``
differences until the watcher catches up. The owner's ``moveTreasury`` is not
mirrored: after one, the treasury shows the amount moved.

Read-only: this module must never write to the store or send a transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from eth_utils.address import to_checksum_address
from sqlalchemy import select

from ludex import ledger
from ludex.adapters.sql.tables import chain_cursors, chain_vault_balances, chain_vault_events
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import Contract, contract_at
from ludex.chain.vault import (
    NATIVE,
    Holding,
    ledger_tag,
    ledger_units,
    parse_account_id,
    treasury_accounts,
    watcher_cursor,
)
from ludex.errors import ChainError, ChainRpcError
from ludex.ports.chain import ChainClient
from ludex.ports.store import OperationalStore

BUCKETS: Final = ("available", "locked")
TREASURY: Final = "treasury"


@dataclass(frozen=True, slots=True)
class Difference:
    """One balance where the contract and the ledger disagree. A treasury's ``player``
    is the contract and its ``bucket`` is ``treasury``."""

    player: str
    token: str
    bucket: str
    chain_amount: int
    chain_units: int
    ledger_units: int | None

    def __str__(self) -> str:
        ledger_side = "no account" if self.ledger_units is None else str(self.ledger_units)
        return (
            f"{self.player} token {self.token} {self.bucket}: chain {self.chain_units} units "
            f"({self.chain_amount} base units), ledger {ledger_side} "
            f"(ledger - chain = {(self.ledger_units or 0) - self.chain_units})"
        )


def compare(
    chain: Mapping[tuple[str, str], Holding],
    ledger_side: Mapping[tuple[str, str, str], int],
    unit: int,
) -> list[Difference]:
    """Every difference between on-chain holdings and ledger balances.

    ``chain`` maps (player, token) to the exact on-chain amounts; ``ledger_side`` maps
    (player, token, bucket) to the ledger balance in units. A pair missing on one side
    counts as zero there (a missing ledger account is reported as such when the
    chain holds at least one unit). Sorted by player, token, bucket.
    """
    if unit < 1:
        raise ValueError(f"the ledger unit must be >= 1, got {unit}")
    pairs = set(chain) | {(p, t) for p, t, _ in ledger_side}
    out = []
    for player, token in sorted(pairs):
        held = chain.get((player, token), Holding())
        for bucket in BUCKETS:
            exact = held.available if bucket == "available" else held.locked
            expected = ledger_units(exact, unit)
            actual = ledger_side.get((player, token, bucket))
            if (actual if actual is not None else 0) != expected:
                out.append(Difference(player, token, bucket, exact, expected, actual))
    return out


def compare_treasury(
    contract: str,
    chain: Mapping[str, int],
    ledger_side: Mapping[str, int],
    unit: int,
) -> list[Difference]:
    """Every difference between the contract's treasuries and the ledger's.

    ``chain`` maps a token to ``treasury(token)`` (exact), ``ledger_side`` a token to
    the balance of its ``vault-treasury:`` account in units; a token missing on one
    side counts as zero there (no account: reported as such). Sorted by token.
    """
    if unit < 1:
        raise ValueError(f"the ledger unit must be >= 1, got {unit}")
    out = []
    for token in sorted(set(chain) | set(ledger_side)):
        exact = chain.get(token, 0)
        expected = ledger_units(exact, unit)
        actual = ledger_side.get(token)
        if (actual if actual is not None else 0) != expected:
            out.append(Difference(contract, token, TREASURY, exact, expected, actual))
    return out


@dataclass(frozen=True, slots=True)
class Report:
    chain_id: int
    contract: str
    block: int | str
    players: int
    tokens: int
    compared: int
    differences: list[Difference]

    @property
    def ok(self) -> bool:
        return not self.differences


async def reconcile(
    store: OperationalStore,
    chain: ChainClient,
    *,
    contract: str,
    ledger_unit: int,
    confirmations: int,
    players: Iterable[str] = (),
    block: int | None = None,
) -> Report:
    """Compare the contract's balances with the ledger's; see the module docstring."""
    contract = to_checksum_address(contract)
    named = {to_checksum_address(p) for p in players}
    chain_id = await chain.chain_id()
    pairs: set[tuple[str, str]] = set()
    ledger_side: dict[tuple[str, str, str], int] = {}
    treasury_side: dict[str, int] = {}
    async with store.transaction() as session:
        seen = [
            *(
                await session.execute(
                    select(chain_vault_events.c.player, chain_vault_events.c.token)
                    .where(
                        chain_vault_events.c.chain_id == chain_id,
                        chain_vault_events.c.contract == contract,
                    )
                    .distinct()
                )
            ).all(),
            *(  # players the settlement mirror moved (maybe before the watcher saw them)
                await session.execute(
                    select(chain_vault_balances.c.player, chain_vault_balances.c.token).where(
                        chain_vault_balances.c.chain_id == chain_id,
                        chain_vault_balances.c.contract == contract,
                    )
                )
            ).all(),
        ]
        cursor = (
            await session.execute(
                select(chain_cursors.c.block_number).where(
                    chain_cursors.c.chain_id == chain_id,
                    chain_cursors.c.name == watcher_cursor(contract),
                )
            )
        ).scalar()
        pairs.update((to_checksum_address(p), to_checksum_address(t)) for p, t in seen)
        tokens = {NATIVE} | {t for _, t in pairs}
        for token in sorted(tokens):
            tag = ledger_tag(chain_id, contract, token)
            balances = await ledger.ledger_balances(session, ledger.token_ledger(chain_id, token))
            treasury = balances.get(treasury_accounts(chain_id, contract, token).treasury)
            if treasury is not None:
                treasury_side[token] = treasury.balance
            for account_id, balance in balances.items():
                parsed = parse_account_id(account_id)
                if parsed is None or parsed.tag != tag:
                    continue  # another contract's mirror, or not a player account
                ledger_side[(parsed.player, token, parsed.bucket)] = balance.balance
                pairs.add((parsed.player, token))
    pairs.update((player, token) for player in named for token in tokens)
    if block is None and cursor is not None:
        block = max(cursor - confirmations, 0)
    at: int | str = block if block is not None else "latest"
    vault = contract_at(chain, contract, load_artifact("Ludex"))
    holdings: dict[tuple[str, str], Holding] = {}
    for player, token in sorted(pairs):
        available = await _read(chain, vault, "available", (player, token), at)
        locked = await _read(chain, vault, "locked", (player, token), at)
        holdings[(player, token)] = Holding(available, locked)
    treasuries = {token: await _read(chain, vault, TREASURY, (token,), at) for token in tokens}
    return Report(
        chain_id=chain_id,
        contract=contract,
        block=at,
        players=len({p for p, _ in pairs}),
        tokens=len({t for _, t in pairs}),
        compared=2 * len(pairs) + len(treasuries),
        differences=[
            *compare(holdings, ledger_side, ledger_unit),
            *compare_treasury(contract, treasuries, treasury_side, ledger_unit),
        ],
    )


async def _read(
    chain: ChainClient, vault: Contract, name: str, args: tuple[str, ...], at: int | str
) -> int:
    request = {
        "to": vault.address,
        "data": "0x" + vault.abi.encode_call(name, list(args)).hex(),
    }
    tag = hex(at) if isinstance(at, int) else at
    try:
        result = await chain.call("eth_call", [request, tag])
    except ChainRpcError as exc:
        raise ChainError(f"{name}({', '.join(args)}) at block {at}: {exc}") from None
    if not isinstance(result, str) or not result.startswith("0x"):
        raise ChainError(f"{name}: expected 0x-hex data, got {result!r:.80}")
    try:
        data = bytes.fromhex(result[2:])
    except ValueError:
        raise ChainError(f"{name}: expected 0x-hex data, got {result[:20]!r}...") from None
    (value,) = vault.abi.decode_result(name, data)
    return int(value)
