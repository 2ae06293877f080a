"""A contract's ABI as codecs: calls, results, events and custom errors (eth-abi).

Pure: no I/O. :class:`ContractAbi` turns the ABI JSON of a compiled contract into
encoders and decoders. Every decoder refuses what does not match (unknown topic,
short data, an error selector the ABI does not declare is reported by its selector
rather than guessed). Tuples are returned as tuples, in ABI order; named arguments
of events and errors as dicts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from eth_abi.abi import decode, encode
from eth_abi.exceptions import DecodingError, EncodingError
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ludex.errors import ChainError

_ERROR_STRING: Final = keccak(text="Error(string)")[:4]
_PANIC: Final = keccak(text="Panic(uint256)")[:4]


def canonical_type(param: Mapping[str, Any]) -> str:
    """The canonical type of an ABI parameter, with tuples spelled out."""
    kind = str(param["type"])
    if kind.startswith("tuple"):
        inner = ",".join(canonical_type(c) for c in param.get("components", []))
        return f"({inner}){kind[len('tuple') :]}"
    return kind


def signature(item: Mapping[str, Any]) -> str:
    """``name(type,...)`` of a function, event or error."""
    return f"{item['name']}({','.join(canonical_type(p) for p in item.get('inputs', []))})"


def _types(params: Sequence[Mapping[str, Any]]) -> list[str]:
    return [canonical_type(p) for p in params]


def _checksummed(param: Mapping[str, Any], value: Any) -> Any:
    """A decoded value with its addresses in checksum form (eth-abi gives lower case)."""
    kind = str(param["type"])
    if kind.endswith("]"):
        inner = dict(param, type=kind[: kind.rindex("[")])
        return [_checksummed(inner, v) for v in value]
    if kind == "address":
        return to_checksum_address(value)
    if kind == "tuple":
        return tuple(_checksummed(c, v) for c, v in zip(param["components"], value, strict=True))
    return value


def _decode(params: Sequence[Mapping[str, Any]], data: bytes) -> list[Any]:
    return [_checksummed(p, v) for p, v in zip(params, decode(_types(params), data), strict=True)]


@dataclass(frozen=True, slots=True)
class DecodedEvent:
    name: str
    args: dict[str, Any]
    address: str
    log_index: int | None = None


class ContractAbi:
    """Encoders and decoders for one contract's ABI."""

    def __init__(self, abi: Sequence[Mapping[str, Any]]) -> None:
        self._functions: dict[str, Mapping[str, Any]] = {}
        self._events: dict[bytes, Mapping[str, Any]] = {}
        self._errors: dict[bytes, Mapping[str, Any]] = {}
        self._constructor: Mapping[str, Any] | None = None
        for item in abi:
            kind = item.get("type")
            if kind == "function":
                if item["name"] in self._functions:
                    raise ChainError(f"ABI: overloaded function {item['name']!r} is not supported")
                self._functions[item["name"]] = item
            elif kind == "event":
                self._events[keccak(text=signature(item))] = item
            elif kind == "error":
                self._errors[keccak(text=signature(item))[:4]] = item
            elif kind == "constructor":
                self._constructor = item

    def _function(self, name: str) -> Mapping[str, Any]:
        try:
            return self._functions[name]
        except KeyError:
            raise ChainError(
                f"ABI has no function {name!r}; it has {sorted(self._functions)}"
            ) from None

    def encode_call(self, name: str, args: Sequence[Any]) -> bytes:
        item = self._function(name)
        try:
            return keccak(text=signature(item))[:4] + encode(_types(item["inputs"]), list(args))
        except (EncodingError, TypeError, ValueError) as exc:
            raise ChainError(f"{name}: arguments do not match {signature(item)}: {exc}") from None

    def encode_constructor(self, args: Sequence[Any]) -> bytes:
        inputs = self._constructor["inputs"] if self._constructor else []
        try:
            return encode(_types(inputs), list(args))
        except (EncodingError, TypeError, ValueError) as exc:
            raise ChainError(f"constructor: arguments do not match: {exc}") from None

    def decode_result(self, name: str, data: bytes) -> tuple[Any, ...]:
        item = self._function(name)
        try:
            return tuple(_decode(item["outputs"], data))
        except (DecodingError, ValueError) as exc:
            raise ChainError(f"{name}: cannot decode the result: {exc}") from None

    def decode_log(
        self, address: str, topics: Sequence[bytes], data: bytes, log_index: int | None = None
    ) -> DecodedEvent | None:
        """The event of a log this ABI declares (None for a log it does not know)."""
        if not topics or (item := self._events.get(topics[0])) is None:
            return None
        indexed = [p for p in item["inputs"] if p.get("indexed")]
        plain = [p for p in item["inputs"] if not p.get("indexed")]
        if len(topics) != 1 + len(indexed):
            raise ChainError(
                f"log of {item['name']}: {len(topics)} topics, expected {1 + len(indexed)}"
            )
        try:
            values = dict(zip((p["name"] for p in plain), _decode(plain, data), strict=True))
            for param, topic in zip(indexed, topics[1:], strict=True):
                kind = canonical_type(param)
                if kind in {"string", "bytes"} or kind.endswith("]") or kind.startswith("("):
                    values[param["name"]] = topic  # a hash of the value, as the EVM stores it
                else:
                    values[param["name"]] = _decode([param], topic)[0]
        except (DecodingError, ValueError) as exc:
            raise ChainError(f"log of {item['name']}: cannot decode: {exc}") from None
        ordered = {p["name"]: values[p["name"]] for p in item["inputs"]}
        return DecodedEvent(item["name"], ordered, address, log_index)

    def decode_error(self, data: bytes) -> tuple[str, dict[str, Any]]:
        """A revert's return data as (error name, arguments)."""
        if len(data) < 4:
            return ("EmptyRevert", {})
        head, body = data[:4], data[4:]
        try:
            if head == _ERROR_STRING:
                return ("Error", {"message": decode(["string"], body)[0]})
            if head == _PANIC:
                return ("Panic", {"code": decode(["uint256"], body)[0]})
            item = self._errors.get(head)
            if item is None:
                return ("UnknownError", {"selector": "0x" + head.hex(), "data": "0x" + body.hex()})
            values = _decode(item["inputs"], body)
        except (DecodingError, ValueError) as exc:
            raise ChainError(f"cannot decode revert data 0x{data.hex()}: {exc}") from None
        return (item["name"], dict(zip((p["name"] for p in item["inputs"]), values, strict=True)))
