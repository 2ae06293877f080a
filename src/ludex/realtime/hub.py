"""The channel hub: subscriptions, fan-out, resume, private delivery and presence.

No web framework here: a transport (the gateway's WebSocket handler) creates a
:class:`Connection` with :meth:`Hub.connect`, forwards the client's subscribe and
unsubscribe requests, and sends whatever :meth:`Connection.receive` yields until it
returns None (then closes the socket with :attr:`Connection.close_reason`).

Every frame is the envelope ``{channel, epoch, seq, type, data}`` in the
connection's encoding (JSON or MessagePack). Control frames use the same envelope:
``gap`` (the resume point cannot be served) and ``snapshot`` (the state at ``seq``,
from the snapshot provider).

Rules this module keeps:

* ``publish`` never awaits a consumer: each connection has a bounded queue and a
  connection whose queue is full is dropped (closed with a reason); the others are
  not slowed. A connection with a direct write path (:class:`FrameSink`, see
  ``ludex.realtime.transport``) gets its frames written to its socket during
  ``publish`` itself; they queue only while its socket is above its high-water mark
  (or frames are queued ahead), so the bound is the socket buffer plus the queue.
* Within one hub, messages of a channel are delivered in sequence order, and a
  resuming subscriber gets exactly the messages after its resume point, once each.
* ``player:ID`` is readable only by connections authenticated as player ID;
  messages sent to an offline player wait ``offline_ttl`` seconds in this hub.

Across processes (``ludex.realtime.fanout``): once a fan-out is attached
(:meth:`Hub.use_fanout`), ``publish`` and ``send_private`` only store the message;
the fan-out hands every stored message, this process's own included, to
:meth:`Hub.deliver` in the channel's sequence order. A subscriber that sees a
sequence jump (messages lost while the fan-out reconnected) or a new epoch catches
up from the history first (or gets ``gap`` + ``snapshot``), so it never sees a
message twice nor out of order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

import msgpack  # type: ignore[import-untyped]
import msgspec
import structlog

from ludex.realtime.history import (
    Gap,
    History,
    JsonValue,
    Message,
    Position,
    RealtimeError,
    Replay,
    check_channel,
    check_type,
)

log = structlog.get_logger(__name__)

Encoding = Literal["json", "msgpack"]
ENCODINGS: tuple[Encoding, ...] = ("json", "msgpack")

SnapshotProvider = Callable[[str], Awaitable[JsonValue]]
"""Answers a channel's current state; called while the channel's publishes wait."""

SLOW_CONSUMER = "slow consumer: send queue full"
INTERRUPTED = "stream interrupted: reconnect and resubscribe with your resume point"


class ChannelForbidden(RealtimeError):
    """The connection may not subscribe to this channel (another player's channel)."""


_JSON: Final = msgspec.json.Encoder()


def encode_frame(envelope: dict[str, JsonValue], encoding: Encoding) -> bytes:
    if encoding == "json":
        # msgspec: the same compact UTF-8 JSON as json.dumps, about ten times faster (the
        # envelope's data was checked by encode_data when it was published).
        return _JSON.encode(envelope)
    packed: bytes = msgpack.packb(envelope, use_bin_type=True)
    return packed


def decode_frame(frame: bytes, encoding: Encoding) -> dict[str, JsonValue]:
    """The envelope of a frame (for clients and tests); raises RealtimeError if malformed."""
    try:
        value = json.loads(frame) if encoding == "json" else msgpack.unpackb(frame, raw=False)
    except (ValueError, msgpack.UnpackException) as exc:
        raise RealtimeError(f"{encoding} frame is malformed ({exc})") from None
    if not isinstance(value, dict) or set(value) != {"channel", "epoch", "seq", "type", "data"}:
        raise RealtimeError(
            f"{encoding} frame is not a {{channel, epoch, seq, type, data}} envelope"
        )
    return value


class FrameSink(Protocol):
    """A server's direct write path to one socket (``ludex.realtime.transport``).

    ``frame`` turns an encoded envelope into wire bytes (the same bytes for every
    sink, given the payload and its kind: the hub frames a message once per encoding);
    ``write`` sends whole frames at once and returns False when the socket is closing;
    ``paused`` is True while the socket's write buffer is above its high-water mark.
    """

    paused: bool

    def frame(self, payload: bytes, binary: bool) -> bytes: ...

    def write(self, data: bytes) -> bool: ...

    def buffered(self) -> int: ...


class Connection:
    """One client connection: its identity, encoding and bounded send queue.

    Frames replayed on subscribe do not count against ``max_queue`` (the history is
    bounded already); live frames do.

    With a :class:`FrameSink` attached (the server offers a direct write path), frames
    are held as wire bytes and written to the socket the moment they are offered, as
    long as nothing is queued ahead of them and the socket is not paused
    (backpressure). Otherwise they queue, and the transport's writer sends the queue
    (with a sink: all of it in one write, once the socket drains). So the backlog a
    slow client can build is the socket's buffer up to its high-water mark plus
    ``max_queue`` frames, as on the ASGI path, and every frame (live, replayed,
    control reply) goes out in the order it was offered.
    """

    def __init__(
        self,
        conn_id: str,
        encoding: Encoding,
        max_queue: int,
        player_id: str | None,
        sink: FrameSink | None = None,
    ) -> None:
        self.id = conn_id
        self.encoding: Encoding = encoding
        self.player_id = player_id
        self.max_queue = max_queue
        self.sink = sink
        self.wire: str = encoding if sink is None else f"{encoding}+frames"
        """What the bytes of a frame depend on: connections with the same ``wire``
        share one encoded (and framed) copy of each message."""
        self.channels: set[str] = set()
        self.close_reason: str | None = None
        self._frames: deque[tuple[bytes, bool]] = deque()
        self._replayed = 0
        self._ready = asyncio.Event()
        self._gone = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    @property
    def queued(self) -> int:
        return len(self._frames)

    def to_wire(self, payload: bytes) -> bytes:
        """An encoded envelope as this connection sends it (framed when it has a sink)."""
        if self.sink is None:
            return payload
        return self.sink.frame(payload, self.encoding == "msgpack")

    def _offer(self, frame: bytes) -> bool:
        """Send or queue a live frame (wire bytes); False when the queue is full (the
        caller drops us)."""
        if self.close_reason is not None:
            return True
        sink = self.sink
        if sink is not None and not self._frames and not sink.paused:
            # False: the socket is closing; the transport notices and disconnects us.
            sink.write(frame)
            return True
        if len(self._frames) - self._replayed >= self.max_queue:
            return False
        self._frames.append((frame, False))
        self._ready.set()
        return True

    def _replay(self, frame: bytes) -> None:
        if self.close_reason is not None:
            return
        sink = self.sink
        if sink is not None and not self._frames and not sink.paused:
            sink.write(frame)
            return
        self._frames.append((frame, True))
        self._replayed += 1
        self._ready.set()

    def send_control(self, frame: bytes) -> None:
        """Send a reply to the client's own request (ack, pong, error; an encoded
        envelope): in order with channel frames, and never counted against
        ``max_queue``, since the client asked for it."""
        self._replay(self.to_wire(frame))

    def _close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
            self._frames.clear()
            self._replayed = 0
            self._ready.set()
            self._gone.set()

    def take(self) -> bytes | None:
        """The next queued frame without waiting, or None if there is none."""
        if not self._frames:
            return None
        frame, replayed = self._frames.popleft()
        if replayed:
            self._replayed -= 1
        if not self._frames and not self.closed:
            self._ready.clear()
        return frame

    def take_all(self) -> bytes:
        """Every queued frame, joined (empty if none): one write for the whole backlog."""
        frames = [frame for frame, _ in self._frames]
        self._frames.clear()
        self._replayed = 0
        if not self.closed:
            self._ready.clear()
        return frames[0] if len(frames) == 1 else b"".join(frames)

    async def receive(self) -> bytes | None:
        """The next frame to send; None once the connection is closed."""
        while True:
            if self.closed:
                return None
            frame = self.take()
            if frame is not None:
                return frame
            await self._ready.wait()

    async def queued_or_closed(self) -> bool:
        """Wait until a frame is queued (True) or the connection is closed (False)."""
        while not self.closed:
            if self._frames:
                return True
            await self._ready.wait()
        return False

    async def wait_closed(self) -> None:
        await self._gone.wait()


@dataclass(frozen=True, slots=True)
class Subscribed:
    """The outcome of a subscribe: where the client stands now, and how it got there."""

    channel: str
    position: Position
    replayed: int
    gap: bool


@dataclass(frozen=True, slots=True)
class Presence:
    """Who watches a table: authenticated players and anonymous spectator count."""

    players: frozenset[str]
    spectators: int


@dataclass
class _Subscriber:
    connection: Connection
    # While a subscriber is catching up from history, live messages wait here.
    pending: list[Message] | None = None
    epoch: str = ""
    last_seq: int = 0
    # The fan-out reconnected during the catch-up: read the history again after it.
    recheck: bool = False


@dataclass
class _Offline:
    messages: deque[tuple[float, Message]] = field(default_factory=deque)


class Hub:
    """Channels, connections and fan-out for one process, on a shared :class:`History`."""

    def __init__(
        self,
        history: History,
        *,
        snapshot: SnapshotProvider | None = None,
        max_queue: int = 256,
        offline_ttl: float = 60.0,
        offline_max: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_queue < 1 or offline_max < 1 or not offline_ttl > 0:
            raise RealtimeError("max_queue and offline_max must be >= 1, offline_ttl > 0")
        self.history = history
        self._snapshot = snapshot
        self._max_queue = max_queue
        self._offline_ttl = offline_ttl
        self._offline_max = offline_max
        self._clock = clock
        self._ids = itertools.count(1)
        self._channels: dict[str, dict[str, _Subscriber]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._offline: dict[str, _Offline] = {}
        self._remote = False
        self.dropped = 0
        self.recovered = 0
        """Messages a live subscriber missed on the fan-out and got from the history."""

    # connections -------------------------------------------------------------------

    def connect(
        self,
        *,
        encoding: Encoding = "json",
        player_id: str | None = None,
        max_queue: int | None = None,
        sink: FrameSink | None = None,
    ) -> Connection:
        """A new connection; ``player_id`` is the authenticated player (None: anonymous);
        ``sink`` the server's direct write path to its socket, if it has one."""
        if encoding not in ENCODINGS:
            raise RealtimeError(f"encoding {encoding!r} is not supported; use json or msgpack")
        if player_id is not None:
            check_channel(f"player:{player_id}")
        size = self._max_queue if max_queue is None else max_queue
        if size < 1:
            raise RealtimeError(f"max_queue must be >= 1, got {size}")
        return Connection(f"c{next(self._ids)}", encoding, size, player_id, sink)

    def disconnect(self, connection: Connection, reason: str = "closed") -> None:
        """Close the connection and remove it from every channel."""
        for channel in list(connection.channels):
            self._remove(connection, channel)
        connection._close(reason)

    # subscriptions -----------------------------------------------------------------

    async def subscribe(
        self,
        connection: Connection,
        channel: str,
        resume: tuple[str, int] | None = None,
    ) -> Subscribed:
        """Subscribe, replaying what the client missed since ``resume`` (epoch, seq).

        Without a usable resume point the client gets a ``gap`` frame (when it asked to
        resume) and a ``snapshot`` frame; queued private messages come before it.
        """
        check_channel(channel)
        if connection.closed:
            raise RealtimeError(f"connection {connection.id} is closed ({connection.close_reason})")
        if channel.startswith("player:") and channel != f"player:{connection.player_id}":
            raise ChannelForbidden(
                f"connection {connection.id} may not read {channel!r}: players read only "
                "their own player channel"
            )
        subs = self._channels.setdefault(channel, {})
        if connection.id in subs:
            self._remove(connection, channel)
            subs = self._channels.setdefault(channel, {})
        sub = _Subscriber(connection, pending=[])
        subs[connection.id] = sub
        connection.channels.add(channel)
        try:
            outcome = await self._catch_up(sub, channel, resume)
        except BaseException:
            self._remove(connection, channel)
            raise
        return outcome

    async def _catch_up(
        self,
        sub: _Subscriber,
        channel: str,
        resume: tuple[str, int] | None,
        answer: Replay | Gap | None = None,
    ) -> Subscribed:
        conn = sub.connection
        replay: list[Message] = []
        gap: Gap | None = None
        if resume is not None:
            if answer is None:
                answer = await self.history.since(channel, resume[0], resume[1])
            if isinstance(answer, Gap):
                gap = answer
            else:
                replay = list(answer.messages)
        offline = self._take_offline(channel)
        if gap is None and resume is not None:
            for message in replay:
                self._deliver_replay(sub, message)
            sub.last_seq = max(resume[1], sub.last_seq)
            epoch, replayed = resume[0], len(replay)
        else:
            async with self._lock(channel):
                # No publish of this hub interleaves: the snapshot is the state at head.
                head = await self.history.head(channel)
                data = await self._snapshot(channel) if self._snapshot else None
            if gap is not None:
                conn._replay(
                    self._frame(Message(channel, head.epoch, head.seq, "gap", gap.reason), conn)
                )
            for message in offline:
                if message.epoch == head.epoch:
                    self._deliver_replay(sub, message)
            conn._replay(
                self._frame(Message(channel, head.epoch, head.seq, "snapshot", data), conn)
            )
            sub.last_seq = head.seq
            epoch, replayed = head.epoch, sum(1 for m in offline if m.epoch == head.epoch)
        sub.epoch = epoch
        await self._go_live(sub, channel)
        return Subscribed(channel, Position(epoch, sub.last_seq), replayed, gap=gap is not None)

    async def _go_live(self, sub: _Subscriber, channel: str) -> None:
        """Deliver what arrived while the subscriber caught up, then make it live.

        With a fan-out, a sequence jump in what arrived (or a reconnect of the fan-out
        meanwhile, ``recheck``) means messages were lost on the way: they are read
        from the history first. ``pending`` may grow while that read waits.
        """
        conn = sub.connection
        pending = sub.pending if sub.pending is not None else []
        sub.pending = pending
        done = 0
        while True:
            while done < len(pending) and not conn.closed:
                message = pending[done]
                done += 1
                if message.epoch != sub.epoch:
                    self.disconnect(conn, f"channel {channel} restarted its epoch; resubscribe")
                    break
                if self._remote and message.seq > sub.last_seq + 1:
                    await self._fill(sub, channel)
                self._deliver_replay(sub, message)
            if not (sub.recheck and not conn.closed):
                break
            sub.recheck = False
            await self._fill(sub, channel)
        sub.pending = None

    async def _fill(self, sub: _Subscriber, channel: str) -> None:
        """Replay from the history what the subscriber lacks; closes it if it cannot."""
        answer = await self.history.since(channel, sub.epoch, sub.last_seq)
        if isinstance(answer, Gap):
            self.disconnect(sub.connection, INTERRUPTED)
            return
        for message in answer.messages:
            self._deliver_replay(sub, message)
        self.recovered += len(answer.messages)

    def _deliver_replay(self, sub: _Subscriber, message: Message) -> None:
        if message.seq > sub.last_seq:
            sub.connection._replay(self._frame(message, sub.connection))
            sub.last_seq = message.seq

    def unsubscribe(self, connection: Connection, channel: str) -> bool:
        """True if the connection was subscribed."""
        check_channel(channel)
        return self._remove(connection, channel)

    def _remove(self, connection: Connection, channel: str) -> bool:
        connection.channels.discard(channel)
        subs = self._channels.get(channel)
        if subs is None or subs.pop(connection.id, None) is None:
            return False
        if not subs:
            del self._channels[channel]
        return True

    # publishing --------------------------------------------------------------------

    async def publish(self, channel: str, msg_type: str, data: JsonValue) -> Message:
        """Store the message in the history and fan it out; never waits on a consumer.

        With a fan-out attached the message is only stored here: the fan-out's echo
        delivers it, in sequence order with every other process's messages.
        """
        check_channel(channel)
        check_type(msg_type)
        async with self._lock(channel):
            message = await self.history.append(channel, msg_type, data)
            if not self._remote:
                self._fan_out(message)
        return message

    async def send_private(self, player_id: str, msg_type: str, data: JsonValue) -> Message:
        """Deliver to ``player:ID`` only; queued for ``offline_ttl`` if the player is away."""
        channel = check_channel(f"player:{player_id}")
        async with self._lock(channel):
            message = await self.history.append(channel, msg_type, data)
            if not self._remote:
                self._route(message)
        return message

    def _route(self, message: Message) -> list[_Subscriber]:
        """Fan out to this hub's subscribers, or keep a private message for later."""
        if self._channels.get(message.channel):
            return self._fan_out(message)
        if message.channel.startswith("player:"):
            queue = self._offline.setdefault(message.channel, _Offline()).messages
            queue.append((self._clock(), message))
            while len(queue) > self._offline_max:
                queue.popleft()
        return []

    def _fan_out(self, message: Message) -> list[_Subscriber]:
        """Offer the message to every subscriber; with a fan-out, the ones whose next
        sequence it is not (they missed messages) are returned instead."""
        frames: dict[str, bytes] = {}  # by encoding and by wire
        slow: list[Connection] = []
        behind: list[_Subscriber] = []
        for sub in list(self._channels.get(message.channel, {}).values()):
            if sub.pending is not None:
                sub.pending.append(message)
                if len(sub.pending) > sub.connection.max_queue:
                    slow.append(sub.connection)
                continue
            if message.epoch == sub.epoch and message.seq <= sub.last_seq:
                continue  # it came in the subscriber's replay already
            if self._remote and (message.epoch != sub.epoch or message.seq != sub.last_seq + 1):
                behind.append(sub)
                continue
            conn = sub.connection
            frame = frames.get(conn.wire)
            if frame is None:
                payload = frames.get(conn.encoding)
                if payload is None:
                    payload = frames[conn.encoding] = encode_frame(
                        message.envelope(), conn.encoding
                    )
                frame = frames[conn.wire] = conn.to_wire(payload)
            if conn._offer(frame):
                sub.last_seq = message.seq
            else:
                slow.append(conn)
        for conn in slow:
            self.dropped += 1
            self.disconnect(conn, SLOW_CONSUMER)
        return [sub for sub in behind if not sub.connection.closed]

    # fan-out across processes ------------------------------------------------------

    def use_fanout(self, enabled: bool) -> None:
        """Attach (or detach) a fan-out: while attached, ``publish`` and ``send_private``
        only store, and every message reaches connections through :meth:`deliver`.

        Delivering locally as well and skipping the echo would let this process's
        seq 6 overtake another process's seq 5 still on its way: one path keeps each
        channel in sequence order. Call :meth:`resync` once the fan-out listens.
        """
        self._remote = enabled

    @property
    def fanout_attached(self) -> bool:
        return self._remote

    async def deliver(self, message: Message) -> None:
        """Fan out a message already stored in the history, by this or another process.

        The fan-out calls this in each channel's sequence order. A subscriber that has
        the message (from its replay) skips it; one that missed messages before it
        (or whose epoch is over) catches up from the history first, or gets ``gap`` +
        ``snapshot``. A ``player:`` message with no subscriber here waits in the
        offline queue, as with :meth:`send_private`.
        """
        behind = self._route(message)
        if behind:
            await self._resync(message.channel, behind)

    async def resync(self) -> None:
        """Every subscriber gets from the history what the fan-out may have lost (it
        reconnected): the missed messages in order, or ``gap`` + ``snapshot``."""
        for subs in self._channels.values():
            for sub in subs.values():
                if sub.pending is not None:
                    sub.recheck = True  # catching up now: read the history once more
        channels = [(channel, list(subs.values())) for channel, subs in self._channels.items()]
        await asyncio.gather(*(self._resync(channel, subs) for channel, subs in channels))

    async def _resync(self, channel: str, subs: list[_Subscriber]) -> None:
        live = [
            sub
            for sub in subs
            if sub.pending is None
            and not sub.connection.closed
            and self._channels.get(channel, {}).get(sub.connection.id) is sub
        ]
        for sub in live:
            sub.pending = []  # from now on live messages wait behind the history read
        answers: dict[tuple[str, int], Replay | Gap] = {}
        for sub in live:
            point = (sub.epoch, sub.last_seq)
            try:
                answer = answers.get(point)
                if answer is None:
                    answer = answers[point] = await self.history.since(channel, *point)
                outcome = await self._catch_up(sub, channel, point, answer)
            except Exception as exc:  # the connection resumes from its own position
                log.warning(
                    "realtime.resync_failed",
                    channel=channel,
                    connection=sub.connection.id,
                    error=f"{type(exc).__name__}: {exc}",
                )
                self.disconnect(sub.connection, INTERRUPTED)
            else:
                if not outcome.gap:
                    self.recovered += outcome.replayed

    def _take_offline(self, channel: str) -> list[Message]:
        entry = self._offline.pop(channel, None)
        if entry is None:
            return []
        oldest = self._clock() - self._offline_ttl
        return [m for at, m in entry.messages if at >= oldest]

    def expire_offline(self) -> int:
        """Forget queued private messages older than ``offline_ttl``; how many went."""
        oldest = self._clock() - self._offline_ttl
        gone = 0
        for channel in list(self._offline):
            queue = self._offline[channel].messages
            while queue and queue[0][0] < oldest:
                queue.popleft()
                gone += 1
            if not queue:
                del self._offline[channel]
        return gone

    # presence ----------------------------------------------------------------------

    def presence(self, channel: str) -> Presence:
        """Who is subscribed to a ``table:`` channel."""
        check_channel(channel)
        if not channel.startswith("table:"):
            raise RealtimeError(f"presence is kept for table channels only, not {channel!r}")
        conns = [s.connection for s in self._channels.get(channel, {}).values()]
        players = frozenset(c.player_id for c in conns if c.player_id is not None)
        return Presence(players, sum(1 for c in conns if c.player_id is None))

    def subscribers(self, channel: str) -> Iterable[Connection]:
        return [s.connection for s in self._channels.get(check_channel(channel), {}).values()]

    # helpers -----------------------------------------------------------------------

    def _lock(self, channel: str) -> asyncio.Lock:
        lock = self._locks.get(channel)
        if lock is None:
            lock = self._locks[channel] = asyncio.Lock()
        return lock

    @staticmethod
    def _frame(message: Message, conn: Connection) -> bytes:
        return conn.to_wire(encode_frame(message.envelope(), conn.encoding))
