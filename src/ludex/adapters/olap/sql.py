"""The ClickHouse value codec both AnalyticsStore backends share.

chDB (in-process) and a ClickHouse server (through clickhouse-connect) run the
same SQL, and one module turns Python values into what the engine reads and its
answers back into Python values, so both backends agree by construction:

* :func:`render_params` renders ``{name:Type}`` parameter values in the
  *escaped* text form ClickHouse parses server-side (chDB's ``params=`` and the
  HTTP ``param_<name>`` fields take the same form). Values are never spliced
  into SQL; the engine parses them with the declared type.
* :func:`row_values` takes the values of each row in column order (a missing
  column is a ``ValueError``); :func:`encode_rows` serializes them for
  ``INSERT ... FORMAT JSONCompactEachRow`` with msgspec (integers of any size
  stay exact) and :func:`native_row_value` prepares them for clickhouse-connect.
* :func:`decode_result` parses ``FORMAT JSONCompactEachRowWithNamesAndTypes``
  (chDB) and :func:`normalize_native_rows` adjusts clickhouse-connect's Native
  results; either way every value comes out by its declared column type:

  ====================================  ==========================================
  ClickHouse type                       Python value
  ====================================  ==========================================
  (U)Int8 … (U)Int256                   ``int`` (64-bit and wider arrive quoted)
  Float32/Float64                       ``float`` (``nan``/``inf`` included)
  Decimal(P, S)                         ``decimal.Decimal`` (exact)
  Bool                                  ``bool``
  String, FixedString, Enum             ``str``
  DateTime, DateTime64                  aware ``datetime`` (the column's zone, else UTC)
  Date, Date32                          ``datetime.date``
  UUID                                  ``uuid.UUID``
  IPv4, IPv6                            ``ipaddress`` objects
  Array(T) / Tuple(...) / Map(K, V)     ``list`` / ``tuple`` / ``dict``
  Nullable(T)                           ``None`` or T's value
  ====================================  ==========================================

  DateTime64 keeps microseconds; nanosecond digits beyond that are truncated.
  Naive datetimes are never returned, and datetimes passed in (rows or
  parameters) that are naive are taken as UTC. Float32 values are the shortest
  decimal that reads back as the same Float32 (``0.1``, not
  ``0.10000000149011612``), and decimals carry no trailing fractional zeros,
  as in ClickHouse's text output. FixedString keeps its trailing NUL padding.

This module must never do I/O and never build SQL from values.
"""

from __future__ import annotations

import ipaddress
import math
import re
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final
from zoneinfo import ZoneInfo

import msgspec

# Output settings applied to every session (chDB ``SET``, HTTP URL parameters) so
# the JSON the engine writes is lossless and the same on both backends.
OUTPUT_SETTINGS: Final[Mapping[str, str]] = {
    "output_format_json_quote_64bit_integers": "1",
    "output_format_json_quote_decimals": "1",
    "output_format_json_quote_denormals": "1",
    "date_time_output_format": "simple",
    "session_timezone": "UTC",
}

RESULT_FORMAT: Final = "JSONCompactEachRowWithNamesAndTypes"
INSERT_FORMAT: Final = "JSONCompactEachRow"

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --- identifiers ---------------------------------------------------------------


def quote_identifier(name: str) -> str:
    """A back-quoted identifier; only plain names (letters, digits, ``_``) are accepted."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a plain identifier (letters, digits and _ only)")
    return f"`{name}`"


def quote_table(table: str) -> str:
    """``table`` or ``database.table``, each part quoted by :func:`quote_identifier`."""
    return ".".join(quote_identifier(part) for part in table.split("."))


def insert_statement(table: str, columns: Sequence[str]) -> str:
    """``INSERT INTO t (c1, c2) FORMAT JSONCompactEachRow``; the data follows separately."""
    if not columns:
        raise ValueError("an insert needs at least one column")
    cols = ", ".join(quote_identifier(c) for c in columns)
    return f"INSERT INTO {quote_table(table)} ({cols}) FORMAT {INSERT_FORMAT}"


# --- parameters ----------------------------------------------------------------

_TOP_LEVEL_ESCAPES: Final = str.maketrans(
    {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0", "'": "\\'"}
)


def _utc_text(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _literal(value: Any) -> str:
    """A value inside an Array/Tuple/Map parameter: a ClickHouse SQL literal."""
    if value is None:
        return "NULL"
    if isinstance(value, str):
        return "'" + value.translate(_TOP_LEVEL_ESCAPES) + "'"
    if isinstance(value, datetime):
        return f"'{_utc_text(value)}'"
    if isinstance(value, date | uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return f"'{value}'"
    return _scalar(value)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, list | tuple):
        inner = ", ".join(_literal(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner})"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot bind a {type(value).__name__} as a ClickHouse query parameter")


def render_param(value: Any) -> str:
    """One parameter value in ClickHouse's escaped text form (the ``{name:Type}`` input)."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_TOP_LEVEL_ESCAPES)
    if isinstance(value, datetime):
        return _utc_text(value)
    if isinstance(value, date | uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    return _scalar(value)


def render_params(parameters: Mapping[str, Any] | None) -> dict[str, str]:
    """Every parameter rendered by :func:`render_param`; names must be plain identifiers."""
    if not parameters:
        return {}
    rendered = {}
    for name, value in parameters.items():
        if not _IDENTIFIER.match(name):
            raise ValueError(f"parameter name {name!r} is not a plain identifier")
        rendered[name] = render_param(value)
    return rendered


# --- rows in -------------------------------------------------------------------


def _row_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return _utc_text(value)
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, list | tuple):
        return [_row_value(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _row_value(v) for k, v in value.items()}
    return value


_row_encoder = msgspec.json.Encoder(decimal_format="number")


def row_values(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    convert: Callable[[Any], Any] | None = None,
) -> list[list[Any]]:
    """The values of every row in ``columns`` order, each passed through ``convert``.

    A row without one of the columns raises ``ValueError`` naming the row and
    column: defaults are for columns left out of ``columns``, not for gaps.
    """
    table = []
    for index, row in enumerate(rows):
        try:
            values = [row[c] for c in columns]
        except KeyError as exc:
            raise ValueError(f"row {index} has no value for column {exc.args[0]!r}") from None
        table.append(values if convert is None else [convert(v) for v in values])
    return table


def encode_rows(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> bytes:
    """Rows as ``JSONCompactEachRow`` lines, values in ``columns`` order (:func:`row_values`)."""
    lines = [_row_encoder.encode(values) for values in row_values(rows, columns, _row_value)]
    return b"\n".join(lines) + b"\n"


def native_row_value(value: Any) -> Any:
    """A row value for clickhouse-connect's Native insert: naive datetimes become UTC.

    clickhouse-connect would read a naive datetime as local time; everything
    else it takes as is (ints of any size, Decimal, UUID, ipaddress, containers).
    """
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, list | tuple):
        return type(value)(native_row_value(v) for v in value)
    if isinstance(value, Mapping):
        return {k: native_row_value(v) for k, v in value.items()}
    return value


# --- results out ---------------------------------------------------------------

Converter = Callable[[Any], Any]

_INT_TYPES: Final = frozenset(
    f"{sign}Int{bits}" for sign in ("", "U") for bits in (8, 16, 32, 64, 128, 256)
)
_FLOAT_TYPES: Final = frozenset({"Float32", "Float64", "BFloat16"})
_DECIMAL_TYPES: Final = frozenset({"Decimal", "Decimal32", "Decimal64", "Decimal128", "Decimal256"})


def _split_type(type_name: str) -> tuple[str, list[str]]:
    """``Map(String, Array(UInt8))`` → ``("Map", ["String", "Array(UInt8)"])``."""
    type_name = type_name.strip()
    open_at = type_name.find("(")
    if open_at < 0 or not type_name.endswith(")"):
        return type_name, []
    name, body = type_name[:open_at], type_name[open_at + 1 : -1]
    args: list[str] = []
    depth, start, quote = 0, 0, ""
    for i, ch in enumerate(body):
        if quote:
            if ch == "\\":
                continue
            if ch == quote and body[i - 1] != "\\":
                quote = ""
        elif ch in "'`\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            args.append(body[start:i].strip())
            start = i + 1
    args.append(body[start:].strip())
    return name, args


def _zone(args: Sequence[str]) -> tzinfo:
    for arg in args:
        if arg.startswith("'") and arg.endswith("'"):
            name = arg[1:-1]
            return UTC if name in {"UTC", "Etc/UTC"} else ZoneInfo(name)
    return UTC


def _datetime_converter(zone: tzinfo) -> Converter:
    def convert(value: Any) -> datetime:
        text = str(value)
        head, dot, fraction = text.partition(".")
        if dot:
            text = f"{head}.{fraction[:6].ljust(6, '0')}"
        return datetime.fromisoformat(text).replace(tzinfo=zone)

    return convert


def _nullable(inner: Converter) -> Converter:
    return lambda value: None if value is None else inner(value)


def _array(inner: Converter) -> Converter:
    return lambda value: [inner(v) for v in value]


def _tuple(parts: Sequence[Converter], names: Sequence[str] | None) -> Converter:
    def convert(value: Any) -> tuple[Any, ...]:
        items = [value[n] for n in names] if names and isinstance(value, dict) else value
        return tuple(conv(v) for conv, v in zip(parts, items, strict=True))

    return convert


def _map(key: Converter, val: Converter) -> Converter:
    return lambda value: {key(k): val(v) for k, v in value.items()}


def _tuple_element(arg: str) -> tuple[str | None, str]:
    """One ``Tuple`` element as (name or None, type): ``x Int8``, ```a b` Int8`` or ``Int8``."""
    if arg.startswith("`"):
        end = arg.index("`", 1)
        return arg[1:end], arg[end + 1 :].strip()
    head = arg.split("(", 1)[0].strip()
    if " " in head:
        name, type_name = arg.split(" ", 1)
        return name, type_name.strip()
    return None, arg


def _identity(value: Any) -> Any:
    return value


def _float(value: Any) -> float:
    return float(value)


@lru_cache(maxsize=512)
def converter_for(type_name: str) -> Converter:
    """The function turning one JSON value of ``type_name`` into its Python value."""
    name, args = _split_type(type_name)
    if name == "LowCardinality":
        return converter_for(args[0])
    if name == "Nullable":
        return _nullable(converter_for(args[0]))
    if name in _INT_TYPES:
        return int
    if name in _FLOAT_TYPES:
        return _float
    if name in _DECIMAL_TYPES:
        return lambda value: Decimal(str(value))
    if name == "Bool":
        return bool
    if name in ("DateTime", "DateTime64"):
        return _datetime_converter(_zone(args))
    if name in ("Date", "Date32"):
        return lambda value: date.fromisoformat(value)
    if name == "UUID":
        return lambda value: uuid.UUID(value)
    if name in ("IPv4", "IPv6"):
        return lambda value: ipaddress.ip_address(value)
    if name == "Array":
        return _array(converter_for(args[0]))
    if name == "Map":
        return _map(converter_for(args[0]), converter_for(args[1]))
    if name == "Tuple":
        elements = [_tuple_element(a) for a in args]
        names = [n for n, _ in elements if n is not None]
        return _tuple(
            [converter_for(t) for _, t in elements], names if len(names) == len(args) else None
        )
    return _identity


_lines_decoder = msgspec.json.Decoder(list[list[Any]])


def decode_result(body: bytes) -> list[dict[str, Any]]:
    """Rows of a ``JSONCompactEachRowWithNamesAndTypes`` body, values converted by type."""
    lines = [line for line in body.split(b"\n") if line.strip()]
    if len(lines) < 2:
        return []
    # JSON escapes newlines inside strings, so raw newlines only separate rows.
    table = _lines_decoder.decode(b"[" + b",".join(lines) + b"]")
    names = [str(n) for n in table[0]]
    converters = [converter_for(str(t)) for t in table[1]]
    return [
        {name: conv(value) for name, conv, value in zip(names, converters, row, strict=True)}
        for row in table[2:]
    ]


# --- results from clickhouse-connect ---------------------------------------------
#
# clickhouse-connect already returns the table's Python types (queried with
# tz_mode="aware", query_tz=UTC and tuples as tuples); these converters fix the
# few values whose form differs from what chDB's text output gives. A type that
# needs none maps to None, so most columns are passed through untouched.


def _shortest_float32(value: float) -> float:
    """The shortest decimal that reads back as the same Float32, as ClickHouse prints it."""
    if math.isnan(value) or math.isinf(value):
        return value
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if struct.unpack("<f", struct.pack("<f", candidate))[0] == value:
                return candidate
        except OverflowError:  # rounded past Float32's largest value
            continue
    return value


def _trimmed_decimal(value: Decimal) -> Decimal:
    """``value`` without trailing fractional zeros (``1.50`` → ``1.5``, ``100.00`` → ``100``)."""
    sign, digits, exponent = value.as_tuple()
    if not isinstance(exponent, int) or exponent >= 0:
        return value
    keep = len(digits)
    while exponent < 0 and keep and digits[keep - 1] == 0:
        keep -= 1
        exponent += 1
    if not keep:
        return Decimal(0)
    return Decimal((sign, digits[:keep], exponent))


def _fixed_string(value: Any) -> Any:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


@lru_cache(maxsize=512)
def native_converter_for(type_name: str) -> Converter | None:
    """What turns a clickhouse-connect value of ``type_name`` into chDB's; None: nothing."""
    name, args = _split_type(type_name)
    if name == "LowCardinality":
        return native_converter_for(args[0])
    if name == "Nullable":
        inner = native_converter_for(args[0])
        return None if inner is None else _nullable(inner)
    if name == "Float32":
        return _shortest_float32
    if name in _DECIMAL_TYPES:
        return _trimmed_decimal
    if name == "FixedString":
        return _fixed_string
    if name == "Array":
        element = native_converter_for(args[0])
        return None if element is None else _array(element)
    if name == "Map":
        key, val = native_converter_for(args[0]), native_converter_for(args[1])
        if key is None and val is None:
            return None
        return _map(key or _identity, val or _identity)
    if name == "Tuple":
        parts = [native_converter_for(_tuple_element(a)[1]) for a in args]
        if all(p is None for p in parts):
            return None
        return _tuple([p or _identity for p in parts], None)
    return None


def normalize_native_rows(
    names: Sequence[str], type_names: Sequence[str], rows: Sequence[Sequence[Any]]
) -> list[dict[str, Any]]:
    """clickhouse-connect result rows as dictionaries, values as :func:`decode_result` has them."""
    converters = [native_converter_for(t) for t in type_names]
    if all(c is None for c in converters):
        return [dict(zip(names, row, strict=True)) for row in rows]
    convert = [c or _identity for c in converters]
    return [
        {name: conv(value) for name, conv, value in zip(names, convert, row, strict=True)}
        for row in rows
    ]
