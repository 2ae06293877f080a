"""Command forwarding: a player's command reaches the table's owner from any gateway process.

Each table is dealt by one process (:class:`~ludex.gameserver.host.TableHost`), but a
player may be connected to any of them. :meth:`Lobby.command
<ludex.gameserver.lobby.Lobby.command>` runs a command for an owned table directly and
hands every other one to a relay:

* :class:`RedisRelay` (``redis://``): every process SUBSCRIBEs, on one connection (a
  :class:`~ludex.adapters.kv.redis_pubsub.RedisSubscription`: pinged when silent,
  made again with backoff after a drop), to the shared request channel
  (``<namespace>relay:requests``) and to its own reply channel
  (``<namespace>relay:reply:<id>``). A process that does not own the table
  PUBLISHes a request (msgpack: ``id``, ``reply_to``, ``table``, ``deadline`` in unix
  seconds, and the command's fields); the process whose host owns the table runs it
  and PUBLISHes the answer (the result, or the refusal's class name and message,
  raised again as the same class) on ``reply_to``. Every other process ignores it.
* :class:`LocalRelay` (``memory://``): one process, nobody to forward to; the host
  answers ``TableUnavailable`` as before.

Why one shared request channel rather than one per owner: the KeyValue port cannot say
who holds a lease, and asking would cost a round trip per command; a broadcast costs
every process a msgpack decode and a dict lookup per forwarded command, which is cheap
next to the fan-out's traffic on the same server.

**At most once.** Pub/sub delivers at most once, so a request is never repeated by
Redis; the relay adds the rest. The requester waits until the deadline (``timeout``,
3 s by default) and then answers ``TableUnavailable``, forgetting the request: a reply
that arrives later (or twice) finds nobody waiting and is dropped. The owner drops a
request whose deadline has passed or is closer than ``reply_margin`` (its answer could
not arrive in time), drops a request id it has already taken, and stops waiting for
the table at the deadline less the margin (no answer is sent then). A command already
applied by the table when its requester gave up stays applied: the client saw 503 and
retries; a join retried with the same ``request_id`` is harmless, an action retried
is refused (not your turn) or applies to the next decision the player is asked for.

Clocks: the deadline is wall-clock time, so the gateway processes' clocks must agree
to well within ``timeout`` (NTP does).

Never: a ``redis`` exception escapes (they become ``BackendUnavailable`` /
``BackendError``, and a forward that cannot be sent becomes ``TableUnavailable``); a
malformed frame stops the listener (it is counted, logged and dropped); a password is
logged; more than ``max_pending`` forwards wait here, or more than ``max_serving``
forwarded commands run here, at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import Callable
from typing import Annotated, Any, Final, Literal, Protocol
from urllib.parse import urlsplit

import msgspec
import structlog

from ludex.adapters.kv.redis_pubsub import RedisSubscription, Subscribed
from ludex.config import redact_url
from ludex.errors import (
    BackendError,
    BackendUnavailable,
    CardError,
    ConfigError,
    FairnessError,
    HandHistoryError,
    IllegalAction,
    KeyValueError,
    LedgerError,
    LockLost,
    LudexError,
    PokerError,
    StoreError,
)
from ludex.gameserver.host import Command, FencedOut, TableHost, TableUnavailable
from ludex.gameserver.table import MAX_PLAYER, MAX_TABLE_ID, TableError

log = structlog.get_logger(__name__)

ERRORS: Final[dict[str, type[LudexError]]] = {
    cls.__name__: cls
    for cls in (
        TableUnavailable,
        TableError,
        IllegalAction,
        PokerError,
        CardError,
        HandHistoryError,
        FairnessError,
        FencedOut,
        LockLost,
        KeyValueError,
        BackendUnavailable,
        BackendError,
        StoreError,
        LedgerError,
        LudexError,
    )
}
"""The refusals an owner's host may raise, by the name that crosses the wire. Each is
raised again on the requester as the same class, so REST, GraphQL and the stream give
the same code and status as for a local command. Another name arrives as
``BackendError`` (it is logged on both sides)."""

_Id = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{1,64}$")]
_Short = Annotated[str, msgspec.Meta(max_length=64)]


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A forwarded command on the request channel (the wire format, msgpack map)."""

    id: _Id
    reply_to: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    table: Annotated[str, msgspec.Meta(pattern=rf"^[A-Za-z0-9._-]{{1,{MAX_TABLE_ID}}}$")]
    deadline: float
    kind: Literal["join", "leave", "sit_out", "sit_in", "act"]
    player: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_PLAYER)]
    seat: int | None = None
    amount: int | None = None
    request_id: _Short | None = None
    action: _Short | None = None
    hand_id: _Short | None = None

    def command(self) -> Command:
        return Command(
            self.kind,
            self.player,
            seat=self.seat,
            amount=self.amount,
            request_id=self.request_id,
            action=self.action,
            hand_id=self.hand_id,
        )


class Reply(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The owner's answer on the requester's reply channel: ``result`` when ``ok``,
    else ``error`` (an exception class name) and ``message``."""

    id: _Id
    ok: bool
    result: dict[str, Any] | None = None
    error: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{1,64}$")] | None = None
    message: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


_requests = msgspec.msgpack.Decoder(Request)
_replies = msgspec.msgpack.Decoder(Reply)
_encoder = msgspec.msgpack.Encoder()


def decode_request(payload: bytes) -> Request:
    """A request frame, validated; ``ValueError`` says what is wrong with it."""
    try:
        request = _requests.decode(payload)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise ValueError(f"malformed relay request: {exc}") from None
    if not math.isfinite(request.deadline):
        raise ValueError("malformed relay request: the deadline is not a finite number")
    return request


def decode_reply(payload: bytes) -> Reply:
    """A reply frame, validated; ``ValueError`` says what is wrong with it."""
    try:
        reply = _replies.decode(payload)
    except msgspec.DecodeError as exc:
        raise ValueError(f"malformed relay reply: {exc}") from None
    if reply.ok != (reply.result is not None) or reply.ok == (reply.error is not None):
        raise ValueError("malformed relay reply: a reply carries a result or an error")
    return reply


def raised(reply: Reply) -> LudexError:
    """The exception a refused reply stands for (see :data:`ERRORS`)."""
    message = reply.message or ""
    cls = ERRORS.get(reply.error or "")
    if cls is None:
        log.warning("gameserver.relay_unknown_error", error=reply.error, message=message)
        return BackendError(f"the table's process failed ({reply.error}): {message}")
    return cls(message)


class Relay(Protocol):
    """How :class:`~ludex.gameserver.lobby.Lobby` reaches a table dealt elsewhere."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def forward(self, table_id: str, command: Command) -> dict[str, Any]: ...


class LocalRelay:
    """One process: nothing to forward to, so the host's own answer stands (a table it
    does not deal right now is ``TableUnavailable``)."""

    def __init__(self, host: TableHost) -> None:
        self.host = host

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def forward(self, table_id: str, command: Command) -> dict[str, Any]:
        return await self.host.submit(table_id, command)


class RedisRelay(Subscribed):
    """Forwards commands to the table's owner over Redis pub/sub, and serves the
    commands forwarded to the tables ``host`` owns; see the module docstring.

    ``start`` subscribes (``BackendUnavailable`` if Redis cannot be reached); drops
    are retried for ever. ``backoff_initial``, ``backoff_max``, ``ping_interval``,
    ``connect_timeout`` and ``client_name`` are those of
    :class:`~ludex.adapters.kv.redis_pubsub.RedisSubscription`. While unsubscribed,
    a forward answers ``TableUnavailable`` at once (no reply could reach us).
    ``timeout`` is how long a forward waits for the owner.
    """

    def __init__(
        self,
        host: TableHost,
        url: str,
        *,
        namespace: str = "ludex:rt:",
        timeout: float = 3.0,
        reply_margin: float = 0.1,
        max_pending: int = 1024,
        max_serving: int = 1024,
        client_name: str | None = None,
        backoff_initial: float = 0.05,
        backoff_max: float = 5.0,
        ping_interval: float = 5.0,
        connect_timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.process = secrets.token_hex(8)
        self.request_channel = f"{namespace}relay:requests"
        self.reply_prefix = f"{namespace}relay:reply:"
        self.reply_channel = f"{self.reply_prefix}{self.process}"
        # One connection for both channels, so ``connected`` also says whether a reply
        # can reach us, which ``forward`` checks before sending.
        self._subscription = RedisSubscription(
            url,
            [self.request_channel, self.reply_channel],
            self._on_message,
            what="relay",
            name="gameserver.relay",
            client_name=client_name or f"ludex-relay-{self.process}",
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            ping_interval=ping_interval,
            connect_timeout=connect_timeout,
        )
        if not 0 <= reply_margin < timeout:
            raise ConfigError(f"relay reply_margin ({reply_margin}) must be in 0..timeout")
        if max_pending < 1 or max_serving < 1:
            raise ConfigError("relay max_pending and max_serving must be >= 1")
        self.host = host
        self.timeout = timeout
        self.reply_margin = reply_margin
        self.max_pending = max_pending
        self.max_serving = max_serving
        self.clock = clock
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._taken: dict[tuple[str, str], float] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self.malformed = 0
        """Frames that could not be read (dropped)."""
        self.expired = 0
        """Requests dropped by the owner because their deadline had (nearly) passed."""
        self.duplicates = 0
        """Requests dropped by the owner because it had taken the same id already."""
        self.late = 0
        """Replies that found nobody waiting (after the deadline, or a second reply)."""
        self.served = 0
        """Forwarded commands run here for another process (answered or refused)."""

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        await self._subscription.start()

    async def close(self) -> None:
        """Stop listening; forwards still waiting answer ``TableUnavailable``, commands
        being served here are abandoned (their requesters time out)."""
        await self._subscription.stop()  # no new request is taken from here on
        serving, self._serving = self._serving, set()
        for job in serving:
            job.cancel()
        for job in serving:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(TableUnavailable("this gateway process is shutting down"))
        await self._subscription.close()

    # -- forwarding (the requester's side) ---------------------------------------------

    async def forward(self, table_id: str, command: Command) -> dict[str, Any]:
        """Run ``command`` at the process that deals ``table_id``: its answer, its
        refusal (the same exception class), or ``TableUnavailable`` when no process
        answers within ``timeout`` seconds."""
        client = self._subscription.client
        if client is None or not self.connected:
            raise TableUnavailable(
                f"table {table_id} is dealt by another process and this one cannot reach "
                "it right now; retry in a few seconds"
            )
        if len(self._pending) >= self.max_pending:
            raise TableUnavailable(
                f"too many commands are waiting for other processes ({self.max_pending}); "
                "retry in a second"
            )
        request_id = secrets.token_hex(8)
        frame = _encoder.encode(
            Request(
                id=request_id,
                reply_to=self.reply_channel,
                table=table_id,
                deadline=self.clock() + self.timeout,
                kind=command.kind,  # type: ignore[arg-type]  # checked just below
                player=command.player,
                seat=command.seat,
                amount=command.amount,
                request_id=command.request_id,
                action=command.action,
                hand_id=command.hand_id,
            )
        )
        try:
            # What the owner would drop as malformed is refused here, at once, rather
            # than after the deadline.
            decode_request(frame)
        except ValueError as exc:
            raise TableError(
                f"command refused: {str(exc).removeprefix('malformed relay request: ')}"
            ) from None
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            async with asyncio.timeout(self.timeout):
                try:
                    with self._subscription.errors("publish"):
                        receivers = await client.publish(self.request_channel, frame)
                except BackendError as exc:
                    raise TableUnavailable(
                        f"could not forward the command to table {table_id}'s process ({exc}); "
                        "retry in a few seconds"
                    ) from None
                if receivers == 0:  # not even this process: the subscription just dropped
                    raise TableUnavailable(
                        f"no process listens for table {table_id} right now; retry shortly"
                    )
                return await future
        except TimeoutError:
            raise TableUnavailable(
                f"no process answered for table {table_id} within {self.timeout:g} s "
                "(it may be changing hands); retry in a few seconds"
            ) from None
        finally:
            # Gone from here on: a reply arriving now finds nobody and is dropped.
            self._pending.pop(request_id, None)

    def _on_reply(self, payload: bytes) -> None:
        try:
            reply = decode_reply(payload)
        except ValueError as exc:
            self.malformed += 1
            log.warning("gameserver.relay_malformed", channel="reply", error=str(exc))
            return
        future = self._pending.pop(reply.id, None)
        if future is None or future.done():
            self.late += 1
            log.info("gameserver.relay_late_reply", request=reply.id)
            return
        if reply.ok:
            assert reply.result is not None
            future.set_result(reply.result)
        else:
            future.set_exception(raised(reply))

    # -- serving (the owner's side) ------------------------------------------------

    def _on_request(self, payload: bytes) -> None:
        try:
            request = decode_request(payload)
            if not request.reply_to.startswith(self.reply_prefix):
                raise ValueError(
                    f"malformed relay request: reply_to is outside {self.reply_prefix!r}"
                )
        except ValueError as exc:
            self.malformed += 1
            log.warning("gameserver.relay_malformed", channel="requests", error=str(exc))
            return
        if not self.host.owns(request.table):
            return  # another process's table (or nobody's: the requester times out)
        now = self.clock()
        self._forget_taken(now)
        if request.deadline - now <= self.reply_margin:
            self.expired += 1
            log.info("gameserver.relay_expired", table=request.table, request=request.id)
            return
        key = (request.reply_to, request.id)
        if key in self._taken:
            self.duplicates += 1
            log.warning("gameserver.relay_duplicate", table=request.table, request=request.id)
            return
        self._taken[key] = request.deadline
        if len(self._serving) >= self.max_serving:
            busy = TableUnavailable(
                f"table {request.table}'s process is busy ({self.max_serving} forwarded "
                "commands in flight); retry in a second"
            )
            job = self._answer(request, _refusal(request.id, busy))
        else:
            # Tasks start in the order created and each queues its command at once, so
            # one player's forwarded commands reach the table in the order received.
            job = self._serve(request)
        task = asyncio.create_task(job, name=f"relay-{request.table}")
        self._serving.add(task)
        task.add_done_callback(self._serving.discard)

    async def _serve(self, request: Request) -> None:
        budget = request.deadline - self.reply_margin - self.clock()
        if budget <= 0:  # expired while waiting for this task to start: never queue it
            self.expired += 1
            return
        try:
            async with asyncio.timeout(budget):
                result = await self.host.submit(request.table, request.command())
            reply = Reply(id=request.id, ok=True, result=result)
        except TimeoutError:
            # The requester gives up now: an answer would be dropped there.
            self.expired += 1
            log.warning("gameserver.relay_too_slow", table=request.table, request=request.id)
            return
        except LudexError as exc:
            reply = _refusal(request.id, exc)
        except Exception as exc:  # a bug in the host: refuse, as a local caller's 500 would
            log.exception("gameserver.relay_serve_failed", table=request.table)
            reply = _refusal(request.id, TableUnavailable(f"table {request.table} failed: {exc}"))
        self.served += 1
        await self._answer(request, reply)

    async def _answer(self, request: Request, reply: Reply) -> None:
        client = self._subscription.client
        if client is None:
            return
        try:
            frame = _encoder.encode(reply)
        except (TypeError, msgspec.EncodeError) as exc:  # a result msgpack cannot carry
            log.error("gameserver.relay_unencodable", table=request.table, error=str(exc))
            frame = _encoder.encode(_refusal(request.id, BackendError("unencodable answer")))
        try:
            async with asyncio.timeout(self._subscription.connect_timeout):
                with self._subscription.errors("publish reply"):
                    await client.publish(request.reply_to, frame)
        except (TimeoutError, BackendError) as exc:
            log.warning(
                "gameserver.relay_reply_failed",
                table=request.table,
                request=request.id,
                error=f"{type(exc).__name__}: {exc}",
            )

    def _forget_taken(self, now: float) -> None:
        """Request ids are kept until their deadline: later a copy is dropped as expired."""
        taken = self._taken
        while taken:
            key, deadline = next(iter(taken.items()))
            if deadline > now and len(taken) <= 8 * self.max_serving + 1024:
                break
            del taken[key]

    async def _on_message(self, channel: str, payload: bytes) -> None:
        if channel == self.reply_channel:
            self._on_reply(payload)
        else:
            self._on_request(payload)


def _refusal(request_id: str, exc: LudexError) -> Reply:
    return Reply(id=request_id, ok=False, error=type(exc).__name__, message=str(exc)[:2000])


def create_relay(
    url: str,
    host: TableHost,
    *,
    namespace: str = "ludex:rt:",
    timeout: float = 3.0,
    client_name: str | None = None,
) -> LocalRelay | RedisRelay:
    """The relay for the cache URL the hub uses: ``memory://`` (one process, nothing to
    forward) or ``redis://`` / ``rediss://``. Nothing connects before ``start``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        return LocalRelay(host)
    if scheme in {"redis", "rediss"}:
        return RedisRelay(host, url, namespace=namespace, timeout=timeout, client_name=client_name)
    raise ConfigError(
        f"relay URL {redact_url(url)!r} is not accepted; use memory:// or redis://HOST:PORT/DB"
    )
