"""The channel hub and its history, against the memory history and a real Redis."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from ludex.errors import ConfigError
from ludex.realtime import (
    BadChannel,
    ChannelForbidden,
    Connection,
    Gap,
    History,
    Hub,
    MemoryHistory,
    RealtimeError,
    RedisHistory,
    Replay,
    check_channel,
    decode_frame,
    encode_frame,
)
from ludex.realtime.hub import SLOW_CONSUMER
from tests.conftest import service_url


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(conn: Connection) -> list[dict[str, object]]:
    frames = []
    while (frame := conn.take()) is not None:
        frames.append(decode_frame(frame, conn.encoding))
    return frames


def seqs(frames: list[dict[str, object]], kind: str = "move") -> list[object]:
    return [f["seq"] for f in frames if f["type"] == kind]


async def _forget(prefix: str) -> None:
    client = aioredis.Redis.from_url(service_url("redis"))
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    service_url("redis")
    prefix = f"test:rt:{secrets.token_hex(6)}:"
    yield prefix
    await _forget(prefix)


HistoryFactory = Callable[..., History]


@pytest.fixture(params=["memory", "redis"])
async def make_history(request: pytest.FixtureRequest) -> AsyncIterator[HistoryFactory]:
    backend: str = request.param
    url = service_url("redis") if backend == "redis" else ""
    prefix = f"test:rt:{secrets.token_hex(6)}:"
    made: list[History] = []

    def make(**bounds: float) -> History:
        history: History
        if backend == "memory":
            history = MemoryHistory(**bounds)  # type: ignore[arg-type]
        else:
            history = RedisHistory(url, namespace=prefix, **bounds)  # type: ignore[arg-type]
        made.append(history)
        return history

    yield make
    for history in made:
        await history.close()
    if backend == "redis":
        await _forget(prefix)


# channel names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["lobby", "blocks", "table:42", "player:0xAbC_d-1", "table:" + "a" * 64]
)
def test_good_channel_names(name: str) -> None:
    assert check_channel(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "lobby:1",
        "table",
        "table:",
        "player:a b",
        "tables:1",
        "table:1:2",
        "Lobby",
        "table:" + "a" * 65,
        7,
    ],
)
def test_bad_channel_names_are_refused(name: object) -> None:
    with pytest.raises(BadChannel, match="is not valid"):
        check_channel(name)


async def test_hub_refuses_bad_channel_and_payload() -> None:
    hub = Hub(MemoryHistory())
    conn = hub.connect()
    with pytest.raises(BadChannel):
        await hub.subscribe(conn, "table:1/2")
    with pytest.raises(BadChannel):
        await hub.publish("chat", "move", {})
    with pytest.raises(RealtimeError, match="not JSON-compatible"):
        await hub.publish("table:1", "move", {"x": b"raw"})
    with pytest.raises(RealtimeError, match="message type"):
        await hub.publish("table:1", "Bad Type", {})
    with pytest.raises(ConfigError):
        MemoryHistory(max_messages=0)


# history contract (memory and Redis) -------------------------------------------------


async def test_history_sequences_and_since(make_history: HistoryFactory) -> None:
    history = make_history(max_messages=5, max_age=60.0)
    start = await history.head("table:1")
    assert start.seq == 0
    sent = [await history.append("table:1", "move", {"n": n}) for n in range(8)]
    assert [m.seq for m in sent] == list(range(1, 9))
    assert {m.epoch for m in sent} == {start.epoch}
    assert (await history.head("table:1")).seq == 8
    replay = await history.since("table:1", start.epoch, 5)
    assert isinstance(replay, Replay)
    assert [(m.seq, m.data) for m in replay.messages] == [
        (6, {"n": 5}),
        (7, {"n": 6}),
        (8, {"n": 7}),
    ]
    assert await history.since("table:1", start.epoch, 8) == Replay(())
    # Only the last 5 (seq 4..8) are kept: resuming after 2 needs seq 3.
    gap = await history.since("table:1", start.epoch, 2)
    assert isinstance(gap, Gap)
    assert gap.position.seq == 8
    assert gap.position.epoch == start.epoch
    assert isinstance(await history.since("table:1", start.epoch, 3), Replay)
    assert isinstance(await history.since("table:1", "other-epoch", 8), Gap)
    assert isinstance(await history.since("table:1", start.epoch, 9), Gap)
    # Channels are independent.
    other = await history.append("table:2", "move", None)
    assert other.seq == 1
    assert other.epoch != start.epoch


async def test_memory_history_forgets_old_messages() -> None:
    clock = FakeClock()
    history = MemoryHistory(max_messages=100, max_age=10.0, clock=clock)
    first = await history.append("lobby", "tick", 1)
    clock.now += 6
    await history.append("lobby", "tick", 2)
    assert isinstance(await history.since("lobby", first.epoch, 0), Replay)
    clock.now += 6  # the first message is now 12 s old
    assert isinstance(await history.since("lobby", first.epoch, 0), Gap)
    replay = await history.since("lobby", first.epoch, 1)
    assert isinstance(replay, Replay)
    assert [m.data for m in replay.messages] == [2]


async def test_redis_history_forgets_old_messages(redis_prefix: str) -> None:
    history = RedisHistory(service_url("redis"), namespace=redis_prefix, max_age=0.2)
    try:
        first = await history.append("lobby", "tick", 1)
        assert isinstance(await history.since("lobby", first.epoch, 0), Replay)
        await asyncio.sleep(0.35)
        answer = await history.since("lobby", first.epoch, 0)
        assert isinstance(answer, Gap)
        assert "no longer reaches" in answer.reason
        assert answer.position.seq == 1
    finally:
        await history.close()


async def test_two_hubs_on_one_redis_never_reuse_a_sequence(redis_prefix: str) -> None:
    url = service_url("redis")
    histories = [RedisHistory(url, namespace=redis_prefix) for _ in range(2)]
    hubs = [Hub(h) for h in histories]
    try:
        per_hub = 150
        published = await asyncio.gather(
            *(
                hub.publish("table:7", "move", {"hub": i, "n": n})
                for n in range(per_hub)
                for i, hub in enumerate(hubs)
            )
        )
        got = sorted(m.seq for m in published)
        assert got == list(range(1, 2 * per_hub + 1))
        assert len({m.epoch for m in published}) == 1
        # The history holds every message once, in sequence order.
        replay = await histories[0].since("table:7", published[0].epoch, 0)
        assert isinstance(replay, Replay)
        assert [m.seq for m in replay.messages] == got
        by_seq = {m.seq: m.data for m in published}
        assert all(m.data == by_seq[m.seq] for m in replay.messages)
    finally:
        for h in histories:
            await h.close()


_PUBLISHER = """
import asyncio, json, sys
import redis.asyncio as aioredis
from ludex.realtime import Hub, RedisHistory

async def main() -> None:
    url, prefix = sys.argv[1], sys.argv[2]
    history = RedisHistory(url, namespace=prefix)
    hub = Hub(history)
    barrier = aioredis.Redis.from_url(url)
    # Start together, so the two processes really publish at the same time.
    await barrier.incr(prefix + "barrier")
    while int(await barrier.get(prefix + "barrier")) < 2:
        await asyncio.sleep(0.001)
    await barrier.aclose()
    sent = await asyncio.gather(*(hub.publish("table:8", "move", n) for n in range(300)))
    await history.close()
    print(json.dumps([[m.epoch, m.seq] for m in sent]))

asyncio.run(main())
"""


async def test_two_hub_processes_never_reuse_a_sequence(redis_prefix: str) -> None:
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _PUBLISHER,
            service_url("redis"),
            redis_prefix,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
    assert [p.returncode for p in procs] == [0, 0]
    per_process = [sorted(seq for _, seq in json.loads(out)) for out, _ in outputs]
    epochs = {epoch for out, _ in outputs for epoch, _ in json.loads(out)}
    assert len(epochs) == 1
    assert sorted(per_process[0] + per_process[1]) == list(range(1, 601))
    # The publishes really interleaved: neither process got one contiguous block.
    assert all(got[-1] - got[0] > len(got) - 1 for got in per_process)


# resume ----------------------------------------------------------------------------


async def test_resume_gets_exactly_the_missed_messages(make_history: HistoryFactory) -> None:
    async def snapshot(channel: str) -> object:
        return {"state": channel}

    hub = Hub(make_history(), snapshot=snapshot)
    conn = hub.connect()
    first = await hub.subscribe(conn, "table:1")
    frames = drain(conn)
    assert [(f["type"], f["seq"], f["data"]) for f in frames] == [
        ("snapshot", 0, {"state": "table:1"})
    ]
    for n in range(3):
        await hub.publish("table:1", "move", n)
    frames = drain(conn)
    assert seqs(frames) == [1, 2, 3]
    assert {f["epoch"] for f in frames} == {first.position.epoch}
    hub.disconnect(conn)
    assert conn.closed
    assert await conn.receive() is None

    for n in range(3, 7):
        await hub.publish("table:1", "move", n)
    again = hub.connect()
    outcome = await hub.subscribe(again, "table:1", resume=(first.position.epoch, 3))
    assert not outcome.gap
    assert outcome.replayed == 4
    assert outcome.position.seq == 7
    await hub.publish("table:1", "move", 7)
    frames = drain(again)
    assert [f["type"] for f in frames] == ["move"] * 5  # no snapshot, nothing twice
    assert seqs(frames) == [4, 5, 6, 7, 8]
    assert [f["data"] for f in frames] == [3, 4, 5, 6, 7]


class InterleavedHistory(MemoryHistory):
    """A history during whose ``since`` other publishes happen (before and after reading)."""

    hub: Hub
    published: list[int]

    async def since(self, channel: str, epoch: str, last_seq: int) -> Replay | Gap:
        # Seen by the history read and by the live path: must arrive once.
        self.published.append((await self.hub.publish(channel, "move", "before")).seq)
        answer = await super().since(channel, epoch, last_seq)
        # Only on the live path: must not be lost.
        for _ in range(2):
            self.published.append((await self.hub.publish(channel, "move", "after")).seq)
        return answer


async def test_publish_during_resume_is_neither_lost_nor_doubled() -> None:
    history = InterleavedHistory()
    hub = Hub(history)
    history.hub, history.published = hub, []
    epoch = (await history.head("table:1")).epoch
    for n in range(5):
        await hub.publish("table:1", "move", n)
    conn = hub.connect()
    await hub.subscribe(conn, "table:1", resume=(epoch, 2))
    await hub.publish("table:1", "move", "live")
    assert history.published == [6, 7, 8]
    frames = drain(conn)
    assert seqs(frames) == [3, 4, 5, 6, 7, 8, 9]
    assert [f["data"] for f in frames] == [2, 3, 4, "before", "after", "after", "live"]


async def test_resume_older_than_history_gives_gap_and_snapshot(
    make_history: HistoryFactory,
) -> None:
    calls: list[str] = []

    async def snapshot(channel: str) -> object:
        calls.append(channel)
        return {"pot": 40}

    hub = Hub(make_history(max_messages=3), snapshot=snapshot)
    conn = hub.connect()
    first = await hub.subscribe(conn, "table:9")
    hub.disconnect(conn)
    for n in range(10):
        await hub.publish("table:9", "move", n)
    again = hub.connect(encoding="msgpack")
    outcome = await hub.subscribe(again, "table:9", resume=(first.position.epoch, 2))
    assert outcome.gap
    assert outcome.position.seq == 10
    frames = drain(again)
    assert [(f["type"], f["seq"]) for f in frames] == [("gap", 10), ("snapshot", 10)]
    assert frames[1]["data"] == {"pot": 40}
    assert frames[1]["epoch"] == first.position.epoch
    assert calls == ["table:9", "table:9"]
    # A wrong epoch is a gap as well.
    third = hub.connect()
    assert (await hub.subscribe(third, "table:9", resume=("stale", 10))).gap


# slow consumers ----------------------------------------------------------------------


async def test_slow_connection_is_dropped_fast_one_gets_everything() -> None:
    hub = Hub(MemoryHistory(), max_queue=8)
    slow = hub.connect()
    fast = hub.connect(encoding="msgpack")
    await hub.subscribe(slow, "blocks")
    await hub.subscribe(fast, "blocks")
    received: list[dict[str, object]] = []

    async def read() -> None:
        while (frame := await fast.receive()) is not None:
            received.append(decode_frame(frame, "msgpack"))

    reader = asyncio.create_task(read())
    for n in range(100):
        await hub.publish("blocks", "block", {"number": n})
        await asyncio.sleep(0)
    await asyncio.sleep(0.01)
    assert slow.closed
    assert slow.close_reason == SLOW_CONSUMER
    assert await slow.receive() is None
    assert hub.dropped == 1
    assert list(hub.subscribers("blocks")) == [fast]
    assert not fast.closed
    hub.disconnect(fast)
    await asyncio.wait_for(reader, 1)
    assert [f["data"] for f in received if f["type"] == "block"] == [
        {"number": n} for n in range(100)
    ]
    assert seqs(received, "block") == list(range(1, 101))


async def test_publish_does_not_wait_for_consumers() -> None:
    hub = Hub(MemoryHistory(), max_queue=1000)
    idle = hub.connect()
    await hub.subscribe(idle, "lobby")
    # Nobody reads; publishing still completes at once.
    await asyncio.wait_for(
        asyncio.gather(*(hub.publish("lobby", "tick", n) for n in range(500))), 2
    )
    assert idle.queued == 501  # snapshot + 500


# private delivery and presence -------------------------------------------------------


async def test_private_messages_reach_only_their_player() -> None:
    hub = Hub(MemoryHistory())
    alice = hub.connect(player_id="alice")
    alice_2 = hub.connect(player_id="alice", encoding="msgpack")
    bob = hub.connect(player_id="bob")
    spectator = hub.connect()
    await hub.subscribe(alice, "player:alice")
    await hub.subscribe(alice_2, "player:alice")
    await hub.subscribe(bob, "player:bob")
    for conn in (alice, bob, spectator):
        await hub.subscribe(conn, "table:1")
    for conn in (alice, alice_2, bob, spectator):
        drain(conn)
    with pytest.raises(ChannelForbidden):
        await hub.subscribe(bob, "player:alice")
    with pytest.raises(ChannelForbidden):
        await hub.subscribe(spectator, "player:alice")

    await hub.send_private("alice", "hole_cards", ["As", "Kd"])
    await hub.send_private("bob", "hole_cards", ["2c", "2d"])
    for conn in (alice, alice_2):
        frames = drain(conn)
        assert [(f["channel"], f["data"]) for f in frames] == [("player:alice", ["As", "Kd"])]
    assert [f["data"] for f in drain(bob)] == [["2c", "2d"]]
    assert drain(spectator) == []


async def test_offline_private_messages_are_delivered_then_expire() -> None:
    clock = FakeClock()
    hub = Hub(MemoryHistory(clock=clock), offline_ttl=30.0, clock=clock)
    for n in range(3):
        await hub.send_private("carol", "notice", n)
    clock.now += 10
    carol = hub.connect(player_id="carol")
    outcome = await hub.subscribe(carol, "player:carol")
    assert outcome.replayed == 3
    frames = drain(carol)
    assert [(f["type"], f["data"]) for f in frames[:3]] == [
        ("notice", 0),
        ("notice", 1),
        ("notice", 2),
    ]
    assert [f["type"] for f in frames[3:]] == ["snapshot"]
    hub.disconnect(carol)

    # Delivered once: a second visit gets only the snapshot.
    again = hub.connect(player_id="carol")
    await hub.subscribe(again, "player:carol")
    assert [f["type"] for f in drain(again)] == ["snapshot"]
    hub.disconnect(again)

    await hub.send_private("carol", "notice", "late")
    await hub.send_private("dave", "notice", "late")
    clock.now += 31
    assert hub.expire_offline() == 2
    await hub.send_private("carol", "notice", "fresh")
    clock.now += 29
    back = hub.connect(player_id="carol")
    await hub.subscribe(back, "player:carol")
    assert next((f["type"], f["data"]) for f in drain(back)) == ("notice", "fresh")


async def test_offline_messages_expire_without_sweeping() -> None:
    clock = FakeClock()
    hub = Hub(MemoryHistory(clock=clock), offline_ttl=5.0, clock=clock)
    await hub.send_private("erin", "notice", "old")
    clock.now += 6
    erin = hub.connect(player_id="erin")
    assert (await hub.subscribe(erin, "player:erin")).replayed == 0
    assert [f["type"] for f in drain(erin)] == ["snapshot"]


async def test_presence_tracks_table_subscribers() -> None:
    hub = Hub(MemoryHistory())
    alice = hub.connect(player_id="alice")
    bob = hub.connect(player_id="bob")
    anon = hub.connect()
    for conn in (alice, bob, anon):
        await hub.subscribe(conn, "table:3")
    presence = hub.presence("table:3")
    assert presence.players == {"alice", "bob"}
    assert presence.spectators == 1
    assert hub.unsubscribe(bob, "table:3")
    assert not hub.unsubscribe(bob, "table:3")
    hub.disconnect(anon)
    presence = hub.presence("table:3")
    assert presence.players == {"alice"}
    assert presence.spectators == 0
    with pytest.raises(RealtimeError, match="table channels only"):
        hub.presence("lobby")


# encodings -------------------------------------------------------------------------


async def test_json_and_msgpack_carry_the_same_envelope() -> None:
    hub = Hub(MemoryHistory())
    as_json = hub.connect(encoding="json")
    as_msgpack = hub.connect(encoding="msgpack")
    for conn in (as_json, as_msgpack):
        await hub.subscribe(conn, "table:5")
        drain(conn)
    data = {"name": "Zoë ♠", "amounts": [0, -1, 2**53], "ok": True, "none": None, "ratio": 0.25}
    message = await hub.publish("table:5", "chat.said", data)
    json_frame = as_json.take()
    msgpack_frame = as_msgpack.take()
    assert json_frame is not None
    assert msgpack_frame is not None
    assert json_frame != msgpack_frame
    expected = {
        "channel": "table:5",
        "epoch": message.epoch,
        "seq": 1,
        "type": "chat.said",
        "data": data,
    }
    assert decode_frame(json_frame, "json") == expected
    assert decode_frame(msgpack_frame, "msgpack") == expected
    assert decode_frame(encode_frame(expected, "msgpack"), "msgpack") == expected
    with pytest.raises(RealtimeError, match="malformed"):
        decode_frame(b"\xc1", "msgpack")
    with pytest.raises(RealtimeError, match="envelope"):
        decode_frame(b'{"seq": 1}', "json")
    with pytest.raises(RealtimeError, match="encoding"):
        hub.connect(encoding="xml")  # type: ignore[arg-type]


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=500, deadline=None)
@given(data=_JSON_VALUES)
def test_json_frames_carry_exactly_what_the_standard_encoder_would(data: object) -> None:
    """Frames are encoded with msgspec for speed; a client must read the same value the
    standard library would have written (any string, number or nesting)."""
    envelope = {"channel": "table:x", "epoch": "e1", "seq": 7, "type": "t", "data": data}
    frame = encode_frame(envelope, "json")  # type: ignore[arg-type]
    assert json.loads(frame) == envelope
    assert decode_frame(frame, "json") == envelope
