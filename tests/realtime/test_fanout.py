"""Fan-out across processes: two hubs ("gateway processes") on one real Redis."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from ludex.errors import BackendError, BackendUnavailable, ConfigError
from ludex.realtime import Connection, Hub, MemoryHistory, RedisHistory, decode_frame
from ludex.realtime.fanout import RedisFanout, create_hub
from ludex.realtime.history import Message, decode_fanout
from tests.conftest import service_url

Frame = dict[str, object]
BOUND = 20.0  # seconds: a liveness bound for waits, never a speed claim


async def _forget(prefix: str) -> None:
    client = aioredis.Redis.from_url(service_url("redis"))
    keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


class Node:
    """One "gateway process": a hub on the shared Redis history, with its fan-out."""

    def __init__(
        self, url: str, prefix: str, *, keep: int, backoff_initial: float, backoff_max: float
    ) -> None:
        self.history = RedisHistory(url, namespace=prefix, max_messages=keep)
        self.hub = Hub(self.history, max_queue=10_000)
        self.fanout = RedisFanout(
            self.hub,
            url,
            self.history.fanout_channel,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
        )

    async def close(self) -> None:
        await self.fanout.close()
        await self.history.close()


@pytest.fixture
async def nodes() -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    url = service_url("redis")
    prefix = f"test:rt:{secrets.token_hex(6)}:"
    made: list[Node] = []

    async def make(
        keep: int = 1000, backoff_initial: float = 0.05, backoff_max: float = 5.0
    ) -> Node:
        node = Node(
            url, prefix, keep=keep, backoff_initial=backoff_initial, backoff_max=backoff_max
        )
        made.append(node)
        await node.fanout.start()
        return node

    yield make
    for node in made:
        await node.close()
    await _forget(prefix)


async def read_until(conn: Connection, done: Callable[[list[Frame]], bool]) -> list[Frame]:
    """Frames from ``conn`` until ``done(frames)``; fails after BOUND seconds."""
    frames: list[Frame] = []

    async def read() -> None:
        while not done(frames):
            frame = await conn.receive()
            assert frame is not None, f"connection closed: {conn.close_reason}"
            frames.append(decode_frame(frame, conn.encoding))

    await asyncio.wait_for(read(), BOUND)
    return frames


def ends(count: int) -> Callable[[list[Frame]], bool]:
    """Done once ``count`` frames of type ``end`` arrived (one sentinel per channel)."""
    return lambda frames: sum(f["type"] == "end" for f in frames) >= count


def moves(frames: list[Frame], channel: str) -> list[Frame]:
    return [f for f in frames if f["channel"] == channel and f["type"] == "move"]


async def kill(client_name: str) -> None:
    """CLIENT KILL the connection named ``client_name`` from another client."""
    admin = aioredis.Redis.from_url(service_url("redis"))
    try:
        ids = [c["id"] for c in await admin.client_list() if c.get("name") == client_name]
        assert len(ids) == 1, f"expected one connection named {client_name}, got {ids}"
        await admin.client_kill_filter(_id=ids[0])
    finally:
        await admin.aclose()


async def until(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), BOUND)


# the pub/sub payload -------------------------------------------------------------


async def test_append_publishes_the_stored_message() -> None:
    url = service_url("redis")
    prefix = f"test:rt:{secrets.token_hex(6)}:"
    history = RedisHistory(url, namespace=prefix)
    listener = aioredis.Redis.from_url(url)
    pubsub = listener.pubsub()
    try:
        await pubsub.subscribe(history.fanout_channel)
        assert (await pubsub.get_message(timeout=BOUND))["type"] == "subscribe"
        data = {"text": "line one\nline two ♠", "n": [1, 2.5, None]}
        stored = await history.append("table:3", "chat.said", data)
        second = await history.append("table:3", "move", None)
        got = []
        for _ in range(2):
            reply = await pubsub.get_message(timeout=BOUND)
            assert reply is not None
            got.append(decode_fanout(reply["data"]))
        assert got == [stored, second]
        assert got[0].data == data
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await listener.aclose()
        await history.close()
        await _forget(prefix)


@pytest.mark.parametrize(
    "payload",
    [b"", b"table:1\ne\n1\nmove", b"table:1\ne\nx\nmove\n1", b"chat\ne\n1\nmove\n1", b"t\xff"],
)
def test_malformed_payload_is_refused(payload: bytes) -> None:
    with pytest.raises(BackendError, match="malformed"):
        decode_fanout(payload)


# delivery (memory: the hub's side alone) ---------------------------------------------


async def test_deliver_skips_duplicates_and_fills_jumps_from_history() -> None:
    hub = Hub(MemoryHistory())
    hub.use_fanout(True)
    conn = hub.connect()
    await hub.subscribe(conn, "table:1")
    assert [f["type"] for f in await read_until(conn, lambda fs: len(fs) == 1)] == ["snapshot"]
    stored = [await hub.publish("table:1", "move", n) for n in range(5)]
    assert conn.take() is None  # stored only: the fan-out delivers
    await hub.deliver(stored[0])
    await hub.deliver(stored[2])  # seq 2 was lost on the way: read from the history
    for message in stored:  # every echo again: nothing twice
        await hub.deliver(message)
    frames = await read_until(conn, lambda fs: len(fs) == 5)
    assert [(f["seq"], f["data"]) for f in frames] == [(n + 1, n) for n in range(5)]
    assert conn.take() is None
    assert hub.recovered == 4  # seq 2 to 5: the history read brings all that is stored


async def test_deliver_keeps_private_messages_for_an_offline_player() -> None:
    hub = Hub(MemoryHistory())
    hub.use_fanout(True)
    stored = await hub.send_private("carol", "notice", "hi")
    await hub.deliver(stored)
    carol = hub.connect(player_id="carol")
    assert (await hub.subscribe(carol, "player:carol")).replayed == 1
    frames = await read_until(carol, lambda fs: len(fs) == 2)
    assert [(f["type"], f["data"]) for f in frames] == [("notice", "hi"), ("snapshot", None)]


# two processes on one Redis ------------------------------------------------------------


async def test_messages_from_both_hubs_arrive_in_order_exactly_once(
    nodes: Callable[..., Awaitable[Node]],
) -> None:
    a, b = await nodes(), await nodes()
    channels = ["table:1", "table:2", "lobby"]
    on = [(b, b.hub.connect()), (b, b.hub.connect(encoding="msgpack")), (a, a.hub.connect())]
    for node, conn in on:
        for channel in channels:
            assert (await node.hub.subscribe(conn, channel)).position.seq == 0
        snapshots = await read_until(conn, lambda fs: len(fs) == len(channels))
        assert {f["type"] for f in snapshots} == {"snapshot"}
    watchers = [conn for _, conn in on]
    per_hub = 100
    published = await asyncio.gather(
        *(
            node.hub.publish(channel, "move", {"hub": i, "n": n})
            for n in range(per_hub)
            for channel in channels
            for i, node in enumerate((a, b))
        )
    )
    for channel in channels:
        await a.hub.publish(channel, "end", None)
    for conn in watchers:
        frames = await read_until(conn, ends(len(channels)))
        for channel in channels:
            got = moves(frames, channel)
            assert [f["seq"] for f in got] == list(range(1, 2 * per_hub + 1)), channel
            sent = {m.seq: m.data for m in published if m.channel == channel}
            assert {f["seq"]: f["data"] for f in got} == sent
        assert conn.take() is None
    assert a.fanout.reconnects == b.fanout.reconnects == 0


async def test_private_messages_reach_only_the_players_connection_on_the_other_hub(
    nodes: Callable[..., Awaitable[Node]],
) -> None:
    a, b = await nodes(), await nodes()
    alice = b.hub.connect(player_id="alice")
    bob = a.hub.connect(player_id="bob")
    watcher = a.hub.connect()
    await b.hub.subscribe(alice, "player:alice")
    await a.hub.subscribe(bob, "player:bob")
    await a.hub.subscribe(watcher, "table:1")
    for conn in (alice, bob, watcher):
        await read_until(conn, lambda fs: len(fs) == 1)  # the snapshot
    await a.hub.send_private("carol", "notice", "while away")  # no connection anywhere
    for n in range(3):
        await a.hub.send_private("alice", "hole_cards", n)
    await a.hub.send_private("bob", "end", None)
    await a.hub.publish("table:1", "end", None)
    got = await read_until(alice, lambda fs: len(fs) == 3)
    assert [(f["channel"], f["seq"], f["data"]) for f in got] == [
        ("player:alice", n + 1, n) for n in range(3)
    ]
    assert [f["type"] for f in await read_until(bob, ends(1))] == ["end"]
    assert [f["type"] for f in await read_until(watcher, ends(1))] == ["end"]
    # B's fan-out reads one ordered stream: having delivered alice's, it kept carol's.
    carol = b.hub.connect(player_id="carol")
    assert (await b.hub.subscribe(carol, "player:carol")).replayed == 1
    frames = await read_until(carol, lambda fs: len(fs) == 2)
    assert [(f["type"], f["data"]) for f in frames] == [
        ("notice", "while away"),
        ("snapshot", None),
    ]
    assert alice.take() is None


async def test_resume_on_another_hub_gets_exactly_the_missed_messages(
    nodes: Callable[..., Awaitable[Node]],
) -> None:
    a, b = await nodes(), await nodes()
    first = a.hub.connect()
    start = await a.hub.subscribe(first, "table:5")
    for n in range(5):
        await (a, b)[n % 2].hub.publish("table:5", "move", n)
    frames = await read_until(first, lambda fs: len(moves(fs, "table:5")) == 5)
    assert [f["seq"] for f in moves(frames, "table:5")] == [1, 2, 3, 4, 5]
    a.hub.disconnect(first)
    for n in range(5, 10):
        await (a, b)[n % 2].hub.publish("table:5", "move", n)
    again = b.hub.connect()
    outcome = await b.hub.subscribe(again, "table:5", resume=(start.position.epoch, 5))
    assert not outcome.gap
    assert outcome.replayed == 5
    await a.hub.publish("table:5", "move", 10)
    await a.hub.publish("table:5", "end", None)
    frames = await read_until(again, ends(1))
    assert [f["type"] for f in frames] == ["move"] * 6 + ["end"]  # no snapshot, none twice
    assert [(f["seq"], f["data"]) for f in frames[:-1]] == [(n + 1, n) for n in range(5, 11)]


async def test_messages_published_while_the_subscription_is_down_still_arrive_once(
    nodes: Callable[..., Awaitable[Node]],
) -> None:
    a = await nodes()
    b = await nodes(backoff_initial=1.0, backoff_max=2.0)  # down for >= 0.5 s
    watcher = b.hub.connect()
    await b.hub.subscribe(watcher, "table:9")
    for n in range(20):
        await a.hub.publish("table:9", "move", n)
    frames = await read_until(watcher, lambda fs: len(moves(fs, "table:9")) == 20)
    await kill(b.fanout.client_name)
    await until(lambda: not b.fanout.connected)
    for n in range(20, 60):  # nobody listens on B's behalf now
        await (a, b)[n % 2].hub.publish("table:9", "move", n)
    await until(lambda: b.fanout.connected)
    for n in range(60, 70):
        await a.hub.publish("table:9", "move", n)
    await a.hub.publish("table:9", "end", None)
    frames += await read_until(watcher, ends(1))
    got = moves(frames, "table:9")
    assert [(f["seq"], f["data"]) for f in got] == [(n + 1, n) for n in range(70)]
    assert [f["type"] for f in frames if f["type"] not in {"move"}] == ["snapshot", "end"]
    assert b.fanout.reconnects == 1
    assert b.hub.recovered == 40  # read from the history after the reconnect
    assert a.fanout.reconnects == 0


async def test_a_reconnect_beyond_the_history_gives_gap_and_snapshot(
    nodes: Callable[..., Awaitable[Node]],
) -> None:
    a = await nodes(keep=5)  # A's appends keep only the last 5 messages
    b = await nodes(backoff_initial=1.0, backoff_max=2.0)
    watcher = b.hub.connect()
    await b.hub.subscribe(watcher, "table:4")
    await a.hub.publish("table:4", "move", 0)
    frames = await read_until(watcher, lambda fs: len(moves(fs, "table:4")) == 1)
    await kill(b.fanout.client_name)
    await until(lambda: not b.fanout.connected)
    for n in range(1, 21):
        await a.hub.publish("table:4", "move", n)
    await until(lambda: b.fanout.connected)
    await a.hub.publish("table:4", "move", 21)
    await a.hub.publish("table:4", "end", None)
    frames += await read_until(watcher, ends(1))
    assert [(f["type"], f["seq"]) for f in frames] == [
        ("snapshot", 0),
        ("move", 1),
        ("gap", 21),
        ("snapshot", 21),
        ("move", 22),
        ("end", 23),
    ]
    assert not watcher.closed


async def test_close_stops_listening_and_hands_delivery_back_to_the_hub(
    nodes: Callable[..., Awaitable[Node]],
) -> None:
    b = await nodes()
    admin = aioredis.Redis.from_url(service_url("redis"))
    try:
        names = {c.get("name") for c in await admin.client_list()}
        assert b.fanout.client_name in names
        await b.fanout.close()
        await b.fanout.close()  # twice is fine
        assert not b.fanout.connected
        assert not b.hub.fanout_attached
        names = {c.get("name") for c in await admin.client_list()}
        assert b.fanout.client_name not in names
    finally:
        await admin.aclose()
    watcher = b.hub.connect()
    await b.hub.subscribe(watcher, "lobby")
    await b.hub.publish("lobby", "tick", 1)  # delivered in-process again
    frames = await read_until(watcher, lambda fs: len(fs) == 2)
    assert [f["type"] for f in frames] == ["snapshot", "tick"]


async def test_start_fails_clearly_when_redis_is_unreachable() -> None:
    hub = Hub(MemoryHistory())
    fanout = RedisFanout(hub, "redis://127.0.0.1:1/0", "x:fanout", connect_timeout=1.0)
    with pytest.raises(BackendUnavailable, match="unreachable"):
        await fanout.start()
    assert not hub.fanout_attached
    assert not fanout.connected
    with pytest.raises(ConfigError, match="backoff"):
        RedisFanout(hub, "redis://127.0.0.1:1/0", "x", backoff_initial=0)


async def test_create_hub_picks_the_backend_by_url() -> None:
    memory = create_hub("memory://")
    assert isinstance(memory.hub.history, MemoryHistory)
    assert memory.fanout is None
    await memory.start()
    await memory.close()

    prefix = f"test:rt:{secrets.token_hex(6)}:"
    shared = create_hub(service_url("redis"), namespace=prefix)
    try:
        assert isinstance(shared.hub.history, RedisHistory)
        assert isinstance(shared.fanout, RedisFanout)
        assert shared.fanout.channel == f"{prefix}fanout"
        await shared.start()
        assert shared.hub.fanout_attached
        conn = shared.hub.connect()
        await shared.hub.subscribe(conn, "blocks")
        sent = await shared.hub.publish("blocks", "block", {"number": 1})
        frames = await read_until(conn, lambda fs: len(fs) == 2)
        assert frames[1] == Message("blocks", sent.epoch, 1, "block", {"number": 1}).envelope()
    finally:
        await shared.close()
        await _forget(prefix)
    assert not shared.hub.fanout_attached
    with pytest.raises(ConfigError, match="memory:// or redis://"):
        create_hub("kafka://127.0.0.1:1")
