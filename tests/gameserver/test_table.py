"""The pure cash-game table (:mod:`ludex.gameserver.table`): random sessions keep every
invariant (chips, saved state, hash chain, PHH replay, effect ids), illegal requests
change nothing, and the seat, timer, leaving, button and privacy rules hold exactly."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ludex.errors import IllegalAction, PokerError
from ludex.gameserver.table import (
    ActionEffect,
    BuyIn,
    CashOut,
    Effect,
    HandDone,
    HandStartedEffect,
    Message,
    Step,
    Table,
    TableConfig,
    TableError,
)
from ludex.poker import phh
from ludex.poker.cards import card_str
from ludex.poker.record import GENESIS_HASH, HandRecord, from_json, verify_chain, verify_record
from ludex.poker.shuffle import deck_for

PUBLIC_CARD_OPS = ("deal_board", "show")


def seed_for(n: int) -> bytes:
    return hashlib.sha256(f"seed-{n}".encode()).digest()


def make_table(stacks: dict[int, int], **changes: Any) -> Table:
    """A table with players ``p<seat>`` seated (buy-ins settled) at the given seats."""
    fields: dict[str, Any] = {"table_id": "t1", "next_hand_seconds": 0.0}
    fields.update(changes)
    table = Table(TableConfig(**fields))
    for number, stack in stacks.items():
        table.sit(f"p{number}", number, stack, f"s{number}", 0.0)
        table.buy_in_settled(f"s{number}", stack, True, 0.0)
    return table


def actor(table: Table) -> str:
    hand = table.public_view()["hand"]
    assert hand is not None
    assert hand["actor_seat"] is not None
    return table.seats()[hand["actor_seat"]].player


def ops_of(step: Step) -> list[dict[str, Any]]:
    """The public engine operations of a step, in order."""
    return [m.data for m in step.messages if m.type == "action" and m.player is None]


def play_out(table: Table, now: float, action: str = "check_call") -> list[Message]:
    """Let every actor take ``action`` until the hand ends; the messages sent."""
    messages: list[Message] = []
    while table.hand_id is not None:
        messages += table.act(actor(table), action, None, now).messages
    return messages


def cash_outs(table: Table) -> list[CashOut]:
    return [e for e in table.effects if isinstance(e, CashOut)]


def hand_dones(table: Table) -> list[HandDone]:
    return [e for e in table.effects if isinstance(e, HandDone)]


def assert_unchanged(table: Table, request: Callable[[], object], error: type[Exception]) -> None:
    before, version = table.to_bytes(), table.version
    with pytest.raises(error):
        request()
    assert table.to_bytes() == before
    assert table.version == version


# -- the property: random sessions ---------------------------------------------------


class Referee:
    """Drives a table with random requests and checks every invariant after each step."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.bought_in = 0
        self.cashed_out = 0
        self.raked = 0
        self.seen: dict[str, Effect] = {}
        self.previous: HandRecord | None = None
        self.records: list[HandRecord] = []
        self.seeds: dict[str, bytes] = {}
        self.hands = 0
        self.sessions = 0
        self.button: int | None = None
        self.dealt: dict[int, str] = {}

    def step(self, request: Callable[[], Step]) -> None:
        before, version = self.table.to_bytes(), self.table.version
        try:
            step = request()
        except (TableError, IllegalAction):
            assert self.table.to_bytes() == before, "a refused request changed the table"
            assert self.table.version == version
            return
        self.check_messages(step.messages)
        self.check_effects()
        self.check_state()

    def check_messages(self, messages: list[Message]) -> None:
        table = self.table
        for message in messages:
            data = message.data
            if message.player is not None:
                assert message.type == "hole_cards"
                assert self.dealt[data["seat"]] == message.player  # the seat's owner only
                continue
            assert message.type != "hole_cards"
            if "cards" in data:
                assert message.type == "action", message
                assert data["op"] in PUBLIC_CARD_OPS, message
            if message.type == "hand_started":
                seed = self.seeds[data["hand_id"]]
                assert data["commitment"] == hashlib.sha256(seed).hexdigest()
                self.dealt = {int(s): p for s, p in data["seats"].items()}
                dealt = sorted(self.dealt)
                if self.button is not None:
                    previous, count = self.button, table.config.seat_count
                    expected = min(dealt, key=lambda s: (s - previous - 1) % count)
                    assert data["button_seat"] == expected
                assert data["button_seat"] in dealt
                self.button = data["button_seat"]
            if message.type == "hand_completed":
                assert data["seed_reveal"] == self.seeds[data["hand_id"]].hex()

    def check_effects(self) -> None:
        effects = self.table.effects
        ids = [e.id for e in effects]
        assert len(ids) == len(set(ids)), "effect ids repeat"
        for effect in effects:
            old = self.seen.get(effect.id)
            if old is not None:
                assert old == effect, f"effect {effect.id} changed"
                continue
            self.seen[effect.id] = effect
            if isinstance(effect, CashOut):
                assert effect.amount > 0
                self.cashed_out += effect.amount
            elif isinstance(effect, HandDone):
                self.check_hand(effect)

    def check_hand(self, done: HandDone) -> None:
        record = from_json(json.loads(done.record))
        verify_record(record, self.previous)
        assert record.previous_record_hash == (
            self.previous.record_hash if self.previous else GENESIS_HASH
        )
        assert (record.hand_id, record.sequence) == (done.hand_id, done.number)
        assert record.record_hash == done.record_hash
        assert record.seed_reveal == done.seed_reveal == self.seeds[done.hand_id].hex()
        assert record.commitment == done.commitment
        assert record.history_phh == done.history_phh
        assert self.table.last_record == record
        self.previous = record
        self.records.append(record)
        replayed = phh.replay(phh.loads(done.history_phh))
        assert replayed.complete
        assert replayed.mismatches == ()
        assert dict(zip(replayed.players, replayed.payoffs, strict=True)) == done.deltas
        assert replayed.rake == done.rake
        assert sum(done.deltas.values()) + done.rake == 0
        self.raked += done.rake

    def check_state(self) -> None:
        table = self.table
        assert self.bought_in == table.chips_at_table() + self.cashed_out + self.raked
        view = table.public_view()
        assert all(s["stack"] >= 0 for s in view["seats"].values())
        if view["hand"] is not None:
            assert all(s >= 0 for s in view["hand"]["stacks"])
        else:
            assert all(s["stack"] > 0 for s in view["seats"].values() if s["status"] == "seated")
        blob = table.to_bytes()
        restored = Table.from_bytes(blob)
        assert restored.public_view() == view
        assert restored.to_bytes() == blob
        for player in {s["player"] for s in view["seats"].values()}:
            assert restored.private_view(player) == table.private_view(player)

    def settle(self, effect: BuyIn, ok: bool, now: float) -> Step:
        step = self.table.buy_in_settled(effect.session, effect.amount, ok, now)
        if ok and step.messages:
            self.bought_in += effect.amount
        self.table.effects_done([effect.id])
        return step

    def effects_done(self, ids: list[str]) -> Step:
        self.table.effects_done(ids)
        return Step()

    def deal(self, now: float) -> Step:
        hand_id = f"h{self.hands}"
        self.seeds[hand_id] = seed_for(self.hands)
        step = self.table.start_hand(hand_id, self.seeds[hand_id], now)
        self.hands += 1
        return step


KINDS = ("sit", "settle", "sit_out", "sit_in", "sit_in", "leave", "tick", "deal", *["act"] * 8)
ACTION_CHOICES = ("fold", "check", "call", "bet", "raise", *["check_call"] * 4, *["bet_raise"] * 2)


@st.composite
def configs(draw: st.DrawFn) -> TableConfig:
    big = draw(st.integers(1, 4))
    return TableConfig(
        table_id="prop",
        variant=draw(st.sampled_from(["NT", "PO"])),
        small_blind=draw(st.integers(0, big)),
        big_blind=big,
        ante=draw(st.integers(0, 1)),
        seat_count=draw(st.integers(2, 6)),
        rake_basis_points=draw(st.sampled_from([0, 1000, 2500])),
        rake_cap=draw(st.sampled_from([None, 3])),
        min_buy_in=20 * big,
        max_buy_in=60 * big,
        action_seconds=10.0,
        time_bank_seconds=draw(st.sampled_from([0.0, 20.0])),
        time_bank_refill_seconds=5.0,
        next_hand_seconds=draw(st.sampled_from([0.0, 3.0])),
    )


@settings(
    max_examples=60,
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(configs(), st.integers(2, 6), st.data())
def test_random_sessions_keep_every_invariant(
    config: TableConfig, player_count: int, data: st.DataObject
) -> None:
    referee = Referee(Table(config))
    players = [f"0x{k:02d}" for k in range(player_count)]
    now = 1000.0
    seats = data.draw(st.permutations(range(config.seat_count)), label="seats")
    for k, player in enumerate(players[: data.draw(st.integers(2, player_count))]):
        amount = data.draw(st.integers(config.min_buy_in, config.max_buy_in))
        referee.step(partial(referee.table.sit, player, seats[k % len(seats)], amount, player, now))
    for effect in [e for e in referee.table.effects if isinstance(e, BuyIn)]:
        referee.step(partial(referee.settle, effect, True, now))
    for _ in range(data.draw(st.integers(40, 200), label="steps")):
        table = referee.table
        now += data.draw(st.sampled_from([0.0, 0.0, 0.5, 4.0, 12.0, 25.0]), label="dt")
        kind = data.draw(st.sampled_from(KINDS), label="kind")
        player = data.draw(st.sampled_from(players), label="player")
        if kind == "sit":
            referee.sessions += 1
            seat = data.draw(st.integers(-1, config.seat_count))
            amount = data.draw(
                st.sampled_from([config.min_buy_in - 1, config.max_buy_in + 1])
                | st.integers(config.min_buy_in, config.max_buy_in)
            )
            session = f"r{referee.sessions}"
            referee.step(partial(table.sit, player, seat, amount, session, now))
        elif kind == "settle":
            pending = [e for e in table.effects if isinstance(e, BuyIn)]
            if pending:
                effect = data.draw(st.sampled_from(pending))
                ok = data.draw(st.integers(0, 4), label="ok") > 0
                referee.step(partial(referee.settle, effect, ok, now))
        elif kind == "sit_out":
            referee.step(partial(table.sit_out, player, now))
        elif kind == "sit_in":
            referee.step(partial(table.sit_in, player, now))
        elif kind == "leave":
            referee.step(partial(table.leave, player, now))
        elif kind == "tick":
            referee.step(partial(table.tick, now))
        elif kind == "deal" or table.hand_id is None:
            if table.ready_to_deal(now):
                referee.step(partial(referee.deal, now))
        else:
            view = table.public_view()["hand"]
            who = player
            if view is not None and data.draw(st.integers(0, 9), label="in turn") > 0:
                who = table.seats()[view["actor_seat"]].player
            action = data.draw(st.sampled_from(ACTION_CHOICES), label="action")
            to: int | None = None
            legal = view["legal"] if view is not None else None
            if action in ("bet", "raise", "bet_raise") and legal and legal["min_to"] is not None:
                to = data.draw(st.integers(legal["min_to"] - 1, legal["max_to"] + 1))
            hand_id = data.draw(st.sampled_from([None, table.hand_id, table.hand_id, "h-old"]))
            referee.step(partial(table.act, who, action, to, now, hand_id))
        if data.draw(st.integers(0, 9), label="effects done") == 0:
            done = [e.id for e in table.effects if not isinstance(e, BuyIn)]
            referee.step(partial(referee.effects_done, done))
        if data.draw(st.integers(0, 4), label="reload") == 0:
            referee.table = Table.from_bytes(table.to_bytes())
    assert [v.ok for v in verify_chain(referee.records)] == [True] * len(referee.records)


# -- illegal requests change nothing -------------------------------------------------


def three_handed() -> Table:
    """p0 on the button, p1 small blind, p2 big blind; p0 to act preflop."""
    table = make_table({0: 100, 1: 100, 2: 100})
    table.start_hand("h1", seed_for(1), 0.0)
    assert actor(table) == "p0"
    return table


ILLEGAL_ACTS: dict[str, Callable[[Table], object]] = {
    "out of turn": lambda t: t.act("p1", "call", None, 1.0),
    "not in the hand": lambda t: t.act("nobody", "call", None, 1.0),
    "wrong hand id": lambda t: t.act("p0", "call", None, 1.0, hand_id="h0"),
    "bet below the minimum": lambda t: t.act("p0", "raise", 3, 1.0),
    "bet above the maximum": lambda t: t.act("p0", "raise", 101, 1.0),
    "bet without an amount": lambda t: t.act("p0", "bet_raise", None, 1.0),
    "bet with a float": lambda t: t.act("p0", "bet_raise", 4.0, 1.0),  # type: ignore[arg-type]
    "check facing a bet": lambda t: t.act("p0", "check", None, 1.0),
    "unknown action": lambda t: t.act("p0", "allin", None, 1.0),
    "amount on fold": lambda t: t.act("p0", "fold", 4, 1.0),
    "amount on call": lambda t: t.act("p0", "call", 2, 1.0),
}


@pytest.mark.parametrize("request_", ILLEGAL_ACTS.values(), ids=ILLEGAL_ACTS.keys())
def test_illegal_actions_change_nothing(request_: Callable[[Table], object]) -> None:
    table = three_handed()
    assert_unchanged(table, lambda: request_(table), IllegalAction)


def test_call_with_nothing_to_call_changes_nothing() -> None:
    table = three_handed()
    table.act("p0", "call", None, 1.0)
    table.act("p1", "call", None, 1.0)
    assert actor(table) == "p2"  # the big blind's option
    assert_unchanged(table, lambda: table.act("p2", "call", None, 1.0), IllegalAction)
    table.act("p2", "check", None, 1.0)
    assert table.public_view()["hand"]["board"] != []


def test_acting_with_no_hand_in_play_changes_nothing() -> None:
    table = make_table({0: 100, 1: 100})
    assert_unchanged(table, lambda: table.act("p0", "check", None, 1.0), IllegalAction)
    before = table.to_bytes()
    assert table.tick(1e9).messages == []
    assert table.to_bytes() == before


ILLEGAL_SEATS: dict[str, Callable[[Table], object]] = {
    "seat below range": lambda t: t.sit("p9", -1, 100, "r9", 1.0),
    "seat above range": lambda t: t.sit("p9", 6, 100, "r9", 1.0),
    "seat a bool": lambda t: t.sit("p9", True, 100, "r9", 1.0),
    "seat taken": lambda t: t.sit("p9", 0, 100, "r9", 1.0),
    "seat taken by a buy-in": lambda t: t.sit("p9", 3, 100, "r9", 1.0),
    "buy-in below min": lambda t: t.sit("p9", 4, 39, "r9", 1.0),
    "buy-in above max": lambda t: t.sit("p9", 4, 201, "r9", 1.0),
    "buy-in a float": lambda t: t.sit("p9", 4, 100.0, "r9", 1.0),  # type: ignore[arg-type]
    "second seat": lambda t: t.sit("p0", 4, 100, "r9", 1.0),
    "same seat, new request": lambda t: t.sit("p0", 0, 100, "r9", 1.0),
    "empty player id": lambda t: t.sit("", 4, 100, "r9", 1.0),
    "long player id": lambda t: t.sit("x" * 43, 4, 100, "r9", 1.0),
    "player id not text": lambda t: t.sit(7, 4, 100, "r9", 1.0),  # type: ignore[arg-type]
    "empty request id": lambda t: t.sit("p9", 4, 100, "", 1.0),
    "long request id": lambda t: t.sit("p9", 4, 100, "r" * 21, 1.0),
    "request id with a space": lambda t: t.sit("p9", 4, 100, "r 9", 1.0),
    "request id not ascii": lambda t: t.sit("p9", 4, 100, "r\u00e9", 1.0),
    "leave while buying in": lambda t: t.leave("p3", 1.0),
    "leave without a seat": lambda t: t.leave("p9", 1.0),
    "leave with a bad id": lambda t: t.leave("", 1.0),
    "sit out without a seat": lambda t: t.sit_out("p9", 1.0),
    "sit in without a seat": lambda t: t.sit_in("p9", 1.0),
    "deal while a hand is in play": lambda t: t.start_hand("h2", seed_for(2), 1.0),
}


@pytest.mark.parametrize("request_", ILLEGAL_SEATS.values(), ids=ILLEGAL_SEATS.keys())
def test_illegal_seat_requests_change_nothing(request_: Callable[[Table], object]) -> None:
    table = three_handed()
    table.sit("p3", 3, 100, "s3", 0.0)  # buying in
    assert_unchanged(table, lambda: request_(table), TableError)


def test_a_hand_needs_two_dealt_players() -> None:
    table = make_table({0: 100, 1: 100})
    table.sit_out("p1", 0.0)
    assert not table.ready_to_deal(0.0)
    assert table.wake_at() is None
    assert_unchanged(table, lambda: table.start_hand("h1", seed_for(1), 0.0), TableError)


def test_saved_state_that_does_not_decode_is_refused() -> None:
    with pytest.raises(TableError, match="does not decode"):
        Table.from_bytes(b"\x00garbage")


@pytest.mark.parametrize(
    "changes",
    [
        {"table_id": ""},
        {"table_id": "a" * 33},
        {"table_id": "a/b"},
        {"min_buy_in": 0},
        {"min_buy_in": 300},
        {"min_buy_in": 1, "big_blind": 2},
        {"action_seconds": 0.0},
        {"time_bank_seconds": -1.0},
        {"next_hand_seconds": 601.0},
        {"name": "n" * 101},
    ],
)
def test_bad_configs_are_refused(changes: dict[str, Any]) -> None:
    fields: dict[str, Any] = {"table_id": "t1", **changes}
    with pytest.raises(PokerError):
        TableConfig(**fields)


# -- seats ---------------------------------------------------------------------------


def test_the_same_sit_request_twice_is_a_no_op() -> None:
    table = Table(TableConfig(table_id="t1"))
    first = table.sit("p0", 2, 100, "req-1", 0.0)
    assert [m.type for m in first.messages] == ["seat_reserved"]
    before, version = table.to_bytes(), table.version
    again = table.sit("p0", 2, 100, "req-1", 5.0)
    assert again.messages == []
    assert table.to_bytes() == before
    assert table.version == version
    (effect,) = table.effects
    assert isinstance(effect, BuyIn)
    assert (effect.player, effect.seat, effect.amount, effect.session) == ("p0", 2, 100, "req-1")


def test_a_refused_buy_in_frees_the_seat() -> None:
    table = Table(TableConfig(table_id="t1"))
    table.sit("p0", 2, 100, "req-1", 0.0)
    step = table.buy_in_settled("req-1", 100, False, 1.0)
    assert step.messages == [Message("seat_freed", {"seat": 2, "player": "p0"})]
    assert table.seats() == {}
    assert table.seat_of("p0") is None
    assert table.chips_at_table() == 0
    before = table.to_bytes()
    assert table.buy_in_settled("req-1", 100, True, 2.0).messages == []  # answered already
    assert table.to_bytes() == before
    table.sit("p1", 2, 50, "req-2", 3.0)
    table.buy_in_settled("req-2", 50, True, 3.0)
    assert table.seats()[2].player == "p1"
    assert table.chips_at_table() == 50


def test_a_settled_buy_in_seats_the_player_and_schedules_the_deal() -> None:
    table = Table(TableConfig(table_id="t1", next_hand_seconds=2.0))
    table.sit("p0", 0, 100, "a", 0.0)
    table.sit("p1", 1, 80, "b", 0.0)
    assert table.chips_at_table() == 0  # buying in holds no chips yet
    table.buy_in_settled("a", 100, True, 1.0)
    assert not table.ready_to_deal(1.0)
    step = table.buy_in_settled("b", 80, True, 3.0)
    assert step.messages == [Message("seated", {"seat": 1, "player": "p1", "stack": 80})]
    assert table.chips_at_table() == 180
    assert table.ready_to_deal(3.0)
    assert table.wake_at() == 1.0
    version = table.version
    ids = [e.id for e in table.effects]
    table.effects_done(ids)
    assert table.effects == ()
    assert table.version == version + 1
    table.effects_done([ids[0], "unknown"])
    assert table.version == version + 1


def test_a_player_whose_stack_reaches_zero_leaves() -> None:
    for n in range(30):
        table = make_table({0: 100, 1: 100})
        table.start_hand(f"h{n}", seed_for(n), 0.0)
        table.act(actor(table), "bet_raise", 100, 1.0)
        step = table.act(actor(table), "call", None, 1.0)
        (done,) = hand_dones(table)
        if 0 in done.deltas.values():
            continue  # a split pot; try another deck
        loser = min(done.deltas, key=lambda p: done.deltas[p])
        winner = max(done.deltas, key=lambda p: done.deltas[p])
        assert table.seat_of(loser) is None
        assert table.seats()[table.seat_of(winner) or 0].stack == 200
        left = [m.data for m in step.messages if m.type == "left"]
        assert left == [{"seat": int(loser[1:]), "player": loser, "cash_out": 0}]
        assert cash_outs(table) == []  # nothing to pay out
        assert not table.ready_to_deal(10.0)
        return
    pytest.fail("no deck among 30 gave a winner")


# -- timers --------------------------------------------------------------------------


def heads_up(**changes: Any) -> Table:
    """p0 on the button (small blind, acts first preflop), p1 big blind; dealt at 0."""
    fields: dict[str, Any] = {
        "action_seconds": 10.0,
        "time_bank_seconds": 30.0,
        "time_bank_refill_seconds": 5.0,
    }
    fields.update(changes)
    table = make_table({0: 100, 1: 100}, **fields)
    table.start_hand("h1", seed_for(1), 0.0)
    assert actor(table) == "p0"
    return table


def test_the_time_bank_starts_then_the_player_folds_and_sits_out() -> None:
    table = heads_up()
    assert table.wake_at() == 10.0
    before = table.to_bytes()
    assert table.tick(9.9).messages == []
    assert table.to_bytes() == before
    step = table.tick(10.0)
    assert step.messages == [Message("time_bank", {"hand_id": "h1", "seat": 0, "deadline": 40.0})]
    assert table.wake_at() == 40.0
    assert table.tick(39.0).messages == []
    step = table.tick(40.0)
    assert step.messages[0] == Message("timed_out", {"hand_id": "h1", "seat": 0, "player": "p0"})
    assert (ops_of(step)[0]["op"], ops_of(step)[0]["seat"]) == ("fold", 0)
    assert table.hand_id is None  # heads-up: the fold ends the hand
    seat = table.seats()[0]
    assert seat.sitting_out
    assert seat.time_bank == 0.0
    assert not table.ready_to_deal(50.0)  # p0 sits out from the next hand


def test_a_timed_out_player_checks_when_checking_is_legal() -> None:
    table = heads_up()
    table.act("p0", "call", None, 1.0)
    assert actor(table) == "p1"  # the big blind's option: checking is legal
    table.tick(11.0)
    step = table.tick(41.0)
    assert step.messages[0].type == "timed_out"
    assert ops_of(step)[0] == {"hand_id": "h1", "sequence": 6, "op": "check", "seat": 1}
    assert table.hand_id == "h1"  # the flop is out and the hand goes on
    assert table.public_view()["hand"]["board"] != []
    assert table.seats()[1].sitting_out
    # from now on p1 is checked or folded for at once
    step = table.act("p0", "bet_raise", 10, 42.0)
    assert [o["op"] for o in ops_of(step)][:2] == ["bet_raise", "fold"]
    assert table.hand_id is None


def test_a_late_tick_starts_the_bank_at_the_deadline() -> None:
    table = heads_up()
    step = table.tick(25.0)
    assert step.messages[0].data["deadline"] == 40.0
    step = table.tick(40.0)
    assert step.messages[0].type == "timed_out"


def test_a_player_acting_in_the_bank_keeps_what_is_left() -> None:
    table = heads_up()
    table.tick(10.0)
    table.act("p0", "call", None, 22.0)  # 12 s of the 30 s bank used
    assert table.seats()[0].time_bank == 18.0
    assert not table.seats()[0].sitting_out
    assert table.public_view()["hand"]["deadline"] == 32.0  # p1's own action time
    table.act("p1", "check", None, 23.0)
    play_out(table, 24.0)
    table.start_hand("h2", seed_for(2), 30.0)
    assert table.seats()[0].time_bank == 23.0  # refilled by 5
    assert table.seats()[1].time_bank == 30.0  # capped at time_bank_seconds


def test_an_exhausted_bank_refills_by_the_refill_only() -> None:
    table = heads_up()
    table.tick(10.0)
    table.tick(40.0)  # p0 times out with the bank spent
    table.sit_in("p0", 41.0)
    turn = table.start_hand("h2", seed_for(2), 41.0).messages[-1]
    assert table.seats()[0].time_bank == 5.0
    assert turn.type == "turn"
    assert turn.data["seat"] == 1
    table.act("p1", "call", None, 42.0)
    assert actor(table) == "p0"
    step = table.tick(52.0)
    assert step.messages[0].data["deadline"] == 57.0
    assert table.tick(57.0).messages[0].type == "timed_out"


def test_without_a_time_bank_the_first_tick_times_out() -> None:
    table = heads_up(time_bank_seconds=0.0)
    step = table.tick(10.0)
    assert step.messages[0].type == "timed_out"
    assert table.hand_id is None


# -- leaving -------------------------------------------------------------------------


def test_leaving_between_hands_cashes_out_at_once() -> None:
    table = make_table({0: 100, 1: 70, 2: 50})
    step = table.leave("p1", 1.0)
    assert step.messages == [Message("left", {"seat": 1, "player": "p1", "cash_out": 70})]
    assert [(c.player, c.seat, c.amount, c.session) for c in cash_outs(table)] == [
        ("p1", 1, 70, "s1")
    ]
    assert table.chips_at_table() == 150
    assert table.seat_of("p1") is None


def test_leaving_on_your_turn_folds_at_once_and_cashes_out_at_the_end() -> None:
    table = three_handed()
    step = table.leave("p0", 1.0)
    assert step.messages[0] == Message("leaving", {"seat": 0, "player": "p0"})
    assert ops_of(step)[0]["op"] == "fold"
    assert ops_of(step)[0]["seat"] == 0
    assert cash_outs(table) == []  # the hand is still in play
    assert table.seat_of("p0") == 0
    play_out(table, 2.0)
    assert [(c.player, c.seat, c.amount, c.session) for c in cash_outs(table)] == [
        ("p0", 0, 100, "s0")
    ]
    assert table.seat_of("p0") is None


def test_leaving_before_your_turn_folds_when_the_action_comes() -> None:
    table = three_handed()
    step = table.leave("p2", 1.0)  # the big blind, not to act yet
    assert [m.type for m in step.messages] == ["leaving"]
    assert actor(table) == "p0"
    step = table.act("p0", "bet_raise", 6, 2.0)
    step.messages += table.act("p1", "call", None, 3.0).messages
    seats_folded = [o["seat"] for o in ops_of(step) if o["op"] == "fold"]
    assert seats_folded == [2]
    play_out(table, 4.0)
    (done,) = hand_dones(table)
    assert [(c.player, c.seat, c.amount, c.session) for c in cash_outs(table)] == [
        ("p2", 2, 98, "s2")
    ]
    assert done.deltas["p2"] == -2
    assert table.seat_of("p2") is None


def test_a_leaving_player_checks_through_when_checking_is_legal() -> None:
    table = three_handed()
    table.leave("p2", 1.0)
    table.act("p0", "call", None, 2.0)
    step = table.act("p1", "call", None, 3.0)  # p2's option: checked for them
    assert [o["op"] for o in ops_of(step)][:3] == ["call", "check", "collect_bets"]
    messages = play_out(table, 4.0)
    (done,) = hand_dones(table)
    cash = [m.data for m in messages if m.type == "left"]
    assert cash == [{"seat": 2, "player": "p2", "cash_out": 100 + done.deltas["p2"]}]
    if done.deltas["p2"] > -100:
        assert cash_outs(table)[0].amount == 100 + done.deltas["p2"]


def folded_and_left() -> Table:
    """The small blind p1 folds (losing its 1 chip) and leaves while the hand goes on."""
    table = three_handed()
    table.act("p0", "call", None, 1.0)
    table.act("p1", "fold", None, 1.0)
    step = table.leave("p1", 2.0)
    assert [m.type for m in step.messages] == ["leaving"]
    return table


def test_leaving_after_folding_keeps_the_seat_and_cashes_out_when_the_hand_ends() -> None:
    table = folded_and_left()
    assert cash_outs(table) == []
    assert table.seat_of("p1") == 1
    assert table.chips_at_table() == 300
    play_out(table, 3.0)
    assert table.hand_id is None
    assert table.seat_of("p1") is None
    assert [c.amount for c in cash_outs(table)] == [99]
    cashed = sum(c.amount for c in cash_outs(table))
    assert table.chips_at_table() + cashed + sum(d.rake for d in hand_dones(table)) == 300


def test_a_seat_left_mid_hand_stays_taken_until_the_hand_ends() -> None:
    table = three_handed()
    table.act("p0", "call", None, 1.0)
    table.act("p1", "fold", None, 1.0)
    table.leave("p1", 2.0)
    before = table.to_bytes()
    with pytest.raises(TableError, match="taken"):
        table.sit("p9", 1, 50, "s9", 2.0)
    assert table.to_bytes() == before
    play_out(table, 3.0)
    table.sit("p9", 1, 50, "s9", 4.0)
    table.buy_in_settled("s9", 50, True, 4.0)
    assert table.seats()[1].player == "p9"
    assert table.seats()[1].stack == 50


# -- the button ----------------------------------------------------------------------


def test_the_button_moves_to_the_next_dealt_seat_every_hand() -> None:
    table = make_table({1: 100, 3: 100, 4: 100})
    buttons = []
    for n in range(7):
        if n == 3:
            table.sit_out("p4", 0.0)
        if n == 5:
            table.sit_in("p4", 0.0)
        step = table.start_hand(f"h{n}", seed_for(n), 0.0)
        buttons.append(step.messages[0].data["button_seat"])
        assert table.public_view()["button_seat"] == buttons[-1]
        play_out(table, 0.0, "fold")
    assert buttons == [1, 3, 4, 1, 3, 4, 1]


def test_heads_up_the_button_posts_the_small_blind() -> None:
    table = make_table({2: 100, 5: 100}, small_blind=1, big_blind=2)
    for n in range(3):
        step = table.start_hand(f"h{n}", seed_for(n), 0.0)
        button = step.messages[0].data["button_seat"]
        blinds = [(o["seat"], o["amount"]) for o in ops_of(step) if o["op"] == "post_blind"]
        other = 5 if button == 2 else 2
        assert blinds == [(button, 1), (other, 2)]
        assert actor(table) == f"p{button}"  # the small blind acts first preflop
        play_out(table, 0.0, "fold")
    assert [e.button_seat for e in table.effects if isinstance(e, HandStartedEffect)] == [2, 5, 2]


# -- privacy and the committed shuffle ----------------------------------------------


def showdown_hand(seed: bytes) -> tuple[Table, list[Message]]:
    table = make_table({0: 100, 1: 100, 2: 100, 4: 100}, rake_basis_points=500, rake_cap=3)
    messages = list(table.start_hand("hx", seed, 0.0).messages)
    messages += table.act(actor(table), "bet_raise", 20, 1.0).messages
    messages += play_out(table, 1.0)
    return table, messages


def test_hole_cards_go_only_to_their_owner() -> None:
    table = make_table({0: 100, 1: 100, 2: 100, 4: 100})
    step = table.start_hand("hx", seed_for(7), 0.0)
    private = [m for m in step.messages if m.player is not None]
    assert sorted(m.player or "" for m in private) == ["p0", "p1", "p2", "p4"]
    for message in private:
        assert message.type == "hole_cards"
        assert message.player == f"p{message.data['seat']}"
        assert message.data["cards"] == (table.private_view(message.player) or {})["cards"]
    assert table.private_view("stranger") is None
    public = json.dumps([m.data for m in step.messages if m.player is None])
    public += json.dumps(table.public_view())
    for message in private:
        for card in message.data["cards"]:
            assert card not in public


def test_public_messages_show_cards_only_for_the_board_and_showdowns() -> None:
    _, messages = showdown_hand(seed_for(3))
    holes = {m.player: m.data["cards"] for m in messages if m.type == "hole_cards"}
    shown = mucked = 0
    for message in messages:
        if message.player is not None:
            continue
        if "cards" in message.data:
            assert message.type == "action"
            assert message.data["op"] in PUBLIC_CARD_OPS
        if message.data.get("op") == "show":
            assert message.data["cards"] == holes[f"p{message.data['seat']}"]
            shown += 1
        mucked += message.data.get("op") == "muck"
    assert shown >= 1
    assert shown + mucked == 4
    board = [c for m in messages if m.data.get("op") == "deal_board" for c in m.data["cards"]]
    assert len(board) == 5
    (completed,) = [m for m in messages if m.type == "hand_completed"]
    assert completed.data["board"] == board


def test_the_commitment_and_the_revealed_seed_rebuild_the_deck() -> None:
    seed = seed_for(11)
    table, messages = showdown_hand(seed)
    started = messages[0]
    assert started.type == "hand_started"
    assert started.data["commitment"] == hashlib.sha256(seed).hexdigest()
    (completed,) = [m for m in messages if m.type == "hand_completed"]
    assert completed.data["seed_reveal"] == seed.hex()
    assert completed.data["commitment"] == started.data["commitment"]
    deck = [card_str(c) for c in deck_for(bytes.fromhex(completed.data["seed_reveal"]), (), "hx")]
    holes = [m.data["cards"] for m in messages if m.type == "hole_cards"]
    assert [m.data["seat"] for m in messages if m.type == "hole_cards"] == [1, 2, 4, 0]
    assert holes == [deck[0:2], deck[2:4], deck[4:6], deck[6:8]]
    boards = [m.data["cards"] for m in messages if m.data.get("op") == "deal_board"]
    assert boards == [deck[9:12], deck[13:14], deck[15:16]]  # a burn before each street
    (done,) = hand_dones(table)
    record = from_json(json.loads(done.record))
    verify_record(record, None)
    assert record.record_hash == completed.data["record_hash"]
    assert done.rake == completed.data["rake"] == 3  # 5% of a pot of 80, capped at 3
    assert sum(done.deltas.values()) + done.rake == 0


def test_action_effects_mirror_the_public_operations() -> None:
    table, messages = showdown_hand(seed_for(5))
    actions = [e for e in table.effects if isinstance(e, ActionEffect)]
    public = [m.data for m in messages if m.type == "action"]
    assert [e.id for e in actions] == [f"hx:{d['sequence']}" for d in public]
    assert [(e.action, e.seat, e.amount) for e in actions] == [
        (d["op"], d.get("seat"), d.get("amount", 0)) for d in public
    ]
    assert [d["sequence"] for d in public] == list(range(1, len(public) + 1))


def test_a_raked_hand_history_replays_to_its_own_finishing_stacks() -> None:
    table, _ = showdown_hand(seed_for(5))
    (done,) = hand_dones(table)
    assert done.rake == 3
    history = phh.loads(done.history_phh)
    replayed = phh.replay(history)
    assert replayed.mismatches == ()
    assert replayed.rake == done.rake
    assert dict(zip(replayed.players, replayed.payoffs, strict=True)) == done.deltas


def test_a_request_id_reused_for_a_later_sitting_names_a_new_transfer() -> None:
    table = make_table({0: 100, 1: 100})
    first = [e.id for e in table.effects]
    table.effects_done(first)
    table.leave("p0", 1.0)
    (cash_out,) = cash_outs(table)
    table.effects_done([cash_out.id])
    table.sit("p0", 0, 100, "s0", 2.0)  # the same request id as the first sitting
    (again,) = table.effects
    assert isinstance(again, BuyIn)
    assert again.id not in first
    assert again.id != cash_out.id
