"""Table actors: each open table is owned by one process at a time and played there.

A :class:`TableHost` runs in every game-server process. Its scan loop lists the open
tables (:class:`~ludex.gameserver.store.GameStore`) and tries to take each one it
does not own through a lease on the KeyValue port (``gameserver:table:<id>``), whose
fencing token only grows. For every table it holds, a :class:`TableActor` task:

1. takes commands (join, leave, sit out/in, act) one at a time from its queue, and
   wakes at the table's deadlines (turn timers, the next deal);
2. applies each to the pure :class:`~ludex.gameserver.table.Table` (a refused
   command changes nothing and its error goes back to the caller only);
3. **saves** the table, with its pending effects, under ``gameserver:state:<id>``
   by compare-and-set on the bytes it wrote last, prefixed with its fencing token;
4. publishes the table's messages (``table:<id>``; hole cards only to
   ``player:<address>``);
5. hands the effects (ledger transfers, ``poker.*`` events through the outbox, the
   finished hand) to the table's effects task, which carries them out in order, each
   exactly once, batching what piled up, then saves again without them. The next
   command does not wait for the database (the saved state already holds the effects);
   only a join waits for its buy-in's answer. Event effects (actions, hands) of every
   table go through the host's :class:`EffectsWriter`, one transaction for all the
   tables that have some waiting (group commit): the store's cost grows with the
   number of transactions, not of tables.

**Takeover.** A new owner reads the saved bytes, refuses them if they carry a newer
token than its own, and claims them by compare-and-set with its token: from then on
every save of the old owner fails (it stops playing that table). It then carries out
the effects the old owner left pending (skipped if already done) and continues the
same hand from the saved state: same cards, same turn, a fresh turn timer.

Never blocks the event loop on one table: each table is its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog
from ulid import ULID

from ludex.errors import IllegalAction, LockLost, LudexError, PokerError
from ludex.gameserver.store import OK, GameStore
from ludex.gameserver.table import (
    BuyIn,
    CashOut,
    Effect,
    Message,
    Step,
    Table,
    TableConfig,
    TableError,
)
from ludex.poker.shuffle import new_server_seed
from ludex.ports.kv import KeyValue, Lease
from ludex.realtime.hub import Hub

log = structlog.get_logger(__name__)

TOKEN_BYTES: Final = 8


class TableUnavailable(TableError):
    """No process of this gateway deals that table right now (try again shortly)."""


class FencedOut(LockLost):
    """Another owner saved the table after us: stop playing it."""


@dataclass(frozen=True, slots=True)
class Command:
    """A player's request to a table: ``kind`` is join, leave, sit_out, sit_in or act."""

    kind: str
    player: str
    seat: int | None = None
    amount: int | None = None
    request_id: str | None = None
    action: str | None = None
    hand_id: str | None = None


COMMANDS: Final = ("join", "leave", "sit_out", "sit_in", "act")
WAKE: Final = "_wake"
"""Not a player's command: the effects task asks the actor to look at its timers."""


class EffectsWriter:
    """Group commit of the tables' event effects: while one transaction is being
    written, the batches that arrive wait and then share the next one. Money effects
    (buy-in, cash-out) keep a transaction each (:meth:`GameStore.apply`): a refused
    buy-in must not take other tables' events down with it. A table hands over its next
    batch only once the last is answered, so each table's effects stay in order."""

    def __init__(self, games: GameStore) -> None:
        self.games = games
        self._waiting: list[tuple[TableConfig, tuple[Effect, ...], asyncio.Future[None]]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.transactions = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="gameserver-effects-writer")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, _, future in self._waiting:
            if not future.done():
                future.set_exception(TableUnavailable("the table host is stopping"))
        self._waiting.clear()

    async def apply(self, config: TableConfig, effects: tuple[Effect, ...]) -> dict[str, str]:
        """Carry out one table's pending effects, in order; outcomes by id."""
        if self._task is None or any(isinstance(e, BuyIn | CashOut) for e in effects):
            return await self.games.apply(config, effects)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((config, effects, future))
        self._wake.set()
        await future
        return dict.fromkeys((e.id for e in effects), OK)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._waiting = self._waiting, []
            if not batch:
                continue
            try:
                await self.games.apply_events([(config, effects) for config, effects, _ in batch])
            except Exception as exc:  # each table's effects task backs off and retries
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                self.transactions += 1
                for _, _, future in batch:
                    if not future.done():
                        future.set_result(None)


def _done_future() -> asyncio.Future[dict[str, Any]]:
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    future.set_result({})
    return future


def state_key(table_id: str) -> str:
    return f"gameserver:state:{table_id}"


def lease_name(table_id: str) -> str:
    return f"gameserver:table:{table_id}"


def _pack(token: int, table: Table) -> bytes:
    return token.to_bytes(TOKEN_BYTES, "big") + table.to_bytes()


def _token(blob: bytes) -> int:
    return int.from_bytes(blob[:TOKEN_BYTES], "big")


def load_table(blob: bytes) -> Table:
    return Table.from_bytes(blob[TOKEN_BYTES:])


class TableActor:
    """One owned table: its command queue, its timers and its saves."""

    def __init__(
        self,
        host: TableHost,
        config: TableConfig,
        lease: Lease,
        table: Table,
        saved: bytes,
    ) -> None:
        self.host = host
        self.config = config
        self.lease = lease
        self.table = table
        self._saved = saved
        self._inbox: asyncio.Queue[tuple[Command, asyncio.Future[dict[str, Any]]]] = asyncio.Queue()
        self._saved_version = table.version
        self._refusals: dict[str, str] = {}
        self._save_lock = asyncio.Lock()
        self._effects_wake = asyncio.Event()
        self._effects_idle = asyncio.Event()
        self._effects_idle.set()
        self._helpers: list[asyncio.Task[None]] = []
        self._ended = False
        self.task: asyncio.Task[None] | None = None

    @property
    def table_id(self) -> str:
        return self.config.table_id

    async def submit(self, command: Command) -> dict[str, Any]:
        if self._ended:  # its queue is no longer read: nobody would answer
            raise TableUnavailable(f"table {self.table_id} moved to another process")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait((command, future))
        return await future

    async def run(self) -> None:
        try:
            await self._recover()
            self._helpers = [
                asyncio.create_task(self._effects_loop(), name=f"table-{self.table_id}-effects"),
                asyncio.create_task(self._lease_loop(), name=f"table-{self.table_id}-lease"),
            ]
            for helper in self._helpers:
                helper.add_done_callback(self._helper_ended)
            while True:
                for helper in self._helpers:
                    if helper.done():
                        helper.result()  # its failure (fenced out, lease lost) stops us too
                        return
                wake = self.table.wake_at()
                timeout = self.host.lease_seconds / 3  # look at the clock now and then too
                if wake is not None:
                    timeout = min(timeout, max(0.0, wake - self.host.clock()))
                try:
                    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
                    # cancellation that races with the queue, and the task never stops.
                    async with asyncio.timeout(timeout):
                        command, future = await self._inbox.get()
                except TimeoutError:
                    await self._on_time()
                    continue
                if command.kind != WAKE and not future.done():  # done: its caller gave up
                    try:
                        await self._handle(command, future)
                    finally:  # stopped or failed midway: its caller still gets an answer
                        if not future.done():
                            future.set_exception(
                                TableUnavailable(f"table {self.table_id} moved to another process")
                            )
                await self._on_time()
        except (LockLost, FencedOut) as exc:
            log.warning("gameserver.table_lost", table=self.table_id, reason=str(exc))
        except Exception:
            # The scan takes the table again from its last save (we still hold the lease).
            log.exception("gameserver.actor_failed", table=self.table_id)
            raise
        finally:
            self._ended = True
            for helper in self._helpers:
                helper.cancel()
            for helper in self._helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await helper
            self._fail_waiting(TableUnavailable(f"table {self.table_id} moved to another process"))

    async def _recover(self) -> None:
        """Carry out what a previous owner left pending and announce the table."""
        await self._carry_out()
        await self.host.publish_snapshot(self)

    async def _lease_loop(self) -> None:
        """Renew the lease every third of its length, on its own clock: a busy command
        loop (or one waiting on a buy-in) must not let it lapse."""
        while True:
            await asyncio.sleep(self.host.lease_seconds / 3)
            self.lease = await self.host.kv.renew_lock(self.lease, self.host.lease_seconds)

    def _helper_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled():  # wake the command loop: it stops on the helper's error
            self._inbox.put_nowait((Command(WAKE, ""), _done_future()))

    async def _on_time(self) -> None:
        now = self.host.clock()
        table = self.table
        step = table.tick(now)
        if table.ready_to_deal(now):
            started = table.start_hand(self.host.new_hand_id(), self.host.new_seed(), now)
            step.messages += started.messages
        if step.messages or table.version != self._saved_version:
            await self._commit(step)

    async def _handle(self, command: Command, future: asyncio.Future[dict[str, Any]]) -> None:
        now = self.host.clock()
        try:
            step, answer = self._apply(command, now)
        except (PokerError, TableError) as exc:
            if not future.done():
                future.set_exception(exc)
            return
        try:
            await self._commit(step)
        except BaseException as exc:
            if not future.done():
                lost = isinstance(exc, LockLost) or not isinstance(exc, LudexError)
                future.set_exception(
                    TableUnavailable(f"table {self.table_id} moved to another process")
                    if lost
                    else exc
                )
            raise
        try:
            if command.kind == "join":
                await self._effects_idle.wait()  # the buy-in transfer has been answered
                answer.update(self._join_result(command))
        except TableError as exc:
            if not future.done():
                future.set_exception(exc)
            return
        if not future.done():
            future.set_result(answer)

    def _apply(self, command: Command, now: float) -> tuple[Step, dict[str, Any]]:
        table, player = self.table, command.player
        kind = command.kind
        if kind == "join":
            if command.seat is None or command.amount is None or command.request_id is None:
                raise TableError("join needs seat, amount and request_id")
            return table.sit(player, command.seat, command.amount, command.request_id, now), {}
        if kind == "leave":
            return table.leave(player, now), {}
        if kind == "sit_out":
            return table.sit_out(player, now), {}
        if kind == "sit_in":
            return table.sit_in(player, now), {}
        if kind == "act":
            if command.action is None:
                raise IllegalAction("act needs an action")
            step = table.act(player, command.action, command.amount, now, command.hand_id)
            return step, {}
        raise TableError(f"unknown command {kind!r}; use one of {', '.join(COMMANDS)}")

    def _join_result(self, command: Command) -> dict[str, Any]:
        seat = self.table.seat_of(command.player)
        if seat is None:
            raise TableError(self._refusals.pop(command.request_id or "", "the buy-in was refused"))
        info = self.table.seats()[seat]
        return {"seat": seat, "stack": info.stack, "status": info.status.value}

    async def _commit(self, step: Step) -> None:
        """Save (effects included), publish, and hand the effects to the effects task:
        the next command does not wait for the database, the saved state holds them."""
        await self._save()
        await self.host.publish(self, step.messages)
        if self.table.effects:
            self._effects_idle.clear()
            self._effects_wake.set()

    async def _effects_loop(self) -> None:
        """Carry out pending effects in order, batching what piled up meanwhile; retry
        with backoff while the store is down (the effects wait in the saved state)."""
        backoff = 0.1
        while True:
            await self._effects_wake.wait()
            self._effects_wake.clear()
            try:
                changed = await self._carry_out()
            except (LockLost, FencedOut):
                raise
            except LudexError as exc:
                log.warning("gameserver.effects_failed", table=self.table_id, error=str(exc))
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._effects_wake.set()
                continue
            backoff = 0.1
            if changed:  # a buy-in seated someone: the actor may deal now
                self._inbox.put_nowait((Command(WAKE, ""), _done_future()))
            if not self._effects_wake.is_set() and not self.table.effects:
                self._effects_idle.set()

    async def _carry_out(self) -> bool:
        """Carry out every pending effect; True when the table changed (buy-ins)."""
        changed = False
        while self.table.effects:
            effects = self.table.effects
            outcomes = await self.host.effects.apply(self.config, effects)
            follow = Step()
            now = self.host.clock()
            for effect in effects:
                if isinstance(effect, BuyIn):
                    outcome = outcomes[effect.id]
                    if outcome != OK:
                        self._refusals[effect.session] = outcome.removeprefix("refused: ")
                    settled = self.table.buy_in_settled(
                        effect.session, effect.amount, outcome == OK, now
                    )
                    follow.messages += settled.messages
                    changed = True
            self.table.effects_done(list(outcomes))
            await self._save()
            if follow.messages:
                await self.host.publish(self, follow.messages)
        return changed

    async def _save(self) -> None:
        async with self._save_lock:  # the actor and its effects task save in turn
            version = self.table.version
            blob = _pack(self.lease.token, self.table)
            if not await self.host.kv.compare_and_set(state_key(self.table_id), self._saved, blob):
                raise FencedOut(f"table {self.table_id} was saved by another owner")
            self._saved = blob
            self._saved_version = version

    def _fail_waiting(self, exc: Exception) -> None:
        while not self._inbox.empty():
            _, future = self._inbox.get_nowait()
            if not future.done():
                future.set_exception(exc)


class TableHost:
    """The tables this process owns; see the module docstring."""

    def __init__(
        self,
        games: GameStore,
        kv: KeyValue,
        hub: Hub | None = None,
        *,
        owner: str | None = None,
        lease_seconds: float = 10.0,
        scan_seconds: float = 2.0,
        max_tables: int = 1000,
        clock: Callable[[], float] = time.time,
        new_seed: Callable[[], bytes] = new_server_seed,
        new_hand_id: Callable[[], str] = lambda: str(ULID()),
    ) -> None:
        self.games = games
        self.kv = kv
        self.hub = hub
        self.owner = owner or f"gameserver-{ULID()}"
        self.lease_seconds = lease_seconds
        self.scan_seconds = scan_seconds
        self.max_tables = max_tables
        self.clock = clock
        self.new_seed = new_seed
        self.new_hand_id = new_hand_id
        self.actors: dict[str, TableActor] = {}
        self.effects = EffectsWriter(games)
        self._scanner: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        if self._scanner is None:
            self.effects.start()
            await self.scan()
            self._scanner = asyncio.create_task(self._scan_loop(), name="gameserver-scan")

    async def close(self) -> None:
        """Stop dealing and release every lease (another process takes the tables)."""
        await self._stop(release=True)

    async def crash(self) -> None:
        """Stop as a killed process would: nothing saved, no lease released (tests)."""
        await self._stop(release=False)

    async def _stop(self, *, release: bool) -> None:
        tasks = [t for t in [self._scanner, *(a.task for a in self.actors.values())] if t]
        for task in tasks:
            # Cancel until it ends: a cancellation that lands while a client library
            # (redis-py) handles its own can be absorbed there.
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError, LudexError):
                task.result()
        self._scanner = None
        await self.effects.close()
        if release:
            for actor in self.actors.values():
                with contextlib.suppress(LudexError):
                    await self.kv.release_lock(actor.lease)
        self.actors.clear()

    def wake(self) -> None:
        """Scan now (a table was created or opened)."""
        self._wake.set()

    async def _scan_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.scan_seconds):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.scan()
            except LudexError as exc:
                log.warning("gameserver.scan_failed", error=str(exc))

    async def scan(self) -> int:
        """Take every open table nobody owns (up to ``max_tables``); how many were taken."""
        for table_id, actor in list(self.actors.items()):
            if actor.task is not None and actor.task.done():
                del self.actors[table_id]
        taken = 0
        for config in await self.games.tables():
            if config.table_id in self.actors or len(self.actors) >= self.max_tables:
                continue
            lease = await self.kv.acquire_lock(
                lease_name(config.table_id), self.owner, self.lease_seconds
            )
            if lease is None:
                continue
            try:
                actor = await self._take(config, lease)
            except (FencedOut, LockLost) as exc:
                log.warning("gameserver.takeover_refused", table=config.table_id, reason=str(exc))
                continue
            self.actors[config.table_id] = actor
            actor.task = asyncio.create_task(actor.run(), name=f"table-{config.table_id}")
            taken += 1
        return taken

    async def _take(self, config: TableConfig, lease: Lease) -> TableActor:
        key = state_key(config.table_id)
        current = await self.kv.get(key)
        if current is None:
            table = Table(config)
        else:
            if _token(current) > lease.token:
                raise FencedOut(f"table {config.table_id} was saved under a newer lease")
            table = load_table(current)
        claimed = _pack(lease.token, table)
        if not await self.kv.compare_and_set(key, current, claimed):
            raise FencedOut(f"table {config.table_id} changed while being taken over")
        log.info(
            "gameserver.table_taken",
            table=config.table_id,
            token=lease.token,
            resumed_hand=table.hand_id,
        )
        return TableActor(self, config, lease, table, claimed)

    # -- commands --------------------------------------------------------------------

    def owns(self, table_id: str) -> bool:
        actor = self.actors.get(table_id)
        return actor is not None and actor.task is not None and not actor.task.done()

    async def submit(self, table_id: str, command: Command) -> dict[str, Any]:
        """Apply a player's command at a table this process owns."""
        actor = self.actors.get(table_id)
        if actor is None or actor.task is None or actor.task.done():
            raise TableUnavailable(
                f"table {table_id} is not dealt here right now; retry in a few seconds"
            )
        return await actor.submit(command)

    # -- views and messages ----------------------------------------------------------

    async def view(self, table_id: str) -> Table | None:
        """The table as last saved (or live, when owned here)."""
        actor = self.actors.get(table_id)
        if actor is not None:
            return actor.table
        blob = await self.kv.get(state_key(table_id))
        return None if blob is None else load_table(blob)

    async def snapshot(self, channel: str) -> Any:
        """The hub's snapshot provider: a table channel's public view."""
        if not channel.startswith("table:"):
            return None
        table = await self.view(channel.removeprefix("table:"))
        return None if table is None else table.public_view()

    async def publish(self, actor: TableActor, messages: list[Message]) -> None:
        hub = self.hub
        if hub is None:
            return
        channel = f"table:{actor.table_id}"
        for message in messages:
            try:
                if message.player is None:
                    await hub.publish(
                        channel, message.type, {"table_id": actor.table_id, **message.data}
                    )
                else:
                    await hub.send_private(
                        message.player.lower(),
                        message.type,
                        {"table_id": actor.table_id, **message.data},
                    )
            except LudexError as exc:  # the stream is not the record; the bus is
                log.warning("gameserver.publish_failed", table=actor.table_id, error=str(exc))

    async def publish_snapshot(self, actor: TableActor) -> None:
        await self.publish(actor, [Message("table", actor.table.public_view())])
