"""ClickHouse's Native format for the client revision a request names (`client_protocol_version`).

chDB writes Native as ClickHouse writes it for revision 0: per block, the number of columns and
of rows, then each column's name, type and data. A client that names a revision gets more, and
reads it without looking at what it asked for (clickhouse-go, the Grafana plugin's driver, asks
for 54460; clickhouse-connect for 54405): above 0, each block starts with its block info (field
1, `is_overflows`: 0; field 2, `bucket_num`: -1; then 0, the end); from 54454 on, each column's
type is followed by one byte saying whether it has a custom serialization (0: none, the dense
data follows, which is all chDB writes at revision 0). The data itself is the same at every
revision, so this rewrites the framing and copies the data.

The framing cannot be found without walking the data, and Native has no lengths: each column's
data is skipped by its type (`_skip`), which is why this is written here by hand against the
format's definition (ClickHouse's NativeWriter and each type's binary bulk serialization). A type
it does not know (Dynamic, Variant, JSON, aggregate states) is refused with an error rather than
sent in a frame the client would misread.
"""

import re
import struct
from dataclasses import dataclass

from spendpipe.store.sql_endpoint.errors import ClickhouseError

NATIVE = "Native"
BLOCK_INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"
WITH_BLOCK_INFO = 1
WITH_CUSTOM_SERIALIZATION = 54454

_FIXED = {
    **dict.fromkeys(("UInt8", "Int8", "Bool", "Enum8"), 1),
    **dict.fromkeys(("UInt16", "Int16", "Date", "Enum16", "BFloat16"), 2),
    **dict.fromkeys(("UInt32", "Int32", "Float32", "DateTime", "Date32", "IPv4", "Decimal32", "Time"), 4),
    **dict.fromkeys(("UInt64", "Int64", "Float64", "DateTime64", "Decimal64", "Time64", "Interval"), 8),
    **dict.fromkeys(("UInt128", "Int128", "UUID", "IPv6", "Decimal128"), 16),
    **dict.fromkeys(("UInt256", "Int256", "Decimal256"), 32),
    "Nothing": 1,
}
"""Bytes per row of the types whose values all have one width (parameters do not change it)."""
_LC_INDEX_BYTES = (1, 2, 4, 8)
_LC_ADDITIONAL_KEYS = 1 << 9
_NAMED_ELEMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s+(?=[A-Z])")


class UnsupportedTypeError(ClickhouseError):
    pass


@dataclass(frozen=True)
class _Type:
    name: str
    args: tuple[str, ...]


def for_revision(native: bytes, revision: int) -> bytes:
    """chDB's revision-0 Native, framed as ClickHouse frames it for a client of `revision`."""
    if revision < WITH_BLOCK_INFO:
        return native
    reader = _Reader(native)
    out = bytearray()
    while not reader.done():
        out += BLOCK_INFO
        start = reader.pos
        columns, rows = reader.varint(), reader.varint()
        out += native[start : reader.pos]
        for _ in range(columns):
            start = reader.pos
            reader.string()
            type_name = reader.string().decode()
            out += native[start : reader.pos]
            if revision >= WITH_CUSTOM_SERIALIZATION:
                out.append(0)
            start = reader.pos
            if rows:
                kind = _parse(type_name)
                _skip_prefix(reader, kind)
                _skip(reader, kind, rows)
            out += native[start : reader.pos]
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def done(self) -> bool:
        return self.pos >= len(self.data)

    def take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise ClickhouseError(1001, "STD_EXCEPTION", "the engine's Native output ended inside a value")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def varint(self) -> int:
        value = shift = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value
            shift += 7

    def string(self) -> bytes:
        return self.take(self.varint())

    def uint64(self) -> int:
        return int(struct.unpack("<Q", self.take(8))[0])


def _parse(text: str) -> _Type:
    text = text.strip()
    name, paren, rest = text.partition("(")
    if not paren:
        return _Type(name, ())
    if not rest.endswith(")"):
        raise UnsupportedTypeError(50, "UNKNOWN_TYPE", f"cannot read the type {text!r}")
    return _Type(name.strip(), tuple(_split(rest[:-1])))


def _split(text: str) -> list[str]:
    """Top-level comma-separated arguments (quotes and parentheses respected)."""
    parts, depth, quote, start = [], 0, "", 0
    for n, char in enumerate(text):
        if quote:
            quote = "" if char == quote and text[n - 1] != "\\" else quote
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(text[start:n].strip())
            start = n + 1
    parts.append(text[start:].strip())
    return parts


def _element(text: str) -> _Type:
    """A tuple element's type, without its name (`a String` or `String`)."""
    return _parse(_NAMED_ELEMENT.sub("", text, count=1))


def _decimal_width(kind: _Type) -> int:
    precision = int(kind.args[0])
    return 4 if precision <= 9 else 8 if precision <= 18 else 16 if precision <= 38 else 32


def _children(kind: _Type) -> list[_Type]:
    if kind.name in ("Nullable", "Array", "LowCardinality", "SimpleAggregateFunction"):
        return [_parse(kind.args[-1])]
    if kind.name == "Tuple":
        return [_element(arg) for arg in kind.args]
    if kind.name == "Map":
        return [_parse(arg) for arg in kind.args]
    return []


def _skip_prefix(reader: _Reader, kind: _Type) -> None:
    """The state a column writes before its data: a LowCardinality's keys version, nested ones'."""
    if kind.name == "LowCardinality":
        reader.take(8)
        return
    for child in _children(kind):
        _skip_prefix(reader, child)


def _skip(reader: _Reader, kind: _Type, rows: int) -> None:
    name = kind.name
    if name == "Decimal":
        reader.take(rows * _decimal_width(kind))
    elif name in _FIXED:
        reader.take(rows * _FIXED[name])
    elif name == "String":
        for _ in range(rows):
            reader.string()
    elif name == "FixedString":
        reader.take(rows * int(kind.args[0]))
    elif not _skip_nested(reader, kind, rows):
        raise UnsupportedTypeError(
            48, "NOT_IMPLEMENTED", f"the SQL endpoint cannot send {name} columns in Native to this client"
        )


def _skip_nested(reader: _Reader, kind: _Type, rows: int) -> bool:
    """The types built of others; False for a type this does not know."""
    if kind.name == "Nullable":
        reader.take(rows)  # the null map
        _skip(reader, _parse(kind.args[0]), rows)
    elif kind.name == "SimpleAggregateFunction":
        _skip(reader, _parse(kind.args[-1]), rows)
    elif kind.name in ("Array", "Map"):
        offsets = [reader.uint64() for _ in range(rows)]
        for child in _children(kind):
            _skip(reader, child, offsets[-1])
    elif kind.name == "Tuple":
        for child in _children(kind):
            _skip(reader, child, rows)
    elif kind.name == "LowCardinality":
        _skip_low_cardinality(reader, _parse(kind.args[0]), rows)
    else:
        return False
    return True


def _skip_low_cardinality(reader: _Reader, inner: _Type, rows: int) -> None:
    """Granules of (index type, the keys they add, row count, one index per row) until `rows`."""
    keys = _parse(inner.args[0]) if inner.name == "Nullable" else inner  # the dictionary holds no NULL
    while rows > 0:
        flags = reader.uint64()
        if flags & _LC_ADDITIONAL_KEYS:
            _skip(reader, keys, reader.uint64())
        count = reader.uint64()
        reader.take(count * _LC_INDEX_BYTES[flags & 0xFF])
        rows -= count
