"""The ludex exception tree.

Every error ludex raises on purpose derives from :class:`LudexError`; errors from
third-party libraries are translated at the adapter that meets them, so callers
never need to import a driver to catch a failure::

    LudexError
    ├── ConfigError            a setting is missing or malformed (raised at start-up)
    ├── EventError             an event cannot be accepted
    │   ├── UnknownEventType   the type is not in the catalog
    │   └── MalformedEvent     the envelope or payload does not match its schema
    ├── BackendError           a backend failed or cannot be reached
    │   └── BackendUnavailable the backend is down or refused the connection
    ├── KeyValueError          KeyValue port misuse (bad lease, bad arguments)
    │   └── LockLost           a lease expired or was taken by another owner
    ├── StoreError             operational store failure (migration, integrity)
    ├── ChainError             a chain node failed or answered malformed data
    └── PokerError             the poker domain refused something
        ├── CardError          a card or card string is malformed
        ├── IllegalAction      an action is not legal now (the message says why)
        ├── HandHistoryError   a PHH hand history is malformed or cannot be replayed
        └── FairnessError      a shuffle record does not verify (the message says where)

Messages say what was wrong and what to do; they never contain secrets.
"""

from __future__ import annotations


class LudexError(Exception):
    """Root of every error ludex raises on purpose."""


class ConfigError(LudexError):
    """A setting is missing or malformed; the message names the field."""


class EventError(LudexError):
    """An event could not be accepted."""


class UnknownEventType(EventError):
    """The event type is not in the catalog."""


class MalformedEvent(EventError):
    """The envelope or payload does not match its schema."""


class BackendError(LudexError):
    """A backend failed while doing its job."""


class BackendUnavailable(BackendError):
    """A backend cannot be reached."""


class KeyValueError(LudexError):
    """The KeyValue port was used wrongly."""


class LockLost(KeyValueError):
    """The lease expired or another owner holds the lock now."""


class StoreError(LudexError):
    """The operational store failed (migration, integrity, connection)."""


class ChainError(LudexError):
    """A chain node answered with an error or something malformed."""


class PokerError(LudexError):
    """The poker domain refused something."""


class CardError(PokerError):
    """A card or a card string is malformed."""


class IllegalAction(PokerError):
    """An action is not legal in the current state; the message says why."""


class HandHistoryError(PokerError):
    """A PHH hand history is malformed or cannot be replayed."""


class FairnessError(PokerError):
    """A shuffle record does not verify; the message says which card or link differs."""
