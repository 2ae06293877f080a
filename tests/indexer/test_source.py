"""RpcSource: batching, validation of node answers, retries, fail-over, rate limit.

Happy paths run on the real anvil; answers no honest node gives (a batch with a missing
or duplicated id, HTTP 429 / 500, garbage) come from an httpx MockTransport.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from eth_account import Account

from ludex.adapters.chain.jsonrpc import JsonRpcChain
from ludex.errors import BackendUnavailable, ChainError, ChainRpcError
from ludex.indexer.source import RpcSource, TokenBucket
from tests.chain.vault_env import ETHER, funded
from tests.conftest import service_url

Handler = Callable[[str, Any], httpx.Response]


def mock_source(handler: Handler, urls: list[str] | None = None, **options: Any) -> RpcSource:
    """An RpcSource whose HTTP goes to ``handler(url, body)``; no waiting between retries."""

    def respond(request: httpx.Request) -> httpx.Response:
        return handler(str(request.url), json.loads(request.content))

    options.setdefault("backoff_s", 0)
    options.setdefault("backoff_max_s", 0)
    return RpcSource(
        urls or ["http://node-a.invalid"], transport=httpx.MockTransport(respond), **options
    )


def ok(body: Any, result: Callable[[dict[str, Any]], Any]) -> httpx.Response:
    if isinstance(body, list):
        return httpx.Response(
            200, json=[{"jsonrpc": "2.0", "id": b["id"], "result": result(b)} for b in body]
        )
    return httpx.Response(200, json={"jsonrpc": "2.0", "id": body["id"], "result": result(body)})


# --- anvil -----------------------------------------------------------------------------


async def test_reads_the_real_node() -> None:
    url = service_url("anvil")
    chain = JsonRpcChain(url)
    await chain.start()
    try:
        sender = await funded(chain)
        receipt = await sender.send(Account.create().address, b"", value=ETHER)
    finally:
        await chain.close()
    async with RpcSource([url], max_batch=3) as source:
        assert await source.chain_id() == 31337
        head = await source.head()
        assert head >= receipt.block_number
        raw = await source.block(receipt.block_number)
        assert raw is not None
        assert any(tx["hash"] == receipt.tx_hash for tx in raw["transactions"])
        receipts = await source.block_receipts(receipt.block_number)
        assert receipt.tx_hash in {r["transactionHash"] for r in receipts}
        assert source.has_block_receipts is True
        safe, finalized = await source.tag_number("safe"), await source.tag_number("finalized")
        assert safe is not None
        assert finalized is not None
        assert finalized <= safe <= head
        hashes = await source.block_hashes(max(0, head - 6), head)  # 3 batches of 3 at most
        assert hashes[receipt.block_number] == raw["hash"]
        assert await source.block_hash(head + 1000) is None
        bundles = await source.fetch_bundles(receipt.block_number, receipt.block_number)
        assert [b.block.hash for b in bundles] == [raw["hash"]]
        assert receipt.tx_hash in {t.hash for t in bundles[0].transactions}


# --- malformed answers -----------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda items: items[:-1], id="missing-answer"),
        pytest.param(lambda items: [items[0], items[0], *items[2:]], id="duplicate-id"),
        pytest.param(lambda items: [{**items[0], "id": 999_999}, *items[1:]], id="unknown-id"),
        pytest.param(lambda items: [{"id": items[0]["id"]}, *items[1:]], id="no-result"),
        pytest.param(lambda items: {"not": "a list"}, id="object-for-batch"),
    ],
)
async def test_a_malformed_batch_answer_is_retried_then_refused(
    tamper: Callable[[list[dict[str, Any]]], Any],
) -> None:
    calls = 0

    def handler(url: str, body: Any) -> httpx.Response:
        nonlocal calls
        calls += 1
        items = [{"jsonrpc": "2.0", "id": b["id"], "result": "0x1"} for b in body]
        return httpx.Response(200, json=tamper(items))

    source = mock_source(handler, attempts=3)
    with pytest.raises(ChainError):
        await source.batch([("eth_blockNumber", []) for _ in range(3)])
    assert calls == 3
    await source.close()


async def test_answers_are_matched_by_id_not_position() -> None:
    def handler(url: str, body: Any) -> httpx.Response:
        items = [{"jsonrpc": "2.0", "id": b["id"], "result": b["params"][0]} for b in body]
        return httpx.Response(200, json=list(reversed(items)))

    source = mock_source(handler)
    assert await source.batch([("echo", [n]) for n in range(5)]) == [0, 1, 2, 3, 4]
    await source.close()


async def test_garbage_then_429_then_500_then_success() -> None:
    answers = iter(
        [
            httpx.Response(200, content=b"<html>busy</html>"),
            httpx.Response(429),
            httpx.Response(503),
        ]
    )

    def handler(url: str, body: Any) -> httpx.Response:
        nxt = next(answers, None)
        return nxt if nxt is not None else ok(body, lambda b: "0x2a")

    source = mock_source(handler, attempts=4, failover_after=10)
    assert await source.head() == 42
    assert source.rpc_errors == 3
    await source.close()


async def test_a_server_error_inside_a_batch_retries_the_batch() -> None:
    calls = 0

    def handler(url: str, body: Any) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            items = [{"jsonrpc": "2.0", "id": b["id"], "result": "0x1"} for b in body]
            items[1] = {
                "jsonrpc": "2.0",
                "id": body[1]["id"],
                "error": {"code": -32000, "message": "header not found"},
            }
            return httpx.Response(200, json=items)
        return ok(body, lambda b: "0x1")

    source = mock_source(handler)
    assert await source.batch([("eth_blockNumber", []), ("eth_blockNumber", [])]) == ["0x1", "0x1"]
    assert calls == 2
    await source.close()


async def test_a_permanent_error_is_not_retried() -> None:
    calls = 0

    def handler(url: str, body: Any) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(
            200,
            json={"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32602, "message": "bad"}},
        )

    source = mock_source(handler)
    with pytest.raises(ChainRpcError) as caught:
        await source.head()
    assert caught.value.code == -32602
    assert calls == 1
    await source.close()


async def test_unreachable_node_is_backend_unavailable_after_the_retries() -> None:
    def handler(url: str, body: Any) -> httpx.Response:
        raise httpx.ConnectError("refused")

    source = mock_source(handler, attempts=2)
    with pytest.raises(BackendUnavailable, match=r"node-a\.invalid"):
        await source.head()
    assert source.rpc_errors == 2
    await source.close()


# --- fail-over -------------------------------------------------------------------------


async def test_fails_over_to_the_second_url_and_back_later() -> None:
    seen: list[str] = []
    primary_down = True

    def handler(url: str, body: Any) -> httpx.Response:
        seen.append(url)
        if "node-a" in url and primary_down:
            return httpx.Response(500)
        return ok(body, lambda b: "0x7" if "node-a" in url else "0x8")

    source = mock_source(
        handler,
        urls=["http://node-a.invalid", "http://user:secret@node-b.invalid"],
        failover_after=2,
        failback_s=0.2,
    )
    assert await source.head() == 8
    assert [u.split("//")[-1].split("@")[-1] for u in seen] == [
        "node-a.invalid",
        "node-a.invalid",
        "node-b.invalid",
    ]
    assert "secret" not in source.display_url
    assert await source.head() == 8  # stays on the second URL
    primary_down = False
    time.sleep(0.25)
    assert await source.head() == 7  # back on the first
    await source.close()


# --- receipts --------------------------------------------------------------------------


async def test_falls_back_to_one_receipt_per_transaction_when_block_receipts_is_missing() -> None:
    methods: list[str] = []
    hashes = ["0x" + "aa" * 32, "0x" + "bb" * 32]

    def handler(url: str, body: Any) -> httpx.Response:
        items = body if isinstance(body, list) else [body]
        methods.extend(b["method"] for b in items)
        out = []
        for b in items:
            if b["method"] == "eth_getBlockReceipts":
                out.append(
                    {
                        "jsonrpc": "2.0",
                        "id": b["id"],
                        "error": {"code": -32601, "message": "Method not found"},
                    }
                )
            elif b["method"] == "eth_getBlockByNumber":
                out.append({"jsonrpc": "2.0", "id": b["id"], "result": {"transactions": hashes}})
            else:
                out.append(
                    {"jsonrpc": "2.0", "id": b["id"], "result": {"transactionHash": b["params"][0]}}
                )
        return httpx.Response(200, json=out if isinstance(body, list) else out[0])

    source = mock_source(handler)
    receipts = await source.block_receipts(5)
    assert [r["transactionHash"] for r in receipts] == hashes
    assert source.has_block_receipts is False
    assert methods.count("eth_getBlockReceipts") == 1
    await source.block_receipts(6, hashes)
    assert methods.count("eth_getBlockReceipts") == 1  # detected once
    assert methods.count("eth_getTransactionReceipt") == 4
    await source.close()


async def test_a_rejected_block_is_fetched_again_then_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []

    def handler(url: str, body: Any) -> httpx.Response:
        items = body if isinstance(body, list) else [body]
        calls.extend(b["method"] for b in items)

        # A block whose receipt belongs to another block: parse must refuse it.
        def result(b: dict[str, Any]) -> Any:
            if b["method"] == "eth_chainId":
                return "0x7a69"
            if b["method"] == "eth_getBlockReceipts":
                return [{"transactionHash": "0x" + "11" * 32, "blockHash": "0x" + "ff" * 32}]
            return {"number": "0x5", "hash": "0x" + "22" * 32, "transactions": []}

        return ok(body, result)

    source = mock_source(handler, parse_attempts=3)
    with pytest.raises(ChainError, match="rejected 3 times"):
        await source.fetch_bundles(5, 5)
    assert calls.count("eth_getBlockByNumber") == 3
    await source.close()


# --- rate limit --------------------------------------------------------------------------


async def test_token_bucket_limits_the_call_rate() -> None:
    bucket = TokenBucket(rate=200, burst=10)
    started = time.monotonic()
    for _ in range(5):
        await bucket.acquire(20)  # 100 tokens, 10 saved: about 0.45 s
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.5


async def test_new_heads_wake_the_follower() -> None:
    from ludex.indexer.source import watch_new_heads
    from tests.chain.vault_env import anvil_node

    with anvil_node() as url:
        seen: list[int] = []
        stop = asyncio.Event()
        task = asyncio.create_task(
            watch_new_heads(url.replace("http://", "ws://"), seen.append, stop)
        )
        async with RpcSource([url]) as source:
            for _ in range(50):
                await source.call("evm_mine", [])
                if seen:
                    break
                await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, 5)
    assert seen
    assert seen[0] >= 1
