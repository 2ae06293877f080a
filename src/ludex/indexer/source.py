"""Where the indexer reads the chain: JSON-RPC over HTTP, batched, rate-limited, retried.

``RpcSource`` talks to one or more node URLs (the first is preferred):

* batch requests (a JSON array of at most ``max_batch`` calls, several in flight at once);
  an answer must hold every request id exactly once, each with exactly one of ``result``
  or ``error``; anything else is rejected as malformed;
* retries with exponential backoff (tenacity) on transport errors, HTTP 429 / 5xx,
  JSON-RPC server errors and malformed answers; never on errors that retrying cannot fix
  (method not found, invalid params);
* a token bucket (``rate_per_s`` JSON-RPC calls per second, in process);
* fail-over: after ``failover_after`` consecutive failures on a URL the next one is used;
  after ``failback_s`` seconds away from the first URL it is tried again;
* ``eth_getBlockReceipts`` when the node has it (detected once), else one
  ``eth_getTransactionReceipt`` per transaction, in one batch;
* each block's call traces (``debug_traceBlockByNumber`` with the ``callTracer``) when
  the node has it (detected once, like the receipts; ``traces=False`` never asks), in
  the same batches as the receipts; without them the bundles are not ``traced``.

``fetch_bundles`` turns a range into validated :class:`~ludex.indexer.model.BlockBundle`
records through :func:`ludex.indexer.parse.bundle`; a block the parser rejects (a
malformed or inconsistent answer: a receipt of another block, a missing receipt) is
fetched again a few times, then the ChainError is raised: it is never stored.

``watch_new_heads`` (optional) wakes the follower on each ``newHeads`` notification of a
WebSocket endpoint; polling stays the fallback and the source of truth.

This module never writes anything and never logs a URL with its credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Literal

import httpx
import structlog
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from ludex.adapters.chain.jsonrpc import parse_quantity
from ludex.config import redact_url
from ludex.errors import BackendUnavailable, ChainError, ChainRpcError, ConfigError
from ludex.indexer import parse
from ludex.indexer.model import BlockBundle

log = structlog.get_logger(__name__)

Call = tuple[str, list[Any]]

METHOD_NOT_FOUND: Final = -32601
# Errors that retrying the same request cannot fix.
PERMANENT_CODES: Final = frozenset({-32700, -32600, METHOD_NOT_FOUND, -32602, 3})
UNSUPPORTED_HINTS: Final = ("not found", "not supported", "unsupported", "does not exist")
TRACE_UNSUPPORTED_HINTS: Final = (
    "method not found",
    "not supported",
    "unsupported",
    "does not exist",
    "not available",
)
TRACE_METHOD: Final = "debug_traceBlockByNumber"
CALL_TRACER: Final = {"tracer": "callTracer"}


def is_transient(exc: BaseException) -> bool:
    """Worth retrying: the node was unreachable, busy, or answered something malformed."""
    if isinstance(exc, ChainRpcError):
        return exc.code not in PERMANENT_CODES
    return isinstance(exc, ChainError | BackendUnavailable)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; a caller may go into debt
    (a batch larger than the bucket) and then waits until it is repaid."""

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate <= 0:
            raise ConfigError(f"rate limit must be > 0 calls per second, got {rate}")
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self._tokens = self.burst
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self, tokens: float = 1.0) -> None:
        async with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= tokens
            deficit = -self._tokens
            if deficit > 0:
                await asyncio.sleep(deficit / self.rate)


class RpcSource:
    """The indexer's chain source over JSON-RPC HTTP (see the module docstring)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        rate_per_s: float | None = None,
        max_batch: int = 100,
        timeout: float = 10.0,
        concurrency: int = 4,
        attempts: int = 6,
        failover_after: int = 2,
        failback_s: float = 60.0,
        backoff_s: float = 0.05,
        backoff_max_s: float = 2.0,
        parse_attempts: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        traces: bool = True,
    ) -> None:
        if not urls:
            raise ConfigError("the indexer needs at least one RPC URL (--rpc)")
        if max_batch < 1 or concurrency < 1 or attempts < 1 or parse_attempts < 1:
            raise ConfigError(
                "max_batch, concurrency, attempts and parse_attempts must all be >= 1"
            )
        self.urls = list(urls)
        self.max_batch = max_batch
        self.timeout = timeout
        self.attempts = attempts
        self.failover_after = failover_after
        self.failback_s = failback_s
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self.parse_attempts = parse_attempts
        self._bucket = TokenBucket(rate_per_s) if rate_per_s else None
        self._slots = asyncio.Semaphore(concurrency)
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._ids = itertools.count(1)
        self._active = 0
        self._failures = 0
        self._left_primary_at = 0.0
        self._block_receipts: bool | None = None
        self._traces: bool | None = None if traces else False
        self._chain_id: int | None = None
        self.rpc_errors = 0
        """How many attempts failed (any cause): a metric."""

    # --- lifecycle ---------------------------------------------------------------

    @property
    def display_url(self) -> str:
        return redact_url(self.urls[self._active])

    @property
    def has_block_receipts(self) -> bool | None:
        """Whether the node answers eth_getBlockReceipts (None: not asked yet)."""
        return self._block_receipts

    @property
    def has_traces(self) -> bool | None:
        """Whether the node answers debug_traceBlockByNumber with the callTracer (None:
        not asked yet; False also when turned off)."""
        return self._traces

    async def start(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout, transport=self._transport)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> RpcSource:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- the transport: one HTTP exchange, retried, with fail-over ----------------

    def _url(self) -> int:
        if self._active != 0 and time.monotonic() - self._left_primary_at > self.failback_s:
            log.info("indexer.rpc_failback", url=redact_url(self.urls[0]))
            self._active, self._failures = 0, 0
        return self._active

    def _failed(self, index: int, exc: BaseException) -> None:
        self.rpc_errors += 1
        if index != self._active:
            return
        self._failures += 1
        if self._failures >= self.failover_after and len(self.urls) > 1:
            nxt = (self._active + 1) % len(self.urls)
            log.warning(
                "indexer.rpc_failover",
                url=redact_url(self.urls[self._active]),
                to=redact_url(self.urls[nxt]),
                error=f"{type(exc).__name__}: {exc}",
            )
            if self._active == 0:
                self._left_primary_at = time.monotonic()
            self._active, self._failures = nxt, 0

    async def _exchange(self, index: int, calls: Sequence[Call]) -> list[Any]:
        """Send ``calls`` (one object for one call, an array otherwise) to URL ``index``;
        return their results in order or raise."""
        if self._client is None:
            await self.start()
        assert self._client is not None
        ids = [next(self._ids) for _ in calls]
        bodies = [
            {"jsonrpc": "2.0", "id": i, "method": m, "params": p}
            for i, (m, p) in zip(ids, calls, strict=True)
        ]
        what = calls[0][0] if len(calls) == 1 else f"batch of {len(calls)} ({calls[0][0]}, ...)"
        url = self.urls[index]
        if self._bucket is not None:
            await self._bucket.acquire(len(calls))
        try:
            response = await self._client.post(url, json=bodies[0] if len(bodies) == 1 else bodies)
        except httpx.TransportError as exc:
            raise BackendUnavailable(
                f"{what}: node {redact_url(url)} unreachable: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise ChainError(f"{what}: node {redact_url(url)} answered HTTP {response.status_code}")
        try:
            answer = response.json()
        except (ValueError, json.JSONDecodeError):
            raise ChainError(
                f"{what}: node {redact_url(url)} answered something not JSON"
            ) from None
        if isinstance(answer, dict):
            if len(calls) > 1:
                _raise_error(what, answer.get("error", answer))
            answer = [answer]
        if not isinstance(answer, list) or len(answer) != len(calls):
            raise ChainError(
                f"{what}: expected {len(calls)} answers, got "
                f"{len(answer) if isinstance(answer, list) else type(answer).__name__}"
            )
        by_id: dict[int, Mapping[str, Any]] = {}
        for item in answer:
            item_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(item_id, int) or isinstance(item_id, bool) or item_id not in ids:
                raise ChainError(f"{what}: an answer carries an id we did not send: {item_id!r}")
            if item_id in by_id:
                raise ChainError(f"{what}: the answer id {item_id} appears twice")
            if ("result" in item) == ("error" in item):
                raise ChainError(f"{what}: answer {item_id} must hold exactly one of result/error")
            by_id[item_id] = item
        results = []
        for request_id, (method, _params) in zip(ids, calls, strict=True):
            item = by_id[request_id]
            if "error" in item:
                _raise_error(method, item["error"])
            results.append(item["result"])
        return results

    async def _send(self, calls: Sequence[Call]) -> list[Any]:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, max=self.backoff_max_s),
            retry=retry_if_exception(is_transient),
            reraise=True,
        ):
            with attempt:
                index = self._url()
                try:
                    async with self._slots:
                        results = await self._exchange(index, calls)
                except Exception as exc:
                    if is_transient(exc):
                        self._failed(index, exc)
                    raise
                if index == self._active:
                    self._failures = 0
                return results
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    async def call(self, method: str, params: list[Any]) -> Any:
        return (await self._send([(method, params)]))[0]

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """Results of ``calls`` in order: chunks of ``max_batch`` sent concurrently."""
        if not calls:
            return []
        chunks = [calls[i : i + self.max_batch] for i in range(0, len(calls), self.max_batch)]
        answers = await asyncio.gather(*(self._send(chunk) for chunk in chunks))
        return [result for answer in answers for result in answer]

    # --- what the indexer asks --------------------------------------------------------

    async def chain_id(self) -> int:
        if self._chain_id is None:
            self._chain_id = parse_quantity(await self.call("eth_chainId", []), "eth_chainId")
        return self._chain_id

    async def head(self) -> int:
        return parse_quantity(await self.call("eth_blockNumber", []), "eth_blockNumber")

    async def block(self, number: int, *, full: bool = True) -> dict[str, Any] | None:
        raw = await self.call("eth_getBlockByNumber", [hex(number), full])
        if raw is not None and not isinstance(raw, dict):
            raise ChainError(f"eth_getBlockByNumber({number}): expected an object, got {raw!r}")
        return raw

    async def block_hash(self, number: int) -> str | None:
        """The node's hash of block ``number`` (None when it has no such block)."""
        return (await self.block_hashes(number, number)).get(number)

    async def block_hashes(self, first: int, last: int) -> dict[int, str]:
        """The node's hashes of blocks ``first..last`` (blocks it does not have are left out)."""
        raws = await self.batch(
            [("eth_getBlockByNumber", [hex(n), False]) for n in range(first, last + 1)]
        )
        out: dict[int, str] = {}
        for n, raw in zip(range(first, last + 1), raws, strict=True):
            if raw is None:
                continue
            if not isinstance(raw, dict) or not isinstance(raw.get("hash"), str):
                raise ChainError(f"eth_getBlockByNumber({n}): no hash in the answer")
            if parse_quantity(raw.get("number"), "number") != n:
                raise ChainError(f"eth_getBlockByNumber({n}): the node answered another block")
            out[n] = str(raw["hash"]).lower()
        return out

    async def tag_number(self, tag: Literal["safe", "finalized"]) -> int | None:
        """The number of the node's ``safe`` / ``finalized`` block; None when unsupported."""
        try:
            raw = await self.call("eth_getBlockByNumber", [tag, False])
        except ChainRpcError as exc:
            if is_transient(exc) and not unsupported(exc):
                raise
            return None
        if not isinstance(raw, dict):
            return None
        return parse_quantity(raw.get("number"), f"{tag} block number")

    async def block_receipts(
        self, number: int, transactions: Sequence[str] | None = None
    ) -> list[Any]:
        """The receipts of block ``number``, in transaction order. ``transactions`` (the
        block's transaction hashes) is needed only when the node lacks eth_getBlockReceipts;
        without it the block is fetched."""
        return (await self._receipts([(number, transactions)]))[0]

    async def _receipts(
        self, blocks: Sequence[tuple[int, Sequence[str] | None]]
    ) -> list[list[Any]]:
        if self._block_receipts is not False:
            try:
                answers = await self.batch([("eth_getBlockReceipts", [hex(n)]) for n, _ in blocks])
            except ChainRpcError as exc:
                if is_transient(exc) and not unsupported(exc):
                    raise
                log.info("indexer.no_block_receipts", url=self.display_url, error=str(exc))
                self._block_receipts = False
            else:
                self._block_receipts = True
                for (n, _), answer in zip(blocks, answers, strict=True):
                    if not isinstance(answer, list):
                        raise ChainError(
                            f"eth_getBlockReceipts({n}): expected a list, got {answer!r}"
                        )
                return answers
        hashes: list[list[str]] = []
        for n, known in blocks:
            if known is None:
                raw = await self.block(n, full=False)
                if raw is None:
                    raise ChainError(f"block {n} is not on the node (yet)")
                known = [str(h) for h in raw.get("transactions") or []]
            hashes.append(list(known))
        flat = await self.batch(
            [("eth_getTransactionReceipt", [h]) for tx_hashes in hashes for h in tx_hashes]
        )
        out: list[list[Any]] = []
        offset = 0
        for tx_hashes in hashes:
            out.append(flat[offset : offset + len(tx_hashes)])
            offset += len(tx_hashes)
        return out

    async def _block_traces(self, numbers: Sequence[int]) -> list[Any]:
        """Each block's callTracer answer; None for every block when the node has none
        (detected on the first ask: method not found or unsupported, logged once)."""
        if self._traces is False or not numbers:
            return [None] * len(numbers)
        first: list[Any] = []
        if self._traces is None:  # one block first: a node without traces refuses once
            try:
                first = await self.batch([(TRACE_METHOD, [hex(numbers[0]), CALL_TRACER])])
            except ChainRpcError as exc:
                if not _no_traces(exc):
                    raise
                log.info("indexer.no_traces", url=self.display_url, error=str(exc))
                self._traces = False
                return [None] * len(numbers)
            self._traces = True
        rest = numbers[len(first) :]
        return first + await self.batch([(TRACE_METHOD, [hex(n), CALL_TRACER]) for n in rest])

    async def _receipts_and_traces(
        self, blocks: Sequence[tuple[int, Sequence[str] | None]]
    ) -> tuple[list[list[Any]], list[Any]]:
        """Receipts and traces of ``blocks``: in one batch once both methods are known to
        work, else each detected on its own."""
        numbers = [n for n, _ in blocks]
        if self._block_receipts is True and self._traces is True:
            answers = await self.batch(
                [("eth_getBlockReceipts", [hex(n)]) for n in numbers]
                + [(TRACE_METHOD, [hex(n), CALL_TRACER]) for n in numbers]
            )
            receipts = answers[: len(numbers)]
            for n, answer in zip(numbers, receipts, strict=True):
                if not isinstance(answer, list):
                    raise ChainError(f"eth_getBlockReceipts({n}): expected a list, got {answer!r}")
            return receipts, answers[len(numbers) :]
        receipts = await self._receipts(blocks)
        return receipts, await self._block_traces(numbers)

    async def fetch_bundles(self, first: int, last: int) -> list[BlockBundle]:
        """Blocks ``first..last`` with their receipts (and traces), parsed and validated."""
        if last < first:
            return []
        chain_id = await self.chain_id()
        numbers = list(range(first, last + 1))
        raws = await self.batch([("eth_getBlockByNumber", [hex(n), True]) for n in numbers])
        receipts, traces = await self._receipts_and_traces(
            [
                (n, _tx_hashes(raw) if isinstance(raw, dict) else [])
                for n, raw in zip(numbers, raws, strict=True)
            ]
        )
        bundles = []
        for n, raw, raw_receipts, raw_traces in zip(numbers, raws, receipts, traces, strict=True):
            bundles.append(await self._parse(chain_id, n, raw, raw_receipts, raw_traces))
        return bundles

    async def _parse(
        self, chain_id: int, number: int, raw: Any, receipts: list[Any], traces: Any
    ) -> BlockBundle:
        """Parse one block; on a rejected answer fetch it again (``parse_attempts`` in all)."""
        attempt = 1
        while True:
            try:
                if not isinstance(raw, dict):
                    raise ChainError(f"block {number}: the node has no such block (yet)")
                return parse.bundle(chain_id, raw, receipts, traces)
            except ChainError as exc:
                self.rpc_errors += 1
                if attempt >= self.parse_attempts:
                    raise ChainError(
                        f"block {number}: the node's answer was rejected {attempt} times: {exc}"
                    ) from exc
                log.warning("indexer.block_rejected", block=number, attempt=attempt, error=str(exc))
                await asyncio.sleep(min(self.backoff_max_s, self.backoff_s * 2**attempt))
                attempt += 1
                raw = await self.block(number, full=True)
                hashes = _tx_hashes(raw) if isinstance(raw, dict) else []
                [receipts], [traces] = await self._receipts_and_traces([(number, hashes)])


def _tx_hashes(raw: Mapping[str, Any]) -> list[str]:
    out = []
    for tx in raw.get("transactions") or []:
        value = tx.get("hash") if isinstance(tx, dict) else tx
        out.append(str(value))
    return out


def unsupported(exc: ChainRpcError) -> bool:
    """The node does not have the method (as opposed to a failed call of it)."""
    if exc.code == METHOD_NOT_FOUND:
        return True
    message = str(exc).lower()
    return any(hint in message for hint in UNSUPPORTED_HINTS)


def _no_traces(exc: ChainRpcError) -> bool:
    """The node has no callTracer (a missing block's "header not found" is not that)."""
    if exc.code == METHOD_NOT_FOUND:
        return True
    message = str(exc).lower()
    return any(hint in message for hint in TRACE_UNSUPPORTED_HINTS)


def _raise_error(what: str, err: Any) -> None:
    if isinstance(err, dict):
        code = err.get("code")
        data = err.get("data")
        raise ChainRpcError(
            f"{what}: node error: {err.get('message')}",
            code=code if isinstance(code, int) else None,
            data=data if isinstance(data, str) else None,
        )
    raise ChainRpcError(f"{what}: node error: {err!r}")


class SubscriptionRefused(ChainError):
    """The node answered ``eth_subscribe`` with an error (it has no such subscription)."""


async def subscribe(
    ws_url: str,
    kind: str,
    on_result: Callable[[Any], None],
    stop: asyncio.Event,
    *,
    retry_s: float = 1.0,
    label: str = "subscription",
) -> None:
    """``eth_subscribe [kind]`` over a WebSocket: call ``on_result(result)`` for each
    notification until ``stop`` is set; reconnect after ``retry_s`` when the socket fails
    (polling covers the gap). A node refusing the subscription raises
    :class:`SubscriptionRefused`."""
    import websockets

    request = {"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": [kind]}
    while not stop.is_set():
        try:
            async with websockets.connect(ws_url, open_timeout=5) as socket:
                await socket.send(json.dumps(request))
                while not stop.is_set():
                    try:
                        message = await asyncio.wait_for(socket.recv(), timeout=0.5)
                    except TimeoutError:
                        continue
                    data = json.loads(message)
                    if not isinstance(data, dict):
                        continue
                    if data.get("id") == 1 and "error" in data:
                        raise SubscriptionRefused(f"eth_subscribe {kind}: {data['error']!r}")
                    params = data.get("params")
                    if isinstance(params, dict) and "result" in params:
                        on_result(params["result"])
        except SubscriptionRefused:
            raise
        except (OSError, ChainError, ValueError, websockets.WebSocketException) as exc:
            log.info(f"{label}_lost", url=redact_url(ws_url), error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=retry_s)


async def watch_new_heads(
    ws_url: str, on_head: Callable[[int], None], stop: asyncio.Event, *, retry_s: float = 1.0
) -> None:
    """Call ``on_head(number)`` for each ``newHeads`` notification until ``stop`` is set;
    reconnects after ``retry_s`` when the socket fails (polling covers the gap)."""

    def heard(result: Any) -> None:
        if isinstance(result, dict) and "number" in result:
            on_head(parse_quantity(result["number"], "newHeads number"))

    await subscribe(ws_url, "newHeads", heard, stop, retry_s=retry_s, label="indexer.new_heads")
