"""Channel names and the bounded per-channel message history (memory and Redis).

Every channel has an *epoch* (a random id chosen when its history starts) and a
sequence number per message, starting at 1 and strictly increasing within the
epoch. ``since(channel, epoch, last_seq)`` answers either exactly the messages after
``last_seq`` in order (a :class:`Replay`) or a :class:`Gap` when the epoch differs or
the retained history (last ``max_messages`` messages, none older than
``max_age`` seconds) no longer reaches back: the client then takes a fresh snapshot
and the new epoch.

The Redis history assigns the sequence inside one Lua script (HINCRBY + XADD), so
any number of processes publishing on one channel never reuse a sequence. The same
script PUBLISHes the stored message on the namespace's fan-out channel
(:attr:`RedisHistory.fanout_channel`, payload: :func:`decode_fanout`), so every
gateway process can deliver it (``ludex.realtime.fanout``). This module must never
let a ``redis`` exception escape (they become ``BackendUnavailable`` or
``BackendError``) nor put a password in an error.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis

from ludex.adapters.kv.redis import redis_errors
from ludex.config import redact_url
from ludex.errors import BackendError, ConfigError, LudexError

JsonValue = Any
"""A value ``json.dumps`` accepts without help (dict, list, str, int, float, bool, None)."""


class RealtimeError(LudexError):
    """The real-time hub refused something (bad channel, bad payload, forbidden)."""


class BadChannel(RealtimeError):
    """A channel name is not one of ``table:ID``, ``player:ID``, ``lobby``, ``blocks``."""


_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_FIXED = frozenset({"lobby", "blocks"})
_SCOPED = frozenset({"table", "player"})
_TYPE = re.compile(r"[a-z][a-z0-9_.]{0,63}")


def check_channel(name: object) -> str:
    """The channel name if it is valid, else :class:`BadChannel` saying what is accepted."""
    if isinstance(name, str):
        if name in _FIXED:
            return name
        kind, sep, ident = name.partition(":")
        if sep and kind in _SCOPED and _ID.fullmatch(ident):
            return name
    raise BadChannel(
        f"channel {name!r} is not valid; use 'lobby', 'blocks', 'table:ID' or 'player:ID' "
        "where ID is 1-64 characters of A-Z a-z 0-9 _ -"
    )


def check_type(msg_type: object) -> str:
    """A message type: lower case, starting with a letter, at most 64 characters."""
    if isinstance(msg_type, str) and _TYPE.fullmatch(msg_type):
        return msg_type
    raise RealtimeError(
        f"message type {msg_type!r} is not valid; use lower case letters, digits, '_' and "
        "'.', starting with a letter, at most 64 characters"
    )


def encode_data(channel: str, data: JsonValue) -> bytes:
    """``data`` as compact JSON; refuses anything JSON cannot carry exactly."""
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise RealtimeError(
            f"payload for channel {channel!r} is not JSON-compatible ({exc}); send dicts, "
            "lists, strings, ints, finite floats, booleans and None only"
        ) from None


@dataclass(frozen=True, slots=True)
class Message:
    """One published message: the envelope every connection receives."""

    channel: str
    epoch: str
    seq: int
    type: str
    data: JsonValue

    def envelope(self) -> dict[str, JsonValue]:
        return {
            "channel": self.channel,
            "epoch": self.epoch,
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
        }


@dataclass(frozen=True, slots=True)
class Position:
    """Where a channel's history stands: its epoch and the last sequence assigned."""

    epoch: str
    seq: int


@dataclass(frozen=True, slots=True)
class Replay:
    """The messages after the client's ``last_seq``, in order (possibly none)."""

    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Gap:
    """The history cannot resume the client: take a snapshot at ``position``."""

    position: Position
    reason: str


class History(Protocol):
    async def append(self, channel: str, msg_type: str, data: JsonValue) -> Message:
        """Store a message and give it the channel's next sequence (starting the epoch)."""
        ...

    async def head(self, channel: str) -> Position:
        """The current position, starting the channel's epoch if it has none yet."""
        ...

    async def since(self, channel: str, epoch: str, last_seq: int) -> Replay | Gap: ...

    async def close(self) -> None: ...


def new_epoch() -> str:
    return secrets.token_hex(8)


def _check_bounds(max_messages: int, max_age: float) -> None:
    if not isinstance(max_messages, int) or max_messages < 1:
        raise ConfigError(f"history max_messages must be an int >= 1, got {max_messages!r}")
    if not max_age > 0:
        raise ConfigError(f"history max_age must be > 0 seconds, got {max_age!r}")


def _check_resume(channel: str, epoch: object, last_seq: object) -> None:
    if not isinstance(epoch, str) or not isinstance(last_seq, int) or last_seq < 0:
        raise RealtimeError(
            f"resume point for {channel!r} must be (epoch: str, seq: int >= 0), "
            f"got ({epoch!r}, {last_seq!r})"
        )


def _resolve(current: Position, epoch: str, last_seq: int, kept: list[Message]) -> Replay | Gap:
    """The shared decision: ``kept`` are the retained messages with seq > last_seq."""
    if epoch != current.epoch:
        return Gap(current, f"epoch {epoch!r} is over; the channel is at {current.epoch!r}")
    if last_seq > current.seq:
        return Gap(current, f"seq {last_seq} is ahead of the channel ({current.seq})")
    missing = current.seq - last_seq
    if len(kept) != missing or (kept and kept[0].seq != last_seq + 1):
        return Gap(current, f"history no longer reaches back to seq {last_seq + 1}")
    return Replay(tuple(kept))


class MemoryHistory:
    """History in this process: per channel a deque of the last ``max_messages``."""

    def __init__(
        self,
        *,
        max_messages: int = 1000,
        max_age: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_bounds(max_messages, max_age)
        self._max_messages = max_messages
        self._max_age = max_age
        self._clock = clock
        self._positions: dict[str, Position] = {}
        self._logs: dict[str, deque[tuple[float, Message]]] = {}

    def _start(self, channel: str) -> Position:
        check_channel(channel)
        position = self._positions.get(channel)
        if position is None:
            position = self._positions[channel] = Position(new_epoch(), 0)
            self._logs[channel] = deque(maxlen=self._max_messages)
        return position

    def _trim(self, channel: str) -> deque[tuple[float, Message]]:
        log = self._logs[channel]
        oldest = self._clock() - self._max_age
        while log and log[0][0] < oldest:
            log.popleft()
        return log

    async def append(self, channel: str, msg_type: str, data: JsonValue) -> Message:
        check_type(msg_type)
        encode_data(channel, data)
        position = self._start(channel)
        message = Message(channel, position.epoch, position.seq + 1, msg_type, data)
        self._positions[channel] = Position(position.epoch, message.seq)
        self._trim(channel).append((self._clock(), message))
        return message

    async def head(self, channel: str) -> Position:
        return self._start(channel)

    async def since(self, channel: str, epoch: str, last_seq: int) -> Replay | Gap:
        _check_resume(channel, epoch, last_seq)
        current = self._start(channel)
        kept = [m for _, m in self._trim(channel) if m.seq > last_seq]
        return _resolve(current, epoch, last_seq, kept)

    async def close(self) -> None:
        return None


def decode_fanout(payload: bytes) -> Message:
    """The message in a fan-out payload ``channel\\nepoch\\nseq\\ntype\\ndata``.

    One flat line-separated record instead of JSON around JSON: the first four fields
    never contain a newline (checked names, hex epochs, digits), ``data`` is last and
    parsed once. Raises :class:`BackendError` if the payload is malformed.
    """
    try:
        channel, epoch, seq, msg_type, data = payload.split(b"\n", 4)
        return Message(
            check_channel(channel.decode()),
            epoch.decode(),
            int(seq),
            check_type(msg_type.decode()),
            json.loads(data),
        )
    except (ValueError, RealtimeError) as exc:
        raise BackendError(f"fan-out payload {payload[:80]!r} is malformed ({exc})") from None


# KEYS[1] = meta hash {epoch, seq}, KEYS[2] = stream; ARGV = candidate epoch, type,
# data, max messages, max age ms, idle ms, fan-out pub/sub channel, channel name.
# Stream ids are the server's time, so MINID trims by age; the seq is a field. The
# PUBLISH runs in the same script, so every subscriber sees a channel's messages in
# sequence order (decode_fanout reads the payload).
_APPEND = """
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local id = redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[4], '*',
  'seq', seq, 'type', ARGV[2], 'data', ARGV[3])
local ms = tonumber(string.match(id, '^(%d+)'))
redis.call('XTRIM', KEYS[2], 'MINID', tostring(ms - tonumber(ARGV[5])))
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[6])
redis.call('PUBLISH', ARGV[7],
  ARGV[8] .. '\\n' .. epoch .. '\\n' .. seq .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3])
return {epoch, seq}
"""

_HEAD = """
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local seq = redis.call('HGET', KEYS[1], 'seq') or '0'
return {epoch, seq}
"""

# ARGV = candidate epoch, client epoch, client last seq, idle ms.
_SINCE = """
redis.call('HSETNX', KEYS[1], 'epoch', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local epoch = redis.call('HGET', KEYS[1], 'epoch')
local head = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0')
local t = redis.call('TIME')
local entries = {}
local want = head - tonumber(ARGV[3])
if epoch == ARGV[2] and want > 0 then
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', want)
end
return {epoch, tostring(head), t[1], t[2], entries}
"""


class RedisHistory:
    """History in Redis: a hash (epoch, seq) and a stream per channel, under ``namespace``.

    ``idle_ttl`` (seconds) expires a channel nobody published on or read from; its
    next use starts a new epoch, so resuming clients get a gap.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str = "ludex:rt:",
        max_messages: int = 1000,
        max_age: float = 300.0,
        idle_ttl: float = 86400.0,
        socket_timeout: float = 5.0,
    ) -> None:
        _check_bounds(max_messages, max_age)
        if not idle_ttl >= max_age:
            raise ConfigError(f"history idle_ttl ({idle_ttl}) must be >= max_age ({max_age})")
        self.namespace = namespace
        self.fanout_channel = f"{namespace}fanout"
        """The pub/sub channel every append is published on (one for all channels)."""
        self._max_messages = max_messages
        self._max_age_ms = max(1, int(max_age * 1000))
        self._idle_ms = max(1, int(idle_ttl * 1000))
        self._where = redact_url(url)
        try:
            self._client: aioredis.Redis = aioredis.Redis.from_url(
                url, decode_responses=False, socket_timeout=socket_timeout
            )
        except ValueError as exc:
            raise ConfigError(
                f"history URL {self._where!r} is malformed ({exc}); use redis://HOST:PORT/DB"
            ) from None
        self._append = self._client.register_script(_APPEND)
        self._head = self._client.register_script(_HEAD)
        self._since = self._client.register_script(_SINCE)

    def _keys(self, channel: str) -> list[str]:
        # One hash tag per channel keeps both keys in one cluster slot.
        base = f"{self.namespace}{{{check_channel(channel)}}}"
        return [f"{base}:meta", f"{base}:log"]

    async def append(self, channel: str, msg_type: str, data: JsonValue) -> Message:
        check_type(msg_type)
        blob = encode_data(channel, data)
        args: list[str | int | bytes] = [
            new_epoch(),
            msg_type,
            blob,
            self._max_messages,
            self._max_age_ms,
            self._idle_ms,
            self.fanout_channel,
            channel,
        ]
        with self._errors("append"):
            epoch, seq = await self._append(keys=self._keys(channel), args=args)
        return Message(channel, epoch.decode(), int(seq), msg_type, data)

    async def head(self, channel: str) -> Position:
        with self._errors("head"):
            epoch, seq = await self._head(
                keys=self._keys(channel), args=[new_epoch(), self._idle_ms]
            )
        return Position(epoch.decode(), int(seq))

    async def since(self, channel: str, epoch: str, last_seq: int) -> Replay | Gap:
        _check_resume(channel, epoch, last_seq)
        args: list[str | int] = [new_epoch(), epoch, last_seq, self._idle_ms]
        with self._errors("since"):
            raw_epoch, raw_head, sec, usec, entries = await self._since(
                keys=self._keys(channel), args=args
            )
        current = Position(raw_epoch.decode(), int(raw_head))
        oldest_ms = int(sec) * 1000 + int(usec) // 1000 - self._max_age_ms
        kept = [
            message
            for ms, message in (self._message(channel, current.epoch, e) for e in reversed(entries))
            if ms >= oldest_ms and message.seq > last_seq
        ]
        return _resolve(current, epoch, last_seq, kept)

    def _message(self, channel: str, epoch: str, entry: list[Any]) -> tuple[int, Message]:
        raw_id, raw_fields = entry
        fields = dict(zip(raw_fields[::2], raw_fields[1::2], strict=True))
        try:
            ms = int(raw_id.split(b"-")[0])
            return ms, Message(
                channel,
                epoch,
                int(fields[b"seq"]),
                fields[b"type"].decode(),
                json.loads(fields[b"data"]),
            )
        except (KeyError, ValueError) as exc:
            raise BackendError(
                f"redis history entry {raw_id!r} of {channel!r} is malformed ({exc})"
            ) from None

    async def close(self) -> None:
        with self._errors("close"):
            await self._client.aclose()

    def _errors(self, op: str) -> AbstractContextManager[None]:
        return redis_errors(f"redis history at {self._where}", op)
