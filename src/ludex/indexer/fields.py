"""Typed, validated reads of one JSON-RPC object (a block, transaction, receipt, trace
frame, pending transaction): every error is a ChainError naming where the object sits
and the field. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ludex.errors import ChainError

QUANTITY: Final = re.compile(r"0x[0-9a-fA-F]+")
HASH: Final = re.compile(r"0x[0-9a-fA-F]{64}")
ADDRESS: Final = re.compile(r"0x[0-9a-fA-F]{40}")
DATA: Final = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


class Fields:
    """Typed reads of one JSON object; every error names where the object sits."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, Mapping):
            raise ChainError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        self.raw = raw
        self.where = where

    def fail(self, key: str, problem: str) -> ChainError:
        return ChainError(f"{self.where}: {key}: {problem}")

    def _get(self, key: str, optional: bool) -> Any:
        value = self.raw.get(key)
        if value is None and not optional:
            state = "is null" if key in self.raw else "is missing"
            raise self.fail(key, state)
        return value

    def _match(self, key: str, value: Any, pattern: re.Pattern[str], what: str) -> str:
        if not isinstance(value, str) or not pattern.fullmatch(value):
            shown = value if not isinstance(value, str) or len(value) <= 80 else value[:80] + "..."
            raise self.fail(key, f"expected {what}, got {shown!r}")
        return value

    def quantity(self, key: str) -> int:
        return int(self._match(key, self._get(key, False), QUANTITY, "a 0x-hex quantity"), 16)

    def optional_quantity(self, key: str) -> int | None:
        value = self._get(key, True)
        return None if value is None else self.quantity(key)

    def hash(self, key: str) -> str:
        return self.hash_value(key, self._get(key, False))

    def optional_hash(self, key: str) -> str | None:
        value = self._get(key, True)
        return None if value is None else self.hash(key)

    def hash_value(self, label: str, value: Any) -> str:
        return self._match(label, value, HASH, "a 32-byte 0x-hex hash").lower()

    def address(self, key: str) -> str:
        value = self._get(key, False)
        return self._match(key, value, ADDRESS, "a 20-byte 0x-hex address").lower()

    def optional_address(self, key: str) -> str | None:
        value = self._get(key, True)
        return None if value is None else self.address(key)

    def data(self, key: str) -> bytes:
        value = self._match(key, self._get(key, False), DATA, "0x-hex data of whole bytes")
        return bytes.fromhex(value[2:])

    def list(self, key: str) -> Sequence[Any]:
        value = self._get(key, False)
        if not isinstance(value, list):
            raise self.fail(key, f"expected a list, got {type(value).__name__}")
        return value

    def same(self, key: str, actual: object, expected: object, of: str) -> None:
        if actual != expected:
            raise self.fail(key, f"{actual!r} differs from the {of} ({expected!r})")
