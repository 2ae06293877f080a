"""A block's call traces (``debug_traceBlockByNumber(n, {"tracer": "callTracer"})``),
validated, to internal contract creations and internal native value transfers.

The node answers one entry per transaction, in block order: ``{"txHash": ..., "result":
frame}`` (``txHash`` is left out by some nodes). A frame is ``{"type", "from", "to",
"value", "error", "calls": [frames]}``; its ``type`` is one of :data:`FRAME_TYPES`. The
top-level frame is the transaction itself (its value and creation are read from the
transaction and its receipt, so only the frames below it are extracted):

* an internal creation: a CREATE / CREATE2 frame below the top level that did not revert
  (neither it nor any frame above it carries ``error``), as a
  :class:`~ludex.indexer.model.ContractCreation` with ``via="trace"`` and the frame's
  ``from`` (the creating contract) as creator;
* an internal transfer: the value of a frame that did not revert, from ``from`` to ``to``,
  for CALL (a call with value), CREATE / CREATE2 (the endowment) and SELFDESTRUCT (the
  balance moved to the beneficiary). DELEGATECALL and STATICCALL move nothing (a
  DELEGATECALL's ``value`` is the caller's ``msg.value``, shown again) and neither does
  CALLCODE: it runs another contract's code in the caller's own account, so its value
  goes from the caller to itself.

Everything is checked, and anything else raises :class:`ludex.errors.ChainError` naming
the block, the transaction, the frame (``calls[1].calls[0]``) and the field: a count of
entries that is not the block's transaction count, a ``txHash`` of another transaction,
an entry with ``error`` (the node failed to trace it), an unknown frame type, a malformed
address or quantity, a top-level frame whose sender or value is not the transaction's, or
whose ``error`` disagrees with the receipt's status.

Pure: no I/O. Frames are walked with an explicit stack, so a 1024-deep call chain is fine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ludex.errors import ChainError
from ludex.indexer.fields import Fields
from ludex.indexer.model import Block, ContractCreation, InternalTransfer, Receipt, Transaction

FRAME_TYPES: Final = frozenset(
    {"CALL", "CALLCODE", "DELEGATECALL", "STATICCALL", "CREATE", "CREATE2", "SELFDESTRUCT"}
)
CREATES: Final = frozenset({"CREATE", "CREATE2"})
MOVES_VALUE: Final = frozenset({"CALL", "CREATE", "CREATE2", "SELFDESTRUCT"})


@dataclass(frozen=True, slots=True)
class Traces:
    """What the traces of one block add to its bundle."""

    creations: tuple[ContractCreation, ...]
    transfers: tuple[InternalTransfer, ...]


class _Frame(Fields):
    """Typed reads of one frame; every error names the block, transaction and frame."""

    def target(self, kind: str, reverted: bool) -> str | None:
        """The frame's ``to``: a reverted creation may have none (no contract was made)."""
        if reverted and kind in CREATES:
            return self.optional_address("to")
        return self.address("to")

    def value(self) -> int:
        """The frame's ``value`` (absent: nothing moved, as for a STATICCALL)."""
        return self.optional_quantity("value") or 0

    def kind(self) -> str:
        kind = self.raw.get("type")
        if not isinstance(kind, str) or kind.upper() not in FRAME_TYPES:
            raise self.fail("type", f"expected one of {sorted(FRAME_TYPES)}, got {kind!r}")
        return kind.upper()

    def error(self) -> bool:
        """Whether the frame reverted (it carries a non-empty ``error``)."""
        error = self.raw.get("error")
        if error is None:
            return False
        if not isinstance(error, str):
            raise self.fail("error", f"expected a string, got {type(error).__name__}")
        return error != ""

    def calls(self) -> Sequence[Any]:
        calls = self.raw.get("calls")
        if calls is None:
            return ()
        if not isinstance(calls, list):
            raise self.fail("calls", f"expected a list, got {type(calls).__name__}")
        return calls


def _top(tx: Transaction, receipt: Receipt, frame: _Frame) -> bool:
    """Check the top-level frame against the transaction; return whether it reverted."""
    kind = frame.kind()
    if tx.to is None:
        if kind not in CREATES:
            raise frame.fail("type", f"{kind} for a contract-creating transaction")
    elif kind != "CALL":
        raise frame.fail("type", f"{kind} for a transaction calling {tx.to}")
    sender = frame.address("from")
    if sender != tx.sender:
        raise frame.fail(
            "from", f"{sender!r} differs from the transaction's sender ({tx.sender!r})"
        )
    reverted = frame.error()
    to = frame.target(kind, reverted)
    if tx.to is not None and to != tx.to:
        raise frame.fail("to", f"{to!r} differs from the transaction's recipient ({tx.to!r})")
    created = receipt.contract_address
    if created is not None and receipt.status == 1 and to is not None and to != created:
        raise frame.fail(
            "to", f"{to!r} differs from the receipt's contract ({receipt.contract_address!r})"
        )
    if frame.value() != tx.value:
        raise frame.fail("value", f"{frame.value()} differs from the transaction's ({tx.value})")
    if reverted != (receipt.status == 0):
        state = "carries an error" if reverted else "carries no error"
        raise frame.fail(
            "error", f"the top-level frame {state} but the receipt's status is {receipt.status}"
        )
    return reverted


def block_traces(
    block: Block,
    transactions: Sequence[Transaction],
    receipts: Sequence[Receipt],
    raw_traces: Any,
) -> Traces:
    """Internal creations and transfers of one block, or :class:`ChainError`."""
    where = f"block {block.number} ({block.hash}): traces"
    if not isinstance(raw_traces, list):
        raise ChainError(f"{where}: expected a list, got {type(raw_traces).__name__}")
    if len(raw_traces) != len(transactions):
        raise ChainError(f"{where}: {len(raw_traces)} traces for {len(transactions)} transactions")
    creations: list[ContractCreation] = []
    transfers: list[InternalTransfer] = []
    for tx, receipt, raw in zip(transactions, receipts, raw_traces, strict=True):
        entry = _Frame(raw, f"{where}[{tx.index}] ({tx.hash})")
        given = entry.optional_hash("txHash")
        if given is not None and given != tx.hash:
            raise entry.fail("txHash", f"{given!r} differs from transaction {tx.index}'s hash")
        if entry.raw.get("error") is not None:
            raise entry.fail("error", f"the node could not trace it: {entry.raw['error']!r}")
        if "result" not in entry.raw:
            raise entry.fail("result", "is missing")
        top = _Frame(
            entry.raw["result"],
            f"block {block.number} ({block.hash}): transaction {tx.index} ({tx.hash}): trace",
        )
        reverted = _top(tx, receipt, top)
        stack = [(raw_call, f"calls[{i}]", reverted) for i, raw_call in enumerate(top.calls())]
        stack.reverse()
        while stack:
            raw_frame, path, above_reverted = stack.pop()
            frame = _Frame(raw_frame, f"{top.where} {path}")
            kind = frame.kind()
            sender = frame.address("from")
            frame_reverted = frame.error()
            reverted_here = above_reverted or frame_reverted
            to = frame.target(kind, frame_reverted)
            value = frame.value()
            children = frame.calls()
            stack.extend(
                (raw_call, f"{path}.calls[{i}]", reverted_here)
                for i, raw_call in reversed(list(enumerate(children)))
            )
            if reverted_here:
                continue
            assert to is not None  # only a reverted creation may lack it
            if kind in CREATES:
                creations.append(
                    ContractCreation(
                        chain_id=block.chain_id,
                        block_number=block.number,
                        block_hash=block.hash,
                        transaction_hash=tx.hash,
                        address=to,
                        creator=sender,
                        via="trace",
                    )
                )
            if value and kind in MOVES_VALUE:
                transfers.append(
                    InternalTransfer(
                        chain_id=block.chain_id,
                        block_number=block.number,
                        block_hash=block.hash,
                        transaction_hash=tx.hash,
                        sender=sender,
                        recipient=to,
                        value=value,
                        kind=kind,
                    )
                )
    return Traces(tuple(creations), tuple(transfers))
