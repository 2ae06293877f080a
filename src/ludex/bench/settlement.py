"""Settlement benchmark on anvil: gas per settled hand by batch size, and hands per second.

Deploys a fresh Ludex contract from a fresh account (funded with ``anvil_setBalance``),
seats ``seats`` players who deposit and lock native coin, then settles signed batches
of chained hands (each loser pays 10, the winner takes the rest minus a rake of 2):

* ``gas``: for each batch size (1, 10, 100), one batch at a table that has already
  settled a hand (the steady state of a running table: its head slot and its
  players' balances exist) and one batch spread over ``tables`` fresh tables (worst
  case: every table head is a new slot). Gas per hand is the receipt's gas over
  the hands; it includes the 21,000 of the transaction and the calldata.
* ``throughput``: ``rounds`` batches of the largest size at one table, one after the
  other, each signed (EIP-712, eth-account), sent, mined (anvil automines) and its
  receipt read: hands settled per second end to end.

Only runs on an anvil node (it checks ``web3_clientVersion``): it sets balances.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final

from eth_account import Account
from eth_utils.crypto import keccak

from ludex.adapters.chain.anvil import AnvilChain, free_port, set_balance
from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.bench._common import header, per_second, progress, redacted, resolve
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import Contract, Transactor, deploy
from ludex.chain.settlement import (
    NATIVE,
    ZERO_RECORD,
    Hand,
    hand_record,
    sign_settlement,
    table_runs,
)
from ludex.errors import ChainError

SIZES: Final = (1, 10, 100)
GOAL_GAS_PER_HAND: Final = 15_000
ETHER: Final = 10**18


class _Tables:
    """Chained hands per table for a fixed set of seated players."""

    def __init__(self, players: Sequence[str]) -> None:
        self.players = tuple(players)
        self.heads: dict[int, tuple[int, bytes]] = {}

    def hands(self, table: int, count: int) -> list[Hand]:
        number, previous = self.heads.get(table, (0, ZERO_RECORD))
        seats = len(self.players)
        out = []
        for n in range(number + 1, number + count + 1):
            winner = n % seats
            hand = Hand(
                table_id=table,
                hand_number=n,
                token=NATIVE,
                commitment=keccak(text=f"bench {table}/{n}"),
                previous_record=previous,
                rake=2,
                players=self.players,
                deltas=tuple(10 * (seats - 1) - 2 if s == winner else -10 for s in range(seats)),
            )
            out.append(hand)
            previous = hand_record(hand)
        self.heads[table] = (number + count, previous)
        return out


async def _settle(
    ludex: Contract, operator: Transactor, chain_id: int, batch_id: int, hands: list[Hand]
) -> int:
    signature = sign_settlement(operator.account.key, chain_id, ludex.address, batch_id, hands)
    receipt = await ludex.transact(operator, "settle", batch_id, table_runs(hands), signature)
    return receipt.gas_used


async def _funded(chain: JsonRpcChain) -> Transactor:
    account = Account.create()
    await set_balance(chain, account.address, 10_000 * ETHER)
    return Transactor(chain, account)


async def _measure(chain: JsonRpcChain, *, seats: int, tables: int, rounds: int) -> dict[str, Any]:
    version = await chain.call("web3_clientVersion", [])
    if "anvil" not in str(version).lower():
        raise ChainError(f"bench settlement runs only on anvil; this node is {version!r}")
    chain_id = await chain.chain_id()
    owner = await _funded(chain)
    operator = await _funded(chain)
    players = [await _funded(chain) for _ in range(seats)]
    progress(f"settlement: deploying Ludex, seating {seats} players")
    ludex, deployed = await deploy(owner, load_artifact("Ludex"), owner.address)
    await ludex.transact(owner, "setOperator", operator.address, True)
    for player in players:
        await ludex.transact(player, "deposit", value=100 * ETHER)
        await ludex.transact(player, "lock", NATIVE, 100 * ETHER)
    book = _Tables([p.address for p in players])
    batch_id = 0
    next_table = 1_000

    async def settle(hands: list[Hand]) -> int:
        nonlocal batch_id
        batch_id += 1
        return await _settle(ludex, operator, chain_id, batch_id, hands)

    await settle(book.hands(1, 1))  # table 1 is running: its head and balances exist
    gas: dict[str, Any] = {}
    for size in SIZES:
        progress(f"settlement: batches of {size}")
        running = await settle(book.hands(1, size))
        spread_tables = min(tables, size)
        per_table = size // spread_tables
        fresh = []
        for _ in range(spread_tables):
            fresh += book.hands(next_table, per_table)
            next_table += 1
        spread = await settle(fresh)
        gas[str(size)] = {
            "one_running_table": {"gas": running, "per_hand": round(running / size)},
            "fresh_tables": {
                "tables": spread_tables,
                "gas": spread,
                "per_hand": round(spread / len(fresh)),
            },
        }
    size = SIZES[-1]
    progress(f"settlement: throughput, {rounds} batches of {size}")
    started = time.perf_counter()
    for _ in range(rounds):
        await settle(book.hands(1, size))
    elapsed = time.perf_counter() - started
    settled = int((await ludex.call("tables", 1))[1])
    expected = 1 + sum(SIZES) + rounds * size
    if settled != expected:
        raise ChainError(f"bench: table 1 settled {settled} hands, expected {expected}")
    per_hand_at_100 = gas[str(SIZES[-1])]["one_running_table"]["per_hand"]
    return {
        "node": str(version),
        "seats": seats,
        "deploy_gas": deployed.gas_used,
        "gas_per_hand": gas,
        "goal": {
            "max_gas_per_hand_at_100": GOAL_GAS_PER_HAND,
            "met_at_one_running_table": per_hand_at_100 <= GOAL_GAS_PER_HAND,
        },
        "throughput": {
            "batches": rounds,
            "batch_size": size,
            "seconds": round(elapsed, 3),
            "hands_per_s": per_second(rounds * size, elapsed),
        },
    }


async def run(
    *, anvil: str | None = None, seats: int = 6, tables: int = 10, rounds: int = 5
) -> dict[str, Any]:
    """On the anvil at ``anvil`` (default: the local service), or on one started here."""
    url, _ = resolve("anvil", anvil)
    own: AnvilChain | None = None
    if url is None:
        own = AnvilChain(port=free_port())
        await own.start()
        chain: JsonRpcChain = own
    else:
        chain = JsonRpcChain(url)
        await chain.start()
    try:
        result = await _measure(chain, seats=seats, tables=tables, rounds=rounds)
    finally:
        await chain.close()
    return header(
        "settlement",
        chain=redacted(url) if url else "anvil started by the benchmark",
        **result,
        note=(
            "Gas per hand = receipt gas / hands (21,000 base and calldata included). "
            "one_running_table: every hand at a table that already settled one; "
            "fresh_tables: the batch spread over new tables. Throughput: sign (EIP-712), "
            "send, mine (anvil automine) and read the receipt, batch after batch."
        ),
    )
