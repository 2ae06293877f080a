"""Operation records: what happened in a hand, one frozen record per step.

Every change of a :class:`ludex.poker.state.State` appends one of these to
``state.operations`` and the manual ones are returned by the action that made
them. They are the game's events (the server maps them to ``poker.*`` events),
the input of :func:`ludex.poker.state.replay`, and part of the serialized state,
so each carries everything a consumer needs: the player index, chip amounts and
the cards where they are public (hole cards are in :class:`DealHole`; a consumer
that broadcasts must hide them).

Player indices are positions in the hand's ``starting_stacks`` (seat order,
clockwise). Amounts are integer chips. Records are msgspec structs: immutable,
slotted, hashable, cheap to create and to encode.

Pure data: no behaviour, no I/O.
"""

from __future__ import annotations

import msgspec


class Operation(msgspec.Struct, frozen=True, tag=True, array_like=True, gc=False):
    """Base of every operation record."""


class StartHand(Operation, frozen=True, tag=True, array_like=True, gc=False):
    """The hand began: starting stacks, the button and who posts which blind.

    ``small_blind`` is None when the small blind is dead (dead button, TDA 2024 Rule 32);
    ``missed_blinds`` lists ``(player, live, dead)`` posts of players returning
    after missing their blinds.
    """

    starting_stacks: tuple[int, ...]
    button: int
    small_blind: int | None
    big_blind: int
    missed_blinds: tuple[tuple[int, int, int], ...] = ()


class PostAnte(Operation, frozen=True, tag=True, array_like=True, gc=False):
    player: int
    amount: int
    dead: bool = False


class PostBlind(Operation, frozen=True, tag=True, array_like=True, gc=False):
    """A live blind (small, big, or a returning player's live post)."""

    player: int
    amount: int


class PostStraddle(Operation, frozen=True, tag=True, array_like=True, gc=False):
    player: int
    amount: int


class PostDead(Operation, frozen=True, tag=True, array_like=True, gc=False):
    """Dead chips (a missed small blind): straight into the pot, not part of a bet."""

    player: int
    amount: int


class DealHole(Operation, frozen=True, tag=True, array_like=True, gc=False):
    player: int
    cards: tuple[int, ...]


class DealBoard(Operation, frozen=True, tag=True, array_like=True, gc=False):
    """Board cards of ``street`` (1 flop, 2 turn, 3 river)."""

    street: int
    cards: tuple[int, ...]


class Fold(Operation, frozen=True, tag=True, array_like=True, gc=False):
    player: int


class CheckOrCall(Operation, frozen=True, tag=True, array_like=True, gc=False):
    """``amount`` is the chips added (0 for a check)."""

    player: int
    amount: int
    all_in: bool = False


class BetOrRaise(Operation, frozen=True, tag=True, array_like=True, gc=False):
    """A bet or raise *to* ``amount`` on this street (PHH ``cbr``); ``added`` left the stack."""

    player: int
    amount: int
    added: int
    all_in: bool = False


class ReturnUncalled(Operation, frozen=True, tag=True, array_like=True, gc=False):
    player: int
    amount: int


class CollectBets(Operation, frozen=True, tag=True, array_like=True, gc=False):
    """End of a betting round: each player's bet moved into the pot."""

    amounts: tuple[int, ...]


class ShowOrMuck(Operation, frozen=True, tag=True, array_like=True, gc=False):
    """``cards`` are the shown hole cards; empty when the hand was not shown: mucked, or,
    for the last live hand (TDA 17-B), kept face down while it wins (``AwardPot`` says)."""

    player: int
    cards: tuple[int, ...]


class CollectRake(Operation, frozen=True, tag=True, array_like=True, gc=False):
    """The house's cut, in total and per pot (same order as the pots)."""

    amount: int
    per_pot: tuple[int, ...]


class AwardPot(Operation, frozen=True, tag=True, array_like=True, gc=False):
    """Pot ``pot`` (0 = main) after rake, shared by ``winners`` as ``shares``."""

    pot: int
    amount: int
    winners: tuple[int, ...]
    shares: tuple[int, ...]


AnyOperation = (
    StartHand
    | PostAnte
    | PostBlind
    | PostStraddle
    | PostDead
    | DealHole
    | DealBoard
    | Fold
    | CheckOrCall
    | BetOrRaise
    | ReturnUncalled
    | CollectBets
    | ShowOrMuck
    | CollectRake
    | AwardPot
)
"""The union type of every record (for decoding a log)."""

MANUAL_OPERATIONS = (DealHole, DealBoard, Fold, CheckOrCall, BetOrRaise, ShowOrMuck)
"""Records made by a caller's action; the others follow automatically."""
