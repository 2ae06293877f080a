"""ludex.indexer.traces on hand-made callTracer answers: which frames move value or
create contracts, what a revert hides, deep call chains, and malformed answers refused
naming the block, the transaction, the frame and the field. (The same module on a real
anvil chain: tests/indexer/test_balances.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from ludex.errors import ChainError
from ludex.indexer.model import Block, Receipt, Transaction
from ludex.indexer.traces import block_traces

BLOCK = Block(31337, 12, "0x" + "bb" * 32, "0x" + "aa" * 32, 1, "0x" + "00" * 20, 1, 2, 7, 1)
TX_HASH = "0x" + "cc" * 32
SENDER, TARGET, OTHER, THIRD = ("0x" + c * 20 for c in ("01", "02", "03", "04"))


def tx(to: str | None = TARGET, value: int = 0) -> Transaction:
    return Transaction(
        31337, TX_HASH, 12, BLOCK.hash, 0, SENDER, to, value, 0, 21000, 9, None, None, 0, b""
    )


def receipt(status: int = 1, contract: str | None = None) -> Receipt:
    return Receipt(31337, TX_HASH, 12, BLOCK.hash, 0, status, 21000, 9, contract)


def frame(kind: str, frm: str, to: str | None, value: int | None = None, **extra: Any) -> Any:
    out: dict[str, Any] = {"type": kind, "from": frm, **extra}
    if to is not None:
        out["to"] = to
    if value is not None:
        out["value"] = hex(value)
    return out


def run(top: Any, t: Transaction | None = None, r: Receipt | None = None) -> Any:
    return block_traces(BLOCK, [t or tx()], [r or receipt()], [{"txHash": TX_HASH, "result": top}])


def test_only_call_create_and_selfdestruct_frames_move_value() -> None:
    top = frame(
        "CALL",
        SENDER,
        TARGET,
        0,
        calls=[
            frame("CALL", TARGET, OTHER, 5),
            frame("DELEGATECALL", TARGET, OTHER, 6),  # the caller's msg.value shown again
            frame("STATICCALL", TARGET, OTHER),
            frame("CALLCODE", TARGET, OTHER, 7),  # runs in TARGET's own account
            frame("CALL", TARGET, OTHER, 0),
            frame("CREATE2", TARGET, THIRD, 8, calls=[frame("SELFDESTRUCT", THIRD, OTHER, 8)]),
        ],
    )
    found = run(top)
    assert [(m.sender, m.recipient, m.value, m.kind) for m in found.transfers] == [
        (TARGET, OTHER, 5, "CALL"),
        (TARGET, THIRD, 8, "CREATE2"),
        (THIRD, OTHER, 8, "SELFDESTRUCT"),
    ]
    assert [(c.address, c.creator, c.via) for c in found.creations] == [(THIRD, TARGET, "trace")]
    assert found.creations[0].transaction_hash == TX_HASH


def test_a_revert_hides_the_frame_and_everything_below_it() -> None:
    top = frame(
        "CALL",
        SENDER,
        TARGET,
        calls=[
            frame(
                "CALL",
                TARGET,
                OTHER,
                4,
                error="execution reverted",
                calls=[frame("CREATE", OTHER, THIRD, 1), frame("CALL", OTHER, THIRD, 2)],
            ),
            frame("CREATE", TARGET, None, 3, error="out of gas"),  # no address: none made
            frame("CALL", TARGET, THIRD, 9),
        ],
    )
    found = run(top)
    assert [(m.recipient, m.value) for m in found.transfers] == [(THIRD, 9)]
    assert found.creations == ()


def test_the_top_level_frame_is_the_transaction_itself() -> None:
    creation = frame("CREATE", SENDER, THIRD, 4, calls=[frame("CREATE", THIRD, OTHER, 1)])
    found = run(creation, tx(None, 4), receipt(contract=THIRD))
    assert [c.address for c in found.creations] == [OTHER]  # THIRD comes from the receipt
    assert [(m.sender, m.recipient) for m in found.transfers] == [(THIRD, OTHER)]
    failed = frame("CALL", SENDER, TARGET, 4, error="execution reverted")
    assert run(failed, tx(value=4), receipt(0)).transfers == ()
    # No txHash (older nodes): fine.
    plain = block_traces(BLOCK, [tx()], [receipt()], [{"result": frame("CALL", SENDER, TARGET)}])
    assert plain.transfers == ()


def test_a_call_chain_deeper_than_pythons_recursion_limit() -> None:
    top = frame("CALL", SENDER, TARGET)
    inner = top
    for _ in range(3000):
        child = frame("CALL", TARGET, OTHER, 1)
        inner["calls"] = [child]
        inner = child
    inner["calls"] = [frame("CREATE", OTHER, THIRD)]
    found = run(top)
    assert len(found.transfers) == 3000
    assert [c.address for c in found.creations] == [THIRD]


@pytest.mark.parametrize(
    ("top", "words"),
    [
        (frame("CALL", SENDER, TARGET, calls=[frame("CREATE", TARGET, None)]), ["calls[0]", "to"]),
        (frame("CALL", SENDER, TARGET, calls=[frame("SEND", TARGET, OTHER)]), ["calls[0]", "type"]),
        (
            frame("CALL", SENDER, TARGET, calls=[frame("CALL", TARGET, OTHER, error=5)]),
            ["calls[0]", "error"],
        ),
        (
            frame(
                "CALL",
                SENDER,
                TARGET,
                calls=[{"type": "CALL", "from": TARGET, "to": OTHER, "value": "12"}],
            ),
            ["calls[0]", "value"],
        ),
        (
            frame("CALL", SENDER, TARGET, calls=[frame("CALL", TARGET, OTHER, calls=["x"])]),
            ["calls[0].calls[0]", "JSON object"],
        ),
        (frame("CALL", SENDER, OTHER), ["trace: to"]),
        (frame("CALL", OTHER, TARGET), ["trace: from"]),
        (frame("CALL", SENDER, TARGET, 1), ["trace: value"]),
        (frame("CREATE", SENDER, TARGET), ["trace: type"]),
        (frame("CALL", SENDER, TARGET, error="execution reverted"), ["trace: error"]),
        ("not a frame", ["JSON object"]),
    ],
)
def test_malformed_frames_are_refused(top: Any, words: list[str]) -> None:
    with pytest.raises(ChainError) as caught:
        run(top)
    message = str(caught.value)
    for word in ("block 12", TX_HASH, *words):
        assert word in message, message


def test_malformed_entries_are_refused() -> None:
    good = {"txHash": TX_HASH, "result": frame("CALL", SENDER, TARGET)}
    cases: list[tuple[Any, str]] = [
        ({"not": "a list"}, "expected a list"),
        ([good, good], "2 traces for 1 transactions"),
        ([{**good, "txHash": "0x" + "dd" * 32}], "txHash"),
        ([{**good, "txHash": "0x12"}], "txHash"),
        ([{"txHash": TX_HASH, "error": "tracing failed"}], "could not trace"),
        ([{"txHash": TX_HASH}], "result: is missing"),
    ]
    for raw, words in cases:
        with pytest.raises(ChainError, match=words) as caught:
            block_traces(BLOCK, [tx()], [receipt()], raw)
        assert "block 12" in str(caught.value)
