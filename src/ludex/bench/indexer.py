"""Indexer benchmark: backfill and live-follow rates on a generated anvil chain, and ethereum-etl.

Starts a dedicated anvil on a free port, deploys TestToken, TestNFT, TestMulti and Ludex,
then mines ``blocks`` blocks with automine off, each holding ``txs_per_block`` locally
signed transactions sent as one JSON-RPC batch (native transfers, ERC-20 transfers,
ERC-721 mints, ERC-1155 single and batch mints, Ludex deposits). Then:

* ``backfill``: the Indexer pipeline indexes blocks 0..head into a fresh store per
  backend (SQLite in a temp folder; PostgreSQL in a fresh database; SQLite plus chDB
  analytics): blocks/s, transactions/s, logs/s; the stored counts are checked against
  the generated workload.
* ``live``: the follower runs (polling, woken by ``newHeads``) while blocks are mined at
  ``live_rate`` per second; latency from just before ``evm_mine`` until the block's rows
  and its ``chain.block`` outbox event are queryable (both are written in one
  transaction; the bench polls the store), and the head lag at the end.
* ``peer``: ethereum-etl (installed on demand into ``.tools/ethereum-etl``, never a
  project dependency) exports blocks, transactions, receipts and logs of the same range.

Only talks to 127.0.0.1 (its own anvil and the local database services); never run it
against a shared node: it disables automining.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from sqlalchemy import func, select

from ludex.adapters.chain.anvil import AnvilChain, free_port, set_balance
from ludex.adapters.sql import create_store
from ludex.adapters.sql.store import SqlStore
from ludex.adapters.sql.tables import idx_blocks, outbox
from ludex.bench._common import header, latency_ms, per_second, progress, redacted, resolve
from ludex.bench._db import fresh_database
from ludex.chain.abi import ContractAbi
from ludex.chain.artifacts import load_artifact
from ludex.chain.contracts import Contract, Transactor, deploy
from ludex.errors import ChainError
from ludex.indexer.pipeline import Indexer
from ludex.indexer.source import RpcSource, watch_new_heads

ETHER: Final = 10**18
GWEI: Final = 10**9
KINDS: Final = ("native", "erc20", "erc721", "erc1155", "erc1155_batch", "deposit")
LOGS_PER_KIND: Final = {k: 0 if k == "native" else 1 for k in KINDS}
GOAL_BACKFILL_RATIO: Final = 10.0
GOAL_LIVE_P99_MS: Final = 200.0
GOAL_HEAD_LAG: Final = 1
ETL_DIR: Final = Path(".tools/ethereum-etl")
ETL_PACKAGES: Final = ("ethereum-etl", "setuptools<70", "parsimonious==0.9.0")


@dataclass(slots=True)
class Workload:
    """What the generator put on the chain (setup included)."""

    transactions: int = 0
    logs: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class _Generator:
    """Signs transactions locally, sends them in JSON-RPC batches, mines with evm_mine."""

    def __init__(self, url: str, chain_id: int, senders: list[LocalAccount]) -> None:
        self.url = url
        self.chain_id = chain_id
        self.senders = senders
        self.nonces = [0] * len(senders)
        self.client = httpx.AsyncClient(timeout=30.0)
        self.counter = 0
        self.contracts: dict[str, tuple[str, ContractAbi]] = {}
        self.workload = Workload()

    async def rpc(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        body = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)
        ]
        answer = (await self.client.post(self.url, json=body)).json()
        by_id = {item["id"]: item for item in answer}
        out = []
        for i in range(len(calls)):
            item = by_id[i]
            if "error" in item:
                raise ChainError(f"bench indexer: {calls[i][0]} failed: {item['error']}")
            out.append(item["result"])
        return out

    def _sign(self, i: int, to: str, data: bytes = b"", value: int = 0, gas: int = 200_000) -> str:
        sender = self.senders[i]
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.chain_id,
            "nonce": self.nonces[i],
            "to": to,
            "value": value,
            "data": data,
            "gas": gas,
            "maxFeePerGas": 100 * GWEI,
            "maxPriorityFeePerGas": GWEI,
        }
        self.nonces[i] += 1
        return "0x" + bytes(sender.sign_transaction(tx).raw_transaction).hex()

    def _call(self, i: int, contract: str, name: str, args: list[Any], value: int = 0) -> str:
        address, abi = self.contracts[contract]
        return self._sign(i, address, abi.encode_call(name, args), value)

    def transaction(self, kind: str) -> str:
        """One signed transaction of ``kind`` from the next sender."""
        self.counter += 1
        n = self.counter
        i = n % len(self.senders)
        other = self.senders[(i + 1) % len(self.senders)].address
        self.workload.transactions += 1
        self.workload.logs += LOGS_PER_KIND[kind]
        self.workload.by_kind[kind] = self.workload.by_kind.get(kind, 0) + 1
        if kind == "native":
            return self._sign(i, other, value=1_000 + n, gas=21_000)
        if kind == "erc20":
            return self._call(i, "token", "transfer", [other, n])
        if kind == "erc721":
            return self._call(i, "nft", "mint", [other, n])
        if kind == "erc1155":
            return self._call(i, "multi", "mint", [other, n % 7, n])
        if kind == "erc1155_batch":
            return self._call(i, "multi", "mintBatch", [other, [1, 2, 3], [n, n, n]])
        return self._call(i, "ludex", "deposit", [], value=GWEI)

    async def block(self, txs: int) -> float:
        """Send ``txs`` transactions (kinds in turn) and mine them in one block; the
        time just before ``evm_mine``."""
        raws = [self.transaction(KINDS[self.counter % len(KINDS)]) for _ in range(txs)]
        if raws:
            await self.rpc([("eth_sendRawTransaction", [r]) for r in raws])
        mined_at = time.perf_counter()
        await self.rpc([("evm_mine", [])])
        return mined_at

    async def close(self) -> None:
        await self.client.aclose()


async def _setup(chain: AnvilChain, senders: list[LocalAccount]) -> _Generator:
    """Deploy the contracts (automine on), fund the senders, then turn automine off."""
    chain_id = await chain.chain_id()
    owner = Account.create()
    for address in [owner.address, *(s.address for s in senders)]:
        await set_balance(chain, address, 10_000 * ETHER)
    me = Transactor(chain, owner)
    gen = _Generator(chain.url, chain_id, senders)
    receipts = []
    for key, name, args in (
        ("token", "TestToken", ("Bench", "BNC")),
        ("nft", "TestNFT", ("Bench NFT", "BNFT")),
        ("multi", "TestMulti", ()),
        ("ludex", "Ludex", (owner.address,)),
    ):
        artifact = load_artifact(name)
        contract, receipt = await deploy(me, artifact, *args)
        gen.contracts[key] = (contract.address, ContractAbi(artifact.abi))
        receipts.append(receipt)
    token_address, token_abi = gen.contracts["token"]
    token = Contract(chain, token_address, token_abi)
    for s in senders:
        receipts.append(await token.transact(me, "mint", s.address, 10**30))
    gen.workload.transactions += len(receipts)
    gen.workload.logs += sum(len(r.logs) for r in receipts)
    await chain.call("evm_setAutomine", [False])
    return gen


async def _rows_visible(store: SqlStore, chain_id: int) -> tuple[int, int]:
    """(highest stored block or -1, chain.block events in the outbox)."""
    async with store.transaction(read_only=True) as session:
        top = await session.scalar(
            select(func.max(idx_blocks.c.number)).where(idx_blocks.c.chain_id == chain_id)
        )
        events = await session.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.event_type == "chain.block")
        )
    return (-1 if top is None else int(top)), int(events or 0)


async def _backend(
    kind: str,
    base_url: str | None,
    *,
    rpc: str,
    chain_id: int,
    head: int,
    workload: Workload,
    gen: _Generator,
    live_seconds: float,
    live_rate: float,
    live_txs: int,
    analytics: bool = False,
    traces: bool = True,
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ludex-bench-indexer-") as folder:
        async with fresh_database(kind, base_url, Path(folder)) as url:
            store = create_store(url, pool_size=4)
            olap = None
            if analytics:
                from ludex.adapters.olap import create_analytics

                olap = create_analytics(f"chdb://{folder}/olap")
                await olap.start()
            source = RpcSource([rpc], max_batch=100, traces=traces)
            await store.start()
            await source.start()
            try:
                await store.migrate()
                indexer = Indexer(
                    store, source, chain_id=chain_id, batch_blocks=100, analytics=olap
                )
                progress(f"indexer: backfill 0..{head} into {kind}{' + chDB' if olap else ''}")
                started = time.perf_counter()
                written = await indexer.backfill(0, head)
                elapsed = time.perf_counter() - started
                counts = await indexer.rows.counts(chain_id)
                expected = (head + 1, workload.transactions, workload.logs)
                got = (counts.blocks, counts.transactions, counts.logs)
                if got != expected or written.blocks != head + 1:
                    raise ChainError(
                        f"bench indexer: {kind} holds blocks/transactions/logs {got}, "
                        f"the chain has {expected}"
                    )
                result: dict[str, Any] = {
                    "blocks": counts.blocks,
                    "transactions": counts.transactions,
                    "logs": counts.logs,
                    "token_transfers": counts.transfers,
                    "contracts": counts.contracts,
                    "seconds": round(elapsed, 3),
                    "blocks_per_s": per_second(counts.blocks, elapsed),
                    "transactions_per_s": per_second(counts.transactions, elapsed),
                    "logs_per_s": per_second(counts.logs, elapsed),
                }
                if olap is None and traces and live_seconds > 0:
                    result["live"] = await _live(
                        indexer,
                        store,
                        gen,
                        chain_id=chain_id,
                        rpc=rpc,
                        seconds=live_seconds,
                        rate=live_rate,
                        txs=live_txs,
                    )
                return result
            finally:
                await source.close()
                await store.close()
                if olap is not None:
                    await olap.close()


async def _live(
    indexer: Indexer,
    store: SqlStore,
    gen: _Generator,
    *,
    chain_id: int,
    rpc: str,
    seconds: float,
    rate: float,
    txs: int,
) -> dict[str, Any]:
    """Mine at ``rate`` blocks/s for ``seconds`` while the follower runs."""
    await indexer.step()  # catch up with blocks an earlier backend's live phase mined
    top, _ = await _rows_visible(store, chain_id)
    _, events_before = await _rows_visible(store, chain_id)
    stop = asyncio.Event()
    watcher_stop = asyncio.Event()
    indexer.poll_interval = 0.01
    follower = asyncio.create_task(indexer.follow(stop))
    watcher = asyncio.create_task(
        watch_new_heads(
            rpc.replace("http://", "ws://"), lambda _n: indexer.wake.set(), watcher_stop
        )
    )
    mined: dict[int, float] = {}
    seen: dict[int, float] = {}
    done = asyncio.Event()

    async def poll() -> None:
        highest, events = top, events_before
        while not (done.is_set() and highest >= max(mined, default=top)):
            highest, events = await _rows_visible(store, chain_id)
            now = time.perf_counter()
            visible_by_events = top + (events - events_before)
            for n in range(top + 1, min(highest, visible_by_events) + 1):
                seen.setdefault(n, now)
            await asyncio.sleep(0.001)

    poller = asyncio.create_task(poll())
    await asyncio.sleep(0.2)  # the follower and the newHeads socket are up
    blocks = max(1, round(seconds * rate))
    start = time.perf_counter()
    number = top
    for k in range(blocks):
        await asyncio.sleep(max(0.0, start + k / rate - time.perf_counter()))
        number += 1
        mined[number] = await gen.block(txs)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(0.05)
    head = int((await gen.rpc([("eth_blockNumber", [])]))[0], 16)
    stored_at_end, _ = await _rows_visible(store, chain_id)
    done.set()
    try:
        await asyncio.wait_for(poller, timeout=10.0)
    finally:
        stop.set()
        watcher_stop.set()
        await follower
        watcher.cancel()
    lags = [seen[n] - mined[n] for n in mined if n in seen]
    if len(lags) != len(mined):
        raise ChainError(f"bench indexer: {len(mined) - len(lags)} live blocks never appeared")
    return {
        "blocks": blocks,
        "rate_blocks_per_s": round(blocks / elapsed, 1),
        "txs_per_block": txs,
        "latency": latency_ms(lags),
        "head_lag_blocks_50ms_after_last": head - stored_at_end,
        "max_head_lag_blocks": max(  # blocks mined but not visible, just before each appeared
            sum(1 for m in mined if mined[m] <= seen[n]) - (n - 1 - top) for n in mined
        ),
    }


async def _node_floor(rpc: str, head: int) -> dict[str, Any]:
    """How fast the node alone serves the backfill's reads (full blocks and receipts, the
    same batching, nothing parsed or stored): no indexer on this node can go faster."""
    async with RpcSource([rpc], max_batch=100) as source:
        started = time.perf_counter()
        await source.batch([("eth_getBlockByNumber", [hex(n), True]) for n in range(head + 1)])
        blocks_s = time.perf_counter() - started
        await source.batch([("eth_getBlockReceipts", [hex(n)]) for n in range(head + 1)])
        elapsed = time.perf_counter() - started
    return {
        "what": "eth_getBlockByNumber(n, true) and eth_getBlockReceipts for every block, "
        "batched as the backfill does, answers not parsed",
        "seconds": round(elapsed, 3),
        "full_blocks_seconds": round(blocks_s, 3),
        "blocks_per_s": per_second(head + 1, elapsed),
    }


def _etl(install: bool) -> Path | str:
    """The ethereumetl executable, installed on demand; or why it is unavailable."""
    exe = ETL_DIR / "bin" / "ethereumetl"
    if exe.exists():
        return exe
    if not install:
        return f"ethereum-etl is not installed in {ETL_DIR}"
    uv = Path(".tools/bin/uv") if Path(".tools/bin/uv").exists() else shutil.which("uv")
    if uv is None:
        return "uv not found: cannot install ethereum-etl into .tools/ethereum-etl"
    try:
        subprocess.run(  # noqa: S603 (fixed arguments, no shell)
            [str(uv), "venv", "--python", "3.11", str(ETL_DIR)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(  # noqa: S603
            [str(uv), "pip", "install", "--python", str(ETL_DIR / "bin" / "python"), *ETL_PACKAGES],
            check=True,
            capture_output=True,
            timeout=300,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return f"could not install ethereum-etl: {type(exc).__name__}"
    return exe


def _rows(path: Path) -> int:
    """Data rows of a CSV file (its header not counted)."""
    with path.open() as f:
        return sum(1 for _ in f) - 1


def _peer(rpc: str, head: int, install: bool) -> dict[str, Any]:
    exe = _etl(install)
    if isinstance(exe, str):
        return {"skipped": exe}
    with tempfile.TemporaryDirectory(prefix="ludex-bench-etl-") as folder:
        out = Path(folder)
        common = ["-p", rpc]
        steps = [
            [
                "export_blocks_and_transactions",
                "-s", "0", "-e", str(head), *common,
                "--blocks-output", str(out / "blocks.csv"),
                "--transactions-output", str(out / "transactions.csv"),
            ],
            [
                "extract_csv_column",
                "-i", str(out / "transactions.csv"), "-c", "hash", "-o", str(out / "hashes.txt"),
            ],
            [
                "export_receipts_and_logs",
                "--transaction-hashes", str(out / "hashes.txt"), *common,
                "--receipts-output", str(out / "receipts.csv"),
                "--logs-output", str(out / "logs.csv"),
            ],
        ]  # fmt: skip
        started = time.perf_counter()
        for step in steps:
            done = subprocess.run(  # noqa: S603
                [str(exe), *step], capture_output=True, text=True, timeout=600, check=False
            )
            if done.returncode != 0:
                return {"failed": f"ethereumetl {step[0]}: {done.stderr.strip()[-300:]}"}
        elapsed = time.perf_counter() - started
        blocks = _rows(out / "blocks.csv")
        transactions = _rows(out / "transactions.csv")
        logs = _rows(out / "logs.csv")
    return {
        "tool": "ethereum-etl export_blocks_and_transactions + export_receipts_and_logs (CSV)",
        "blocks": blocks,
        "transactions": transactions,
        "logs": logs,
        "seconds": round(elapsed, 3),
        "blocks_per_s": per_second(blocks, elapsed),
        "transactions_per_s": per_second(transactions, elapsed),
    }


async def run(
    *,
    blocks: int = 500,
    txs_per_block: int = 8,
    senders: int = 16,
    live_seconds: float = 5.0,
    live_rate: float = 12.0,
    live_txs: int = 4,
    postgres: str | None = None,
    analytics: bool = True,
    peer: bool = True,
) -> dict[str, Any]:
    """Generate the chain on a fresh anvil, then measure every backend and the peer."""
    chain = AnvilChain(port=free_port())
    await chain.start()
    backends: dict[str, Any] = {}
    try:
        accounts = [Account.create() for _ in range(senders)]
        gen = await _setup(chain, accounts)
        progress(f"indexer: generating {blocks} blocks x {txs_per_block} transactions")
        started = time.perf_counter()
        for _ in range(blocks):
            await gen.block(txs_per_block)
        generated = time.perf_counter() - started
        head = await chain.block_number()
        workload = dataclasses.replace(gen.workload, by_kind=dict(gen.workload.by_kind))
        chain_id = gen.chain_id
        pg_url, pg_skip = resolve("postgres", postgres)
        # (name, store kind, server URL, ClickHouse too, call traces)
        plan: list[tuple[str, str, str | None, bool, bool]] = [
            ("sqlite", "sqlite", None, False, True),
            ("postgres", "postgres", pg_url, False, True),
            ("sqlite-no-traces", "sqlite", None, False, False),
        ]
        if analytics:
            plan.append(("sqlite+chdb", "sqlite", None, True, True))
        for name, kind, base, olap, traces in plan:
            if kind == "postgres" and pg_url is None:
                backends[name] = {"skipped": pg_skip}
                continue
            try:
                backends[name] = await _backend(
                    kind,
                    base,
                    rpc=chain.url,
                    chain_id=chain_id,
                    head=head,
                    workload=workload,
                    gen=gen,
                    live_seconds=live_seconds,
                    live_rate=live_rate,
                    live_txs=live_txs,
                    analytics=olap,
                    traces=traces,
                )
            except Exception as exc:  # reported in the JSON; the CLI exits 1
                backends[name] = {"failed": f"{type(exc).__name__}: {exc}"}
        progress("indexer: the node's own floor (reads only)")
        floor = await _node_floor(chain.url, head)
        if peer:
            progress("indexer: ethereum-etl over the same range")
            theirs = await asyncio.to_thread(_peer, chain.url, head, True)
        else:
            theirs = {"skipped": "peer disabled on the command line"}
        await gen.close()
    finally:
        await chain.close()
    ours = {n: b["blocks_per_s"] for n, b in backends.items() if "blocks_per_s" in b}
    ratio = {
        n: round(v / theirs["blocks_per_s"], 1)
        for n, v in ours.items()
        if theirs.get("blocks_per_s")
    }
    lives = {n: b["live"] for n, b in backends.items() if "live" in b}
    return header(
        "indexer",
        chain="anvil started by the benchmark",
        postgres=redacted(pg_url) if pg_url else None,
        workload={
            "blocks": head + 1,
            "transactions": workload.transactions,
            "logs": workload.logs,
            "by_kind": workload.by_kind,
            "txs_per_block": txs_per_block,
            "generation_seconds": round(generated, 3),
        },
        backends=backends,
        node_floor=floor,
        peer=theirs,
        ratio_backfill_ours_over_peer=ratio,
        ratio_node_floor_over_peer=(
            round(floor["blocks_per_s"] / theirs["blocks_per_s"], 1)
            if theirs.get("blocks_per_s")
            else None
        ),
        goal={
            "backfill_min_ratio": GOAL_BACKFILL_RATIO,
            "backfill_met": {n: r >= GOAL_BACKFILL_RATIO for n, r in ratio.items()},
            "live_p99_max_ms": GOAL_LIVE_P99_MS,
            "live_p99_met": {
                n: v["latency"]["p99_ms"] < GOAL_LIVE_P99_MS for n, v in lives.items()
            },
            "head_lag_max_blocks": GOAL_HEAD_LAG,
            "head_lag_met": {
                n: v["head_lag_blocks_50ms_after_last"] <= GOAL_HEAD_LAG
                and v["max_head_lag_blocks"] <= GOAL_HEAD_LAG
                for n, v in lives.items()
            },
        },
        note=(
            "Backfill: Indexer pipeline, 100-block ranges (the next fetched while one is "
            "stored), one transaction per range with its chain.* outbox events and the "
            "checkpoint; counts checked against the generated workload; call traces read "
            "(internal creations, native balance changes) except in sqlite-no-traces, "
            "which reads what ethereum-etl reads. node_floor: the node serving the blocks "
            "and receipts alone. Live: follower polling every 10 ms and woken by newHeads; "
            "latency from just before evm_mine to the block's rows and chain.block event "
            "being visible to a store poll (1 ms). Peer: ethereum-etl CSV export of the "
            "same range (blocks, transactions, receipts, logs), its default 5 workers."
        ),
    )
