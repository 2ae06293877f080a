"""Provably fair shuffles: a committed server seed, player seeds, and an HMAC-SHA256 deck.

Before a hand the server draws a secret seed (:func:`new_server_seed`) and publishes its
:func:`commitment`, the hex SHA-256 of the seed. Players may add seeds of their own. The
deck is then a pure function of (server seed, client seeds, hand id), :func:`deck_for`;
after the hand the server reveals its seed and anyone can re-derive the deck and check
every dealt card (:mod:`ludex.poker.record`).

The derivation, byte for byte, so that a third party can re-implement it:

1. Encode each field as ``len(field)`` in 4 bytes big-endian followed by the field bytes
   (``lp(x)``), so no two different inputs concatenate to the same bytes.
2. Client seeds given as text are UTF-8 encoded. They are then sorted by their bytes
   (plain lexicographic order on the byte strings), so the deck does not depend on the
   order in which seeds were submitted and the server cannot pick an order it likes.
3. For ``counter = 0, 1, 2, ...`` the block ``HMAC-SHA256(key=server_seed, msg)`` with::

       msg = lp(b"ludex.poker.shuffle.v1") || lp(hand_id as UTF-8)
             || count of client seeds, 4 bytes big-endian || lp(seed_1) || ... || lp(seed_n)
             || counter, 8 bytes big-endian

   Each 32-byte block is read as eight unsigned 32-bit big-endian integers; the blocks
   are concatenated into one stream of integers.
4. Start from ``deck = [0, 1, ..., 51]`` (card ids ``rank * 4 + suit``, see
   :mod:`ludex.poker.cards`). For ``i`` from 51 down to 1: let ``n = i + 1`` and
   ``limit = (2**32 // n) * n``; take integers from the stream, skipping every value
   ``>= limit`` (rejection sampling: the accepted values are uniform modulo ``n``);
   ``j = value % n``; swap ``deck[i]`` and ``deck[j]``.
5. ``deck[0]`` is the top of the deck: the first card dealt (burns included) is
   ``deck[0]``, the next ``deck[1]``, and so on.

Pure: no I/O, no clock, no global randomness. :func:`new_server_seed` is the only
source of randomness in this module and the only function that is not pure; the game
server calls it once per hand, everything else takes the seed as an argument.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterator, Sequence
from typing import Final

from ludex.errors import FairnessError
from ludex.poker.cards import DECK_SIZE, Card

DOMAIN: Final = b"ludex.poker.shuffle.v1"
SERVER_SEED_BYTES: Final = 32
MIN_SERVER_SEED_BYTES: Final = 16
_WORD_RANGE: Final = 1 << 32


def new_server_seed() -> bytes:
    """A fresh 32-byte secret seed from the OS CSPRNG; the only impure function here."""
    return secrets.token_bytes(SERVER_SEED_BYTES)


def commitment(server_seed: bytes) -> str:
    """The hex SHA-256 of the server seed, published before the hand is dealt."""
    _check_server_seed(server_seed)
    return hashlib.sha256(server_seed).hexdigest()


def client_seed_bytes(seed: bytes | str) -> bytes:
    """A client seed as bytes: text is UTF-8 encoded, bytes are taken as they are."""
    return seed.encode("utf-8") if isinstance(seed, str) else bytes(seed)


def _length_prefixed(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def stream_prefix(client_seeds: Sequence[bytes | str], hand_id: str) -> bytes:
    """The HMAC message without its counter: domain, hand id and the sorted client seeds."""
    seeds = sorted(client_seed_bytes(s) for s in client_seeds)
    parts = [_length_prefixed(DOMAIN), _length_prefixed(hand_id.encode("utf-8"))]
    parts.append(len(seeds).to_bytes(4, "big"))
    parts.extend(_length_prefixed(s) for s in seeds)
    return b"".join(parts)


def random_words(
    server_seed: bytes, client_seeds: Sequence[bytes | str], hand_id: str
) -> Iterator[int]:
    """The endless stream of unsigned 32-bit integers the shuffle consumes."""
    _check_server_seed(server_seed)
    prefix = stream_prefix(client_seeds, hand_id)
    counter = 0
    while True:
        block = hmac.new(server_seed, prefix + counter.to_bytes(8, "big"), hashlib.sha256).digest()
        for offset in range(0, len(block), 4):
            yield int.from_bytes(block[offset : offset + 4], "big")
        counter += 1


def uniform_below(n: int, words: Iterator[int]) -> int:
    """A uniform integer in ``[0, n)`` from a stream of uniform 32-bit words, without bias.

    Values at or above the largest multiple of ``n`` not exceeding ``2**32`` are rejected
    and the next word is taken, so every residue is equally likely.
    """
    if not 1 <= n <= _WORD_RANGE:
        raise ValueError(f"n must be in 1..2**32, not {n}")
    limit = (_WORD_RANGE // n) * n
    for word in words:
        if word < limit:
            return word % n
    raise FairnessError("the random stream ended before a value could be drawn")


def shuffle(words: Iterator[int], size: int = DECK_SIZE) -> list[Card]:
    """Fisher-Yates over ``0..size-1``: i from size-1 down to 1, j uniform in [0, i]."""
    deck = list(range(size))
    for i in range(size - 1, 0, -1):
        j = uniform_below(i + 1, words)
        deck[i], deck[j] = deck[j], deck[i]
    return deck


def deck_for(server_seed: bytes, client_seeds: Sequence[bytes | str], hand_id: str) -> list[Card]:
    """The deck of a hand, top card first, derived as the module docstring specifies."""
    return shuffle(random_words(server_seed, client_seeds, hand_id))


def _check_server_seed(server_seed: bytes) -> None:
    if not isinstance(server_seed, bytes | bytearray):
        raise FairnessError(f"the server seed must be bytes, not {type(server_seed).__name__}")
    if len(server_seed) < MIN_SERVER_SEED_BYTES:
        raise FairnessError(
            f"the server seed has {len(server_seed)} bytes; at least {MIN_SERVER_SEED_BYTES} "
            "are needed so that it cannot be guessed from its commitment"
        )
