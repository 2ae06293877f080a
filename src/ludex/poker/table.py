"""Between hands: where the button and blinds go, and who owes missed blinds.

We follow the dead button of the TDA rules (2024 Rule 32) and the WSOP Tournament
Rules (2026 Rule 85), as we read them (see ``docs/poker.md``): the big blind moves
to the next player in the hand after the previous big blind, every hand, so nobody
skips or repeats it; the small blind is then the previous big blind's seat and the
button the previous small blind's seat. Either may land on an empty seat (a *dead*
small blind, posted by nobody, or a *dead* button, which still decides the order of
play). Heads-up the button posts the small blind (TDA 2024 Rule 34-B, WSOP
Tournament Rule 87), so the button is the player who is not the big blind.

A seated player who sits out while the big blind passes their seat has missed
the blinds; to be dealt in again before their big blind they post the big blind
live and the small blind dead (``missed_blinds`` of :class:`ludex.poker.state.State`).

Pure: no I/O; seats are integers ``0..seat_count-1``, clockwise.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ludex.errors import PokerError


@dataclass(frozen=True, slots=True)
class HandPositions:
    """Button and blind seats for one hand and the seats dealt in (clockwise from 0).

    ``small_blind_seat`` is where the small blind is due; when nobody plays in that
    seat the small blind is dead (``small_blind_dead``).
    """

    seat_count: int
    button_seat: int
    small_blind_seat: int
    big_blind_seat: int
    dealt_seats: tuple[int, ...]

    @property
    def small_blind_dead(self) -> bool:
        return self.small_blind_seat not in self.dealt_seats

    @property
    def button_dead(self) -> bool:
        return self.button_seat not in self.dealt_seats

    def player(self, seat: int) -> int:
        """The player index (position in ``dealt_seats``) of a seat dealt in."""
        return self.dealt_seats.index(seat)

    @property
    def button_player(self) -> int:
        """The player index to give :class:`State` as ``button``.

        With a dead button (an empty seat) this is the last player before the button
        seat, which gives the same order of play: the first to act after the flop
        is the first player after the button seat.
        """
        seats = self.dealt_seats
        for k in range(self.seat_count):
            seat = (self.button_seat - k) % self.seat_count
            if seat in seats:
                return seats.index(seat)
        raise PokerError("no player is dealt in")  # pragma: no cover - validated before

    @property
    def blinds(self) -> tuple[int | None, int]:
        """``(small_blind, big_blind)`` as player indices for :class:`State`."""
        small = None if self.small_blind_dead else self.player(self.small_blind_seat)
        return small, self.player(self.big_blind_seat)


def _clockwise_after(seat: int, seats: Iterable[int], seat_count: int) -> int:
    ordered = sorted(seats, key=lambda s: (s - seat - 1) % seat_count)
    return ordered[0]


def next_hand(
    seat_count: int,
    playing: Iterable[int],
    previous: HandPositions | None = None,
    first_button: int | None = None,
) -> HandPositions:
    """Positions for the next hand.

    ``playing`` are the seats of players who will be dealt in. For the first hand
    (``previous`` None) the button goes to ``first_button`` (default: the lowest
    playing seat, as if the high card were drawn there) and the blinds follow it.
    """
    seats = sorted(set(playing))
    if len(seats) < 2:
        raise PokerError("a hand needs at least two players")
    if any(not 0 <= s < seat_count for s in seats):
        raise PokerError(f"seats must be in 0..{seat_count - 1}")
    if previous is None:
        button = seats[0] if first_button is None else first_button
        if button not in seats:
            raise PokerError(f"the first button must be on a playing seat, not {button}")
        if len(seats) == 2:
            big = _clockwise_after(button, seats, seat_count)
            return HandPositions(seat_count, button, button, big, tuple(seats))
        small = _clockwise_after(button, seats, seat_count)
        big = _clockwise_after(small, seats, seat_count)
        return HandPositions(seat_count, button, small, big, tuple(seats))
    big = _clockwise_after(previous.big_blind_seat, seats, seat_count)
    if len(seats) == 2:
        other = seats[0] if seats[1] == big else seats[1]
        return HandPositions(seat_count, other, other, big, tuple(seats))
    return HandPositions(
        seat_count, previous.small_blind_seat, previous.big_blind_seat, big, tuple(seats)
    )


def update_missed_blinds(
    owed: Mapping[int, int],
    previous: HandPositions,
    current: HandPositions,
    sitting_out: Iterable[int],
) -> dict[int, int]:
    """Seats owing a big blind after the big blind moved from ``previous`` to ``current``.

    Every sitting-out seat the big blind passed over now owes one (the value is how
    many big blinds were missed; the post is the same whatever the count).
    """
    result = dict(owed)
    out = set(sitting_out)
    seat = previous.big_blind_seat
    while True:
        seat = (seat + 1) % current.seat_count
        if seat == current.big_blind_seat or seat == previous.big_blind_seat:
            break
        if seat in out:
            result[seat] = result.get(seat, 0) + 1
    if current.big_blind_seat in result:
        del result[current.big_blind_seat]
    return result


def missed_blind_posts(
    owed: Mapping[int, int],
    positions: HandPositions,
    small_blind: int,
    big_blind: int,
) -> tuple[tuple[int, int, int], ...]:
    """``(player, live, dead)`` posts for returning players who owe blinds.

    A player who owes and is dealt in anywhere but the blinds posts the big blind
    live and the small blind dead; one who returns in the big blind just posts it.
    """
    posts = []
    for seat in sorted(owed):
        if seat not in positions.dealt_seats:
            continue
        if seat in (positions.big_blind_seat, positions.small_blind_seat, positions.button_seat):
            continue
        posts.append((positions.player(seat), big_blind, small_blind))
    return tuple(posts)
