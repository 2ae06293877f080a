"""Hand records: sealing, the per-table hash chain, and every kind of mismatch verify explains."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from ludex.errors import FairnessError
from ludex.poker import phh
from ludex.poker.cards import card_str
from ludex.poker.record import (
    BOARD,
    BURN,
    GENESIS_HASH,
    DealtCard,
    HandRecord,
    canonical_bytes,
    compute_record_hash,
    dealt_cards,
    dealt_from_operations,
    dumps_records,
    loads_records,
    seal,
    seat,
    verify_chain,
    verify_record,
)
from ludex.poker.shuffle import deck_for

TABLE = "table-7"
SEED = bytes(range(32))
SEATS = (2, 5, 9)  # p1 (small blind), p2 (big blind), p3 (button) sit in these seats


def _destinations() -> list[str]:
    holes = [seat(s) for s in SEATS for _ in range(2)]  # each player's two cards together
    return [*holes, BURN, BOARD, BOARD, BOARD, BURN, BOARD, BURN, BOARD]


def make_record(
    sequence: int,
    previous: HandRecord | None,
    *,
    server_seed: bytes | None = None,
    client_seeds: tuple[bytes | str, ...] = ("alice's seed", b"\x01\x02"),
) -> HandRecord:
    seed = server_seed or bytes([sequence + 1]) * 32
    hand_id = f"{TABLE}/{sequence}"
    deck = deck_for(seed, list(client_seeds), hand_id)
    dealt = dealt_cards(deck, _destinations())
    hole = {s: "".join(d.card for d in dealt if d.destination == seat(s)) for s in SEATS}
    board = [d.card for d in dealt if d.destination == BOARD]
    history = phh.HandHistory(
        variant="NT",
        antes=(0, 0, 0),
        blinds_or_straddles=(1, 2, 0),
        min_bet=2,
        starting_stacks=(100, 100, 100),
        actions=(
            *(f"d dh p{i + 1} {hole[s]}" for i, s in enumerate(SEATS)),
            "p3 cc",
            "p1 cc",
            "p2 cc",
            f"d db {''.join(board[:3])}",
            "p1 cc",
            "p2 cc",
            "p3 cc",
            f"d db {board[3]}",
            "p1 cc",
            "p2 cc",
            "p3 cc",
            f"d db {board[4]}",
            "p1 cc",
            "p2 cc",
            "p3 cc",
            f"p1 sm {hole[SEATS[0]]}",
            f"p2 sm {hole[SEATS[1]]}",
            f"p3 sm {hole[SEATS[2]]}",
        ),
        seats=SEATS,
        table=TABLE,
        hand=hand_id,
    )
    return seal(
        table_id=TABLE,
        hand_id=hand_id,
        sequence=sequence,
        server_seed=seed,
        client_seeds=client_seeds,
        dealt=dealt,
        history_phh=phh.dumps(history),
        previous=previous,
    )


def make_chain(length: int) -> list[HandRecord]:
    chain: list[HandRecord] = []
    for sequence in range(length):
        chain.append(make_record(sequence, chain[-1] if chain else None))
    return chain


def reseal(record: HandRecord, **changes: object) -> HandRecord:
    """A forger's edit: change fields and recompute the record hash so only the content lies."""
    changed = replace(record, **changes)  # type: ignore[arg-type]
    return replace(changed, record_hash=compute_record_hash(changed))


def failure(record: HandRecord, previous: HandRecord | None = None) -> str:
    with pytest.raises(FairnessError) as info:
        verify_record(record, previous)
    return str(info.value)


def test_an_honest_chain_verifies() -> None:
    chain = make_chain(4)
    assert chain[0].previous_record_hash == GENESIS_HASH
    for previous, record in zip([None, *chain], chain, strict=False):
        verify_record(record, previous)
    assert all(v.ok for v in verify_chain(chain))
    assert len({r.record_hash for r in chain}) == 4


def test_the_record_hash_is_sha256_of_the_documented_canonical_json() -> None:
    import hashlib

    record = make_chain(1)[0]
    content = json.loads(record.dumps())
    del content["record_hash"]
    text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_bytes(record.content()) == text.encode()
    assert record.record_hash == hashlib.sha256(text.encode()).hexdigest()


def test_a_tampered_card_names_the_card_the_seat_and_the_deck_position() -> None:
    record = make_chain(1)[0]
    k = 3  # p2's second hole card, to seat 5
    original = record.dealt[k]
    other = next(d.card for d in record.dealt if d.card != original.card)
    dealt = list(record.dealt)
    dealt[k] = replace(original, card=other)
    message = failure(reseal(record, dealt=tuple(dealt)))
    assert f"card {k} dealt to seat 5 was {other}" in message
    assert f"has {original.card} at position {original.position}" in message


def test_two_swapped_board_cards_are_caught() -> None:
    record = make_chain(1)[0]
    dealt = list(record.dealt)
    i, j = 7, 8  # two flop cards
    dealt[i], dealt[j] = (
        replace(dealt[i], card=dealt[j].card),
        replace(dealt[j], card=dealt[i].card),
    )
    message = failure(reseal(record, dealt=tuple(dealt)))
    assert "card 7 dealt to the board" in message


def test_a_wrong_seed_reveal_breaks_the_commitment() -> None:
    record = make_chain(1)[0]
    message = failure(reseal(record, seed_reveal=("ab" * 32)))
    assert "commitment published before the hand was" in message
    assert "not the seed the server committed to" in message


def test_a_changed_client_seed_changes_the_deck_and_is_caught_at_the_first_card() -> None:
    record = make_chain(1)[0]
    message = failure(reseal(record, client_seeds=(b"mallory".hex(), record.client_seeds[1])))
    assert "card 0 dealt to seat 2 was" in message
    assert "but the deck derived from the revealed seeds has" in message


def test_editing_the_content_without_resealing_breaks_the_record_hash() -> None:
    record = make_chain(1)[0]
    message = failure(replace(record, table_id="table-8"))
    assert "the record was changed after it was sealed" in message
    assert record.record_hash in message


def test_a_tampered_hash_is_caught() -> None:
    record = make_chain(1)[0]
    forged = "f" * 64
    message = failure(replace(record, record_hash=forged))
    assert f"the record hash is {forged}" in message


def test_a_broken_link_names_both_hashes() -> None:
    first, second = make_chain(2)
    forged = reseal(second, previous_record_hash="e" * 64)
    message = failure(forged, first)
    assert f"links to previous hash {'e' * 64}" in message
    assert first.record_hash in message


def test_a_rewritten_past_hand_breaks_the_next_link() -> None:
    chain = make_chain(3)
    rewritten = reseal(chain[1], history_phh=chain[1].history_phh.replace("p3 cc", "p3 f", 1))
    verdicts = verify_chain([chain[0], rewritten, chain[2]])
    assert [v.ok for v in verdicts] == [True, True, False]
    assert "links to previous hash" in verdicts[2].reason


def test_a_missing_hand_breaks_the_sequence() -> None:
    chain = make_chain(3)
    message = failure(chain[2], chain[0])
    assert "sequence 2 follows sequence 0; expected 1" in message


def test_a_chain_holds_one_table() -> None:
    first = make_record(0, None)
    other = reseal(make_record(1, first), table_id="table-99")
    assert "a chain holds one table" in failure(other, first)


def test_the_first_hand_must_link_to_genesis() -> None:
    record = reseal(make_chain(1)[0], previous_record_hash="1" * 64)
    assert "genesis" in failure(record)


def test_history_that_disagrees_with_the_deal_is_caught() -> None:
    record = make_chain(1)[0]
    history = phh.loads(record.history_phh)
    first = history.parsed_actions[0]
    assert isinstance(first, phh.DealHole)
    unused = next(
        card_str(c) for c in range(52) if card_str(c) not in {d.card for d in record.dealt}
    )
    actions = (f"d dh p1 {first.cards[0]}{unused}", *history.actions[1:])
    lying = phh.dumps(replace(history, actions=actions))
    message = failure(reseal(record, history_phh=lying))
    assert f"shows {unused} as card 1, but card 1 dealt to seat 2 was {first.cards[1]}" in message


def test_cards_must_come_from_the_top_of_the_deck_in_order() -> None:
    record = make_chain(1)[0]
    dealt = list(record.dealt)
    dealt[5] = DealtCard(20, dealt[5].card, dealt[5].destination)  # a card picked from deep
    message = failure(reseal(record, dealt=tuple(dealt)))
    assert "card 5 claims deck position 20; cards are taken from the top in order" in message


def test_an_extra_card_not_in_the_history_is_refused() -> None:
    record = make_chain(1)[0]
    clients = [bytes.fromhex(c) for c in record.client_seeds]
    deck = deck_for(bytes.fromhex(record.seed_reveal), clients, record.hand_id)
    k = len(record.dealt)
    extra = DealtCard(k, card_str(deck[k]), BURN)  # the true next card, but never dealt
    message = failure(reseal(record, dealt=(*record.dealt, extra)))
    assert f"card {k} (to the burn) was taken from the deck but the history never deals it" in (
        message
    )


def test_the_server_cannot_choose_who_gets_which_cards() -> None:
    # Give p1's two cards to p2's seat and p2's to p1's: every card is still the deck's
    # card at its position, but the destinations break the dealing order.
    record = make_chain(1)[0]
    dealt = list(record.dealt)
    for k in (0, 1):
        dealt[k] = replace(dealt[k], destination=seat(SEATS[1]))
        dealt[k + 2] = replace(dealt[k + 2], destination=seat(SEATS[0]))
    message = failure(reseal(record, dealt=tuple(dealt)))
    assert "card 0 (deck position 0) went to seat 5" in message
    assert "it belongs to seat 2" in message


def test_a_missing_burn_is_refused() -> None:
    record = make_chain(1)[0]
    dealt = [replace(d, destination=BOARD) if d.destination == BURN else d for d in record.dealt]
    message = failure(reseal(record, dealt=tuple(dealt)))
    assert "card 6 (deck position 6) went to the board" in message
    assert "it belongs to the burn" in message


def test_the_history_must_name_seats_and_deal_in_order() -> None:
    record = make_chain(1)[0]
    history = phh.loads(record.history_phh)
    no_seats = phh.dumps(replace(history, seats=None))
    assert "no 'seats' field" in failure(reseal(record, history_phh=no_seats))
    actions = list(history.actions)
    actions[0], actions[1] = actions[1], actions[0]
    swapped = phh.dumps(replace(history, actions=tuple(actions)))
    message = failure(reseal(record, history_phh=swapped))
    assert "actions[0] deals to p2 but p1 is next" in message


def test_json_lines_round_trip_and_single_object_files() -> None:
    chain = make_chain(3)
    text = dumps_records(chain)
    assert len(text.splitlines()) == 3
    assert loads_records(text) == chain
    assert loads_records(json.dumps(chain[0].to_json(), indent=2)) == [chain[0]]
    assert loads_records(json.dumps([r.to_json() for r in chain])) == chain


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "no hand record"),
        ('{"table_id": "t"}\n{"x": 1}', "line 1: missing fields"),
        ("not json\n", "line 1: not JSON"),
    ],
)
def test_malformed_files_are_explained(text: str, expected: str) -> None:
    with pytest.raises(FairnessError, match=expected):
        loads_records(text)


# -- end to end: seeds, the engine, the PHH history, the record ---------------------------


def play_engine_hand(
    sequence: int, previous: HandRecord | None, rng: random.Random
) -> tuple[HandRecord, list[int]]:
    """Deal a 4-handed hand from the committed deck and play random legal actions."""
    from ludex.poker.rules import GameConfig
    from ludex.poker.state import Phase, State

    seats = [1, 3, 4, 8]
    server_seed = rng.randbytes(32)
    clients = [f"client-{rng.random()}" for _ in range(rng.randrange(0, 4))]
    hand_id = f"{TABLE}/{sequence}"
    deck = deck_for(server_seed, clients, hand_id)
    state = State(GameConfig(small_blind=1, big_blind=2), [200, 150, 80, 300], button=sequence % 4)
    top = 0
    while not state.is_done:
        if state.phase is Phase.DEAL_HOLE:
            state.deal_hole(deck[top : top + 2])
            top += 2
        elif state.phase is Phase.DEAL_BOARD:
            count = state.board_cards_due
            state.deal_board(deck[top + 1 : top + 1 + count])  # after one burnt card
            top += 1 + count
        elif state.phase is Phase.SHOWDOWN:
            state.show_or_muck()
        else:
            legal = state.legal_actions()
            assert legal is not None
            choice = rng.random()
            if legal.min_to is not None and legal.max_to is not None and choice < 0.3:
                state.bet_or_raise(rng.randint(legal.min_to, legal.max_to))
            elif legal.fold and choice < 0.45:
                state.fold()
            else:
                state.check_or_call()
    dealt = dealt_from_operations(deck, state.operations, seats)
    history = phh.from_operations(
        state.config, state.operations, seats=seats, table=TABLE, hand=hand_id
    )
    record = seal(
        table_id=TABLE,
        hand_id=hand_id,
        sequence=sequence,
        server_seed=server_seed,
        client_seeds=clients,
        dealt=dealt,
        history_phh=phh.dumps(history),
        previous=previous,
    )
    return record, list(state.stacks)


def engine_chain(length: int, seed: int = 1) -> list[HandRecord]:
    rng = random.Random(seed)
    chain: list[HandRecord] = []
    for sequence in range(length):
        chain.append(play_engine_hand(sequence, chain[-1] if chain else None, rng)[0])
    return chain


def test_hands_played_by_the_engine_verify_end_to_end() -> None:
    chain = engine_chain(30)
    assert all(v.ok for v in verify_chain(chain)), [v.reason for v in verify_chain(chain)]
    for record in chain:
        history = phh.loads(record.history_phh)
        assert phh.replay(history).agrees is True
        burns = [d for d in record.dealt if d.destination == BURN]
        boards = [a for a in history.parsed_actions if isinstance(a, phh.DealBoard)]
        assert len(burns) == len(boards)


def test_an_engine_log_that_did_not_deal_from_the_deck_is_caught_by_the_server() -> None:
    from ludex.poker.operations import DealHole, StartHand

    deck = deck_for(SEED, [], "h")
    log = [StartHand((100, 100), 0, 0, 1), DealHole(0, (deck[1], deck[0]))]
    with pytest.raises(FairnessError, match="deck position 0 holds"):
        dealt_from_operations(deck, log, [1, 2])
