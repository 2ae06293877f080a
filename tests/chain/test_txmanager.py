"""The operator's transaction manager on real anvil nodes.

Nonces across restarts, record-before-broadcast, stuck transactions replaced with higher
fees, dropped ones sent again, reorgs, and RPC errors retried with backoff. Tests that
stop mining, drop transactions or revert the chain run on their own anvil (a free port,
started and stopped by the test) so the shared node is not disturbed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account

from ludex.adapters.chain.anvil import AnvilChain, free_port, set_balance
from ludex.adapters.chain.jsonrpc import JsonRpcChain, parse_quantity
from ludex.adapters.sql import SqlStore, create_store
from ludex.chain.keystore import KeystoreSigner
from ludex.chain.txmanager import (
    CONFIRMED,
    FINAL,
    MINED,
    SENT,
    RetryingChain,
    TxManager,
    TxRecord,
    bumped,
    is_transient,
)
from ludex.errors import BackendUnavailable, ChainError, ChainRpcError, ContractReverted
from tests.conftest import ROOT, service_url

ETHER = 10**18
GWEI = 10**9
ANVIL = ROOT / "node_modules" / ".bin" / "anvil"


async def dedicated_anvil() -> AnvilChain:
    """A fresh anvil on a free port (the caller closes it, which stops the process)."""
    if not ANVIL.exists():
        pytest.fail("anvil is not installed: run `make install` (npm ci)")
    node = AnvilChain(anvil_bin=str(ANVIL), port=free_port())
    await node.start()
    return node


async def funded_signer(chain: Any) -> KeystoreSigner:
    account = Account.create()
    await set_balance(chain, account.address, 1000 * ETHER)
    return KeystoreSigner(account)


async def mine(chain: Any, blocks: int = 1) -> None:
    for _ in range(blocks):
        await chain.call("evm_mine", [])


async def nonce_at(chain: Any, address: str, block: str = "latest") -> int:
    return parse_quantity(await chain.call("eth_getTransactionCount", [address, block]), "n")


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    sql = create_store(f"sqlite:///{tmp_path}/ludex.db")
    await sql.start()
    await sql.migrate()
    yield sql
    await sql.close()


@pytest.fixture
async def shared() -> AsyncIterator[JsonRpcChain]:
    client = JsonRpcChain(service_url("anvil"))
    await client.start()
    yield client
    await client.close()


@pytest.fixture
async def node() -> AsyncIterator[AnvilChain]:
    chain = await dedicated_anvil()
    yield chain
    await chain.close()


class Changes:
    """A listener that remembers every change it is told about."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []

    async def __call__(self, session: Any, record: TxRecord, change: str) -> None:
        assert session.in_transaction()
        self.seen.append((change, record.tx_hash, record.nonce))

    def names(self) -> list[str]:
        return [c for c, _, _ in self.seen]


async def poll_until(txm: TxManager, status: str, tx_id: int, *, chain: Any = None) -> TxRecord:
    """Poll (mining a block between rounds when ``chain`` is given) until the status."""
    for _ in range(50):
        await txm.poll()
        record = await txm.get(tx_id)
        assert record is not None
        if record.status == status:
            return record
        if chain is not None:
            await mine(chain)
        else:
            await asyncio.sleep(0.02)
    raise AssertionError(f"transaction {tx_id} never reached {status}: {record}")


# -- nonces -----------------------------------------------------------------------------


async def test_nonce_survives_a_restart_and_is_never_reused(
    store: SqlStore, shared: JsonRpcChain
) -> None:
    signer = await funded_signer(shared)
    first = TxManager(store, shared, signer, confirmations=0)
    assert await first.start() == 0
    a = await first.send("test:a", signer.address, b"", gas=21_000, value=1)
    b = await first.send("test:b", signer.address, b"", gas=21_000, value=1)
    assert (a.nonce, b.nonce) == (0, 1)

    second = TxManager(store, shared, signer, confirmations=0)
    assert await second.start() == 2
    c = await second.send("test:c", signer.address, b"", gas=21_000, value=1)
    assert c.nonce == 2
    for record in (a, b, c):
        await poll_until(second, CONFIRMED, record.id)
    assert await nonce_at(shared, signer.address) == 3
    nonces = [r.nonce for r in await second.transactions()]
    assert sorted(nonces) == [0, 1, 2] == sorted(set(nonces))


async def test_start_takes_the_node_nonce_when_the_key_was_used_elsewhere(
    store: SqlStore, shared: JsonRpcChain
) -> None:
    signer = await funded_signer(shared)
    txm = TxManager(store, shared, signer)
    assert await txm.start() == 0
    # The same key sends two transactions behind our back.
    for nonce in range(2):
        raw = await signer.sign_transaction(
            {
                "type": 2,
                "chainId": txm.chain_id,
                "nonce": nonce,
                "gas": 21_000,
                "maxFeePerGas": 10 * GWEI,
                "maxPriorityFeePerGas": GWEI,
                "to": signer.address,
                "value": 0,
                "data": b"",
            }
        )
        await shared.call("eth_sendRawTransaction", ["0x" + raw.hex()])
    again = TxManager(store, shared, signer)
    assert await again.start() == 2
    record = await again.send("test:after", signer.address, b"", gas=21_000)
    assert record.nonce == 2


async def test_a_crash_after_recording_loses_nothing(store: SqlStore, shared: JsonRpcChain) -> None:
    """Recorded, then the process dies before the broadcast: the restart sends it."""
    signer = await funded_signer(shared)

    async def crash(record: TxRecord) -> None:
        raise RuntimeError("crash between record and broadcast")

    doomed = TxManager(store, shared, signer, confirmations=1, after_record=crash)
    await doomed.start()
    with pytest.raises(RuntimeError, match="crash between"):
        await doomed.send("test:crash", signer.address, b"", gas=21_000, value=7)
    assert await nonce_at(shared, signer.address, "pending") == 0  # never broadcast

    changes = Changes()
    revived = TxManager(store, shared, signer, confirmations=1, listener=changes)
    assert await revived.start() == 1  # nonce 0 is ours, recorded: not reused
    [record] = await revived.transactions()
    assert record.status == "recorded"
    done = await poll_until(revived, CONFIRMED, record.id, chain=shared)
    assert done.tx_hash == record.tx_hash
    assert done.nonce == 0
    assert changes.names()[0] == SENT
    assert CONFIRMED in changes.names()
    assert await nonce_at(shared, signer.address) == 1


# -- fees, replacement, drops -------------------------------------------------------------


def test_bumps_are_at_least_an_eighth_and_one() -> None:
    assert bumped(1000, 0.13) == 1130
    assert bumped(1, 0.13) == 2
    assert bumped(8 * GWEI, 0.125) >= 9 * GWEI
    with pytest.raises(ValueError, match="fee_bump"):
        TxManager(None, None, KeystoreSigner(Account.create()), fee_bump=0.1)  # type: ignore[arg-type]


async def test_a_stuck_transaction_is_replaced_with_higher_fees(
    store: SqlStore, node: AnvilChain
) -> None:
    signer = await funded_signer(node)
    await node.call("evm_setAutomine", [False])
    changes = Changes()
    txm = TxManager(store, node, signer, confirmations=1, replace_after_s=0.2, listener=changes)
    await txm.start()
    first = await txm.send("test:stuck", signer.address, b"", gas=21_000, value=1)
    assert await txm.poll() == 0  # in the pool, not waiting long enough yet
    await asyncio.sleep(0.25)
    assert await txm.poll() == 1
    replaced = await txm.get(first.id)
    assert replaced is not None
    assert len(replaced.hashes) == 2
    assert replaced.hashes[0] == first.tx_hash
    assert replaced.tx_hash == replaced.hashes[1] != first.tx_hash
    assert changes.names() == [SENT, "replaced"]
    old = await node.call("eth_getTransactionByHash", [first.tx_hash])
    new = await node.call("eth_getTransactionByHash", [replaced.tx_hash])
    assert old is None  # the node swapped it for the replacement
    assert parse_quantity(new["nonce"], "nonce") == first.nonce
    for fee in ("maxFeePerGas", "maxPriorityFeePerGas"):
        assert parse_quantity(new[fee], fee) >= 1.125 * 3 * GWEI if fee[3] == "F" else GWEI

    await mine(node)
    mined = await poll_until(txm, CONFIRMED, first.id, chain=node)
    assert mined.tx_hash == replaced.tx_hash
    assert await node.call("eth_getTransactionReceipt", [first.tx_hash]) is None
    assert await nonce_at(node, signer.address) == 1  # the nonce was used once


async def test_a_transaction_priced_out_by_the_base_fee_is_repriced(
    store: SqlStore, node: AnvilChain
) -> None:
    signer = await funded_signer(node)
    await node.call("evm_setAutomine", [False])
    txm = TxManager(store, node, signer, confirmations=1, replace_after_s=3600)
    await txm.start()
    first = await txm.send("test:priced-out", signer.address, b"", gas=21_000, value=1)
    # The base fee jumps above what the transaction offers: the node evicts it.
    await node.call("anvil_setNextBlockBaseFeePerGas", [hex(50 * GWEI)])
    await mine(node)
    assert await node.call("eth_getTransactionByHash", [first.tx_hash]) is None
    assert await txm.poll() == 1  # sending it again is refused, so it is re-priced
    replaced = await txm.get(first.id)
    assert replaced is not None
    assert len(replaced.hashes) == 2
    raw = await node.call("eth_getTransactionByHash", [replaced.tx_hash])
    assert parse_quantity(raw["maxFeePerGas"], "fee") >= 100 * GWEI  # today's policy
    await mine(node)
    done = await poll_until(txm, CONFIRMED, first.id, chain=node)
    assert done.tx_hash == replaced.tx_hash
    assert await nonce_at(node, signer.address) == 1


async def test_the_fee_cap_stops_replacements(store: SqlStore, node: AnvilChain) -> None:
    signer = await funded_signer(node)
    await node.call("evm_setAutomine", [False])
    txm = TxManager(store, node, signer, replace_after_s=0, max_fee_cap=3 * GWEI)
    await txm.start()
    record = await txm.send("test:capped", signer.address, b"", gas=21_000)
    await asyncio.sleep(0.01)
    assert await txm.poll() == 0
    again = await txm.get(record.id)
    assert again is not None
    assert again.hashes == record.hashes


async def test_a_dropped_transaction_is_sent_again(store: SqlStore, node: AnvilChain) -> None:
    signer = await funded_signer(node)
    await node.call("evm_setAutomine", [False])
    changes = Changes()
    txm = TxManager(store, node, signer, confirmations=0, listener=changes)
    await txm.start()
    record = await txm.send("test:dropped", signer.address, b"", gas=21_000, value=3)
    assert await node.call("eth_getTransactionByHash", [record.tx_hash]) is not None
    await node.call("anvil_dropTransaction", [record.tx_hash])
    assert await node.call("eth_getTransactionByHash", [record.tx_hash]) is None

    assert await txm.poll() == 1
    assert changes.names() == [SENT, "rebroadcast"]
    assert await node.call("eth_getTransactionByHash", [record.tx_hash]) is not None
    await mine(node)
    done = await poll_until(txm, CONFIRMED, record.id)
    assert done.tx_hash == record.tx_hash
    assert done.hashes == (record.tx_hash,)


async def test_a_reorg_sends_a_confirmed_transaction_again(
    store: SqlStore, node: AnvilChain
) -> None:
    signer = await funded_signer(node)
    changes = Changes()
    txm = TxManager(store, node, signer, confirmations=2, reorg_window=10, listener=changes)
    await txm.start()
    snapshot = await node.call("evm_snapshot", [])
    record = await txm.send("test:reorged", signer.address, b"", gas=21_000, value=5)
    await poll_until(txm, MINED, record.id)
    confirmed = await poll_until(txm, CONFIRMED, record.id, chain=node)
    assert await node.call("evm_revert", [snapshot]) is True
    await mine(node, 3)  # the other branch grows past the old one
    assert await node.call("eth_getTransactionReceipt", [record.tx_hash]) is None

    await txm.poll()  # notices, and sends the same signed transaction again (automine)
    assert "reorged" in changes.names()
    again = await poll_until(txm, CONFIRMED, record.id, chain=node)
    assert again.tx_hash == record.tx_hash
    assert again.block_hash != confirmed.block_hash
    assert await nonce_at(node, signer.address) == 1
    await mine(node, 12)
    await poll_until(txm, FINAL, record.id)


# -- RPC errors ---------------------------------------------------------------------------


class Flaky:
    """A chain client that fails the first ``failures`` calls of ``method``."""

    def __init__(self, inner: Any, method: str, failures: int, error: Exception) -> None:
        self.inner = inner
        self.method = method
        self.failures = failures
        self.error = error
        self.calls: dict[str, int] = {}

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def chain_id(self) -> int:
        return parse_quantity(await self.call("eth_chainId", []), "eth_chainId")

    async def block_number(self) -> int:
        return parse_quantity(await self.call("eth_blockNumber", []), "eth_blockNumber")

    async def call(self, method: str, params: list[Any]) -> Any:
        self.calls[method] = self.calls.get(method, 0) + 1
        if self.method in (method, "*") and self.failures > 0:
            self.failures -= 1
            raise self.error
        return await self.inner.call(method, params)


def test_which_errors_are_retried() -> None:
    assert is_transient(BackendUnavailable("node down"))
    assert is_transient(ChainError("eth_call: node answered HTTP 502"))
    assert is_transient(ChainRpcError("limit exceeded", code=-32005))
    assert not is_transient(ChainRpcError("execution reverted", code=3, data="0x1234"))
    assert not is_transient(ChainRpcError("nonce too low", code=-32003))
    assert not is_transient(ContractReverted("IsPaused", {}))


async def test_rpc_errors_are_retried_with_backoff(
    store: SqlStore, shared: JsonRpcChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = await funded_signer(shared)
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def record_sleep(delay: float, *args: Any) -> Any:
        sleeps.append(delay)
        return await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", record_sleep)
    flaky = Flaky(shared, "eth_sendRawTransaction", 3, BackendUnavailable("node unreachable"))
    txm = TxManager(store, flaky, signer, retry_initial=0.05, retry_max=1.0)
    await txm.start()
    record = await txm.send("test:flaky", signer.address, b"", gas=21_000)
    assert flaky.calls["eth_sendRawTransaction"] == 4
    assert sleeps[:3] == [0.05, 0.1, 0.2]  # exponential
    assert record.status == SENT
    monkeypatch.undo()
    await poll_until(txm, CONFIRMED, record.id, chain=shared)


async def test_retries_stop_and_the_error_surfaces(shared: JsonRpcChain) -> None:
    down = Flaky(shared, "*", 100, BackendUnavailable("node unreachable"))
    chain = RetryingChain(down, attempts=3, initial=0.001, maximum=0.001)
    with pytest.raises(BackendUnavailable):
        await chain.block_number()
    assert down.calls == {"eth_blockNumber": 3}
    # A node's refusal is an answer, not an outage: no retry.
    refusing = Flaky(shared, "eth_call", 1, ChainRpcError("reverted", code=3, data="0x"))
    with pytest.raises(ChainRpcError):
        await RetryingChain(refusing, attempts=5, initial=0.001).call("eth_call", [{}])
    assert refusing.calls == {"eth_call": 1}
