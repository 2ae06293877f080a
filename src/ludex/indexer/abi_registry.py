"""The ABI registry: decode any log or call the indexer meets, with a cache.

An :class:`AbiRegistry` holds ABIs by name: the token standards (ERC-20, ERC-721,
ERC-1155 events and transfer functions, built in), the project's contracts (every
compiled artifact: Ludex, TestToken, ...) and ABIs a user adds from a JSON file (a
Hardhat or Foundry artifact with an ``"abi"`` key, or a bare ABI list). An ABI may be
bound to contract addresses; decoding tries the ABI bound to the log's or call's
address first, then every known event by topic 0 (or function by selector), in the
order the ABIs were added, keeping the first that decodes. Events are matched on their
indexed-parameter count too, which tells ERC-20 ``Transfer`` (2 indexed) from ERC-721
``Transfer`` (3 indexed). Overloaded functions are fine: selectors differ.

Results, including "unknown", are cached in an LRU keyed by (address, topic 0 or
selector, digest of the rest), with hit and miss counters for the metrics.

Pure: no I/O except :meth:`AbiRegistry.add_file`, which reads the file it is given.
Decoded addresses are lower-case; ``bytes`` values stay bytes (:func:`jsonable` turns
arguments into JSON-ready values).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from eth_abi.abi import decode, default_codec
from eth_abi.exceptions import DecodingError
from eth_utils.crypto import keccak

from ludex.chain.abi import canonical_type, signature
from ludex.chain.artifacts import available_artifacts, load_artifact
from ludex.errors import ChainError
from ludex.indexer.model import Log

DEFAULT_CACHE_SIZE: Final = 65_536


def _event(name: str, *inputs: tuple[str, str, bool]) -> dict[str, Any]:
    return {
        "type": "event",
        "name": name,
        "anonymous": False,
        "inputs": [{"name": n, "type": t, "indexed": i} for n, t, i in inputs],
    }


def _function(name: str, *inputs: tuple[str, str]) -> dict[str, Any]:
    return {
        "type": "function",
        "name": name,
        "inputs": [{"name": n, "type": t} for n, t in inputs],
        "outputs": [],
        "stateMutability": "nonpayable",
    }


ERC20_ABI: Final[list[dict[str, Any]]] = [
    _event(
        "Transfer", ("from", "address", True), ("to", "address", True), ("value", "uint256", False)
    ),
    _event(
        "Approval",
        ("owner", "address", True),
        ("spender", "address", True),
        ("value", "uint256", False),
    ),
    _function("transfer", ("to", "address"), ("value", "uint256")),
    _function("transferFrom", ("from", "address"), ("to", "address"), ("value", "uint256")),
    _function("approve", ("spender", "address"), ("value", "uint256")),
]
ERC721_ABI: Final[list[dict[str, Any]]] = [
    _event(
        "Transfer", ("from", "address", True), ("to", "address", True), ("tokenId", "uint256", True)
    ),
    _event(
        "Approval",
        ("owner", "address", True),
        ("approved", "address", True),
        ("tokenId", "uint256", True),
    ),
    _event(
        "ApprovalForAll",
        ("owner", "address", True),
        ("operator", "address", True),
        ("approved", "bool", False),
    ),
    _function("safeTransferFrom", ("from", "address"), ("to", "address"), ("tokenId", "uint256")),
    _function(
        "safeTransferFrom",
        ("from", "address"),
        ("to", "address"),
        ("tokenId", "uint256"),
        ("data", "bytes"),
    ),
    _function("transferFrom", ("from", "address"), ("to", "address"), ("tokenId", "uint256")),
    _function("setApprovalForAll", ("operator", "address"), ("approved", "bool")),
]
ERC1155_ABI: Final[list[dict[str, Any]]] = [
    _event(
        "TransferSingle",
        ("operator", "address", True),
        ("from", "address", True),
        ("to", "address", True),
        ("id", "uint256", False),
        ("value", "uint256", False),
    ),
    _event(
        "TransferBatch",
        ("operator", "address", True),
        ("from", "address", True),
        ("to", "address", True),
        ("ids", "uint256[]", False),
        ("values", "uint256[]", False),
    ),
    _event(
        "ApprovalForAll",
        ("account", "address", True),
        ("operator", "address", True),
        ("approved", "bool", False),
    ),
    _event("URI", ("value", "string", False), ("id", "uint256", True)),
    _function(
        "safeTransferFrom",
        ("from", "address"),
        ("to", "address"),
        ("id", "uint256"),
        ("value", "uint256"),
        ("data", "bytes"),
    ),
    _function(
        "safeBatchTransferFrom",
        ("from", "address"),
        ("to", "address"),
        ("ids", "uint256[]"),
        ("values", "uint256[]"),
        ("data", "bytes"),
    ),
]
STANDARD_ABIS: Final[dict[str, list[dict[str, Any]]]] = {
    "erc20": ERC20_ABI,
    "erc721": ERC721_ABI,
    "erc1155": ERC1155_ABI,
}


@dataclass(frozen=True, slots=True)
class DecodedLog:
    abi: str
    event: str
    signature: str
    args: dict[str, Any]
    address: str
    log_index: int


@dataclass(frozen=True, slots=True)
class DecodedCall:
    abi: str
    function: str
    signature: str
    selector: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class _Event:
    abi: str
    name: str
    signature: str
    indexed: tuple[tuple[str, str], ...]  # (name, canonical type)
    plain: tuple[tuple[str, str], ...]
    order: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Function:
    abi: str
    name: str
    signature: str
    selector: bytes
    inputs: tuple[tuple[str, str], ...]


@dataclass(slots=True)
class _Abi:
    events: dict[str, list[_Event]] = field(default_factory=dict)  # by topic 0 (0x hex)
    functions: dict[bytes, list[_Function]] = field(default_factory=dict)  # by selector


def _fail(source: str, problem: str) -> ChainError:
    return ChainError(f"ABI {source}: {problem}")


def _params(source: str, item: Mapping[str, Any], where: str) -> list[tuple[str, str, bool]]:
    inputs = item.get("inputs", [])
    if not isinstance(inputs, list):
        raise _fail(source, f"{where}: inputs is not a list")
    out = []
    for position, param in enumerate(inputs):
        if not isinstance(param, Mapping) or not isinstance(param.get("type"), str):
            raise _fail(source, f"{where}: input {position} has no type")
        try:
            kind = canonical_type(param)
        except (KeyError, TypeError):
            raise _fail(source, f"{where}: input {position} is a malformed tuple") from None
        if not default_codec.is_encodable_type(kind):
            raise _fail(source, f"{where}: input {position} has an unknown type {kind!r}")
        name = param.get("name") or f"arg{position}"
        out.append((str(name), kind, bool(param.get("indexed", False))))
    return out


def _compile(source: str, abi: Any) -> _Abi:
    """Index one ABI's events and functions; refuse anything malformed."""
    if not isinstance(abi, list):
        raise _fail(source, f"expected a list of ABI items, got {type(abi).__name__}")
    compiled = _Abi()
    for position, item in enumerate(abi):
        if not isinstance(item, Mapping):
            raise _fail(source, f"item {position} is not an object")
        kind = item.get("type", "function")
        if kind not in ("event", "function"):
            continue  # constructors, errors, fallback and receive decode nothing here
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise _fail(source, f"item {position} ({kind}) has no name")
        params = _params(source, item, f"{kind} {name}")
        text = signature({"name": name, "inputs": item.get("inputs", [])})
        if kind == "event":
            if item.get("anonymous"):
                continue  # no topic 0 to find it by
            indexed = tuple((n, t) for n, t, i in params if i)
            if len(indexed) > 3:
                raise _fail(source, f"event {name} has {len(indexed)} indexed inputs (at most 3)")
            event = _Event(
                source,
                name,
                text,
                indexed,
                tuple((n, t) for n, t, i in params if not i),
                tuple(n for n, _, _ in params),
            )
            compiled.events.setdefault("0x" + keccak(text=text).hex(), []).append(event)
        else:
            selector = keccak(text=text)[:4]
            function = _Function(source, name, text, selector, tuple((n, t) for n, t, _ in params))
            compiled.functions.setdefault(selector, []).append(function)
    return compiled


def _decode_event(event: _Event, log: Log) -> DecodedLog | None:
    if len(log.topics) != 1 + len(event.indexed):
        return None
    try:
        values = dict(
            zip(
                (n for n, _ in event.plain),
                decode([t for _, t in event.plain], log.data),
                strict=True,
            )
        )
        for (name, kind), topic in zip(event.indexed, log.topics[1:], strict=True):
            word = bytes.fromhex(topic[2:])
            if kind in {"string", "bytes"} or kind.endswith("]") or kind.startswith("("):
                values[name] = word  # the EVM stores a hash of such a value
            else:
                values[name] = decode([kind], word)[0]
    except (DecodingError, ValueError, OverflowError):
        return None
    args = {name: values[name] for name in event.order}
    return DecodedLog(event.abi, event.name, event.signature, args, log.address, log.log_index)


def _decode_function(function: _Function, data: bytes) -> DecodedCall | None:
    try:
        values = decode([t for _, t in function.inputs], data)
    except (DecodingError, ValueError, OverflowError):
        return None
    args = dict(zip((n for n, _ in function.inputs), values, strict=True))
    return DecodedCall(
        function.abi, function.name, function.signature, "0x" + function.selector.hex(), args
    )


def read_abi_file(path: Path) -> list[Any]:
    """The ABI list in a JSON file: a bare list, or an artifact object with an "abi" key."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ChainError(f"ABI file {path}: cannot read it: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ChainError(f"ABI file {path}: not valid JSON: {exc}") from None
    if isinstance(data, dict):
        if "abi" not in data:
            raise ChainError(
                f'ABI file {path}: a JSON object without an "abi" key; give a Hardhat or '
                "Foundry artifact or a bare ABI list"
            )
        data = data["abi"]
    if not isinstance(data, list):
        raise ChainError(f"ABI file {path}: the ABI is a {type(data).__name__}, not a list")
    return data


def _lower_address(address: str) -> str:
    text = address.lower()
    if len(text) != 42 or not text.startswith("0x"):
        raise ChainError(f"ABI binding: {address!r} is not a 20-byte 0x-hex address")
    try:
        bytes.fromhex(text[2:])
    except ValueError:
        raise ChainError(f"ABI binding: {address!r} is not a 20-byte 0x-hex address") from None
    return text


def jsonable(value: Any) -> Any:
    """Decoded arguments as JSON values: bytes as 0x hex, tuples as lists."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


class AbiRegistry:
    """ABIs by name, bound to addresses or not; cached decoding of logs and calls."""

    def __init__(self, *, cache_size: int = DEFAULT_CACHE_SIZE) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        self._abis: dict[str, _Abi] = {}
        self._bound: dict[str, str] = {}  # address -> ABI name
        self._cache: OrderedDict[tuple[str, str, bytes], DecodedLog | DecodedCall | None] = (
            OrderedDict()
        )
        self._cache_size = cache_size
        self.hits = 0
        self.misses = 0

    @classmethod
    def default(cls, *, cache_size: int = DEFAULT_CACHE_SIZE) -> AbiRegistry:
        """The token standards and every compiled project contract."""
        registry = cls(cache_size=cache_size)
        for name, abi in STANDARD_ABIS.items():
            registry.add(name, abi)
        for name in available_artifacts():
            registry.add(name, load_artifact(name).abi)
        return registry

    @property
    def names(self) -> list[str]:
        return list(self._abis)

    @property
    def hit_rate(self) -> float:
        """Cache hits over lookups since the start (0.0 before the first)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def add(self, name: str, abi: Sequence[Any], *, addresses: Iterable[str] = ()) -> None:
        """Add (or replace) ABI ``name``, optionally bound to ``addresses``."""
        if not name:
            raise ChainError("ABI name must not be empty")
        bound = [_lower_address(a) for a in addresses]
        self._abis[name] = _compile(name, list(abi) if not isinstance(abi, list) else abi)
        for address in bound:
            self._bound[address] = name
        self._cache.clear()  # earlier answers may change

    def add_file(
        self, path: Path, *, name: str | None = None, addresses: Iterable[str] = ()
    ) -> str:
        """Add the ABI in a JSON file (artifact or bare list); returns the name used."""
        abi = read_abi_file(path)
        chosen = name or path.stem
        try:
            self.add(chosen, abi, addresses=addresses)
        except ChainError as exc:
            raise ChainError(f"ABI file {path}: {exc}") from None
        return chosen

    def bind(self, address: str, name: str) -> None:
        if name not in self._abis:
            raise ChainError(f"ABI binding: no ABI named {name!r}; known: {self.names}")
        self._bound[_lower_address(address)] = name
        self._cache.clear()

    def bind_spec(self, binding: str) -> None:
        """Bind from ``NAME=0xADDRESS`` (the ``--abi-address`` form)."""
        abi_name, sep, address = binding.partition("=")
        if not sep:
            raise ChainError(
                f"ABI binding {binding!r}: expected NAME=0xADDRESS "
                f"(for example erc20=0x5FbDB2315678afecb367f032d93F642f64180aa3)"
            )
        self.bind(address.strip(), abi_name.strip())

    @classmethod
    def from_options(cls, files: Iterable[str | Path], bindings: Iterable[str]) -> AbiRegistry:
        """The default registry plus ABI files and ``NAME=0xADDRESS`` bindings."""
        registry = cls.default()
        for path in files:
            registry.add_file(Path(path))
        for binding in bindings:
            registry.bind_spec(binding)
        return registry

    def _candidates(self, address: str | None) -> list[_Abi]:
        first = self._bound.get(address) if address else None
        ordered = [self._abis[first]] if first else []
        return ordered + [abi for n, abi in self._abis.items() if n != first]

    def _cached(self, key: tuple[str, str, bytes]) -> tuple[bool, DecodedLog | DecodedCall | None]:
        if key in self._cache:
            self._cache.move_to_end(key)
            self.hits += 1
            return True, self._cache[key]
        self.misses += 1
        return False, None

    def _remember(
        self, key: tuple[str, str, bytes], value: DecodedLog | DecodedCall | None
    ) -> None:
        if self._cache_size == 0:
            return
        self._cache[key] = value
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def decode_log(self, log: Log) -> DecodedLog | None:
        """The event of ``log`` as some known ABI declares it (None if none does)."""
        if not log.topics:
            return None
        body = hashlib.blake2b(digest_size=16)
        for topic in log.topics[1:]:
            body.update(bytes.fromhex(topic[2:]))
        body.update(b"|")
        body.update(log.data)
        key = (log.address, log.topics[0], body.digest())
        found, value = self._cached(key)
        if found:
            return _relocated(value, log) if isinstance(value, DecodedLog) else None
        result: DecodedLog | None = None
        for abi in self._candidates(log.address):
            for event in abi.events.get(log.topics[0], ()):
                result = _decode_event(event, log)
                if result is not None:
                    break
            if result is not None:
                break
        self._remember(key, result)
        return result

    def decode_call(self, to: str | None, data: bytes) -> DecodedCall | None:
        """The function a call's input selects, as some known ABI declares it.

        None for a contract creation (``to`` None: the input is init code, not a call).
        """
        if to is None or len(data) < 4:
            return None
        address = to.lower()
        key = (address, "0x" + data[:4].hex(), hashlib.blake2b(data[4:], digest_size=16).digest())
        found, value = self._cached(key)
        if found:
            return value if isinstance(value, DecodedCall) else None
        result: DecodedCall | None = None
        for abi in self._candidates(address):
            for function in abi.functions.get(data[:4], ()):
                result = _decode_function(function, data[4:])
                if result is not None:
                    break
            if result is not None:
                break
        self._remember(key, result)
        return result


def _relocated(decoded: DecodedLog, log: Log) -> DecodedLog:
    """A cached decoding for an identical log elsewhere: same event, this log's index."""
    if decoded.log_index == log.log_index:
        return decoded
    return DecodedLog(
        decoded.abi, decoded.event, decoded.signature, decoded.args, log.address, log.log_index
    )
