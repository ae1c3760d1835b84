"""How a listing leaves the CLI: a Rich table for people, JSON or CSV for tools (`--format`).

Tables go through `render` (every value `plain()`). JSON and CSV carry the values themselves, as
stored, for a program to read back exactly: money as a decimal string (`"0.000125"`, never a
float), times in ISO 8601, a missing value as null (JSON) or an empty field (CSV). JSON is
written ASCII-only, so a control character or a bidirectional override in a value reaches the
terminal as a `\\u` escape, never raw; CSV is quoted as RFC 4180 says and otherwise raw, except
that text a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or CR first) is given a
leading `'`: CSV is what analysts open in spreadsheets, and JSON carries every value exactly.

An empty listing still prints its empty document (`[]`, or the CSV header) on stdout, and says
so in words on stderr; the exit code is 0, since nothing failed.
"""

import csv
import io
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from spendpipe.admin.render import console, plain


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"
    CSV = "csv"


FormatOption = Annotated[
    OutputFormat,
    typer.Option("--format", help="table for people; json or csv for tools (money as exact decimal strings)"),
]


def money_text(value: Decimal) -> str:
    """A decimal as plain digits, never rounded: trailing zeros after the point dropped."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def json_value(value: Any) -> Any:
    """A value as JSON carries it exactly: decimals and non-finite floats as strings."""
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v) for v in value]
    return _scalar(value)


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal):
        return money_text(value) if value.is_finite() else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a CSV cell as a formula (OWASP, "CSV injection")."""
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
"""A number written as text (money read from a record's JSON, `-0.25`): a figure, not a formula,
so it keeps its sign."""


def csv_field(value: Any) -> str:
    """A value as one CSV field: nested values as their JSON. Text that a spreadsheet would run
    as a formula gets a leading `'` (read as "this is text"): an end customer named
    `=HYPERLINK(...)` must not become a live link in the sheet an analyst opens. Numbers, also
    written as text, keep their sign; a lone surrogate, which no UTF-8 stream can carry, is written `\\ud800`."""
    converted = json_value(value)
    match converted:
        case None:
            return ""
        case bool():
            return "true" if converted else "false"
        case str() if isinstance(value, str | bytes):
            text = converted.encode("utf-8", errors="backslashreplace").decode("utf-8")
            return "'" + text if text.startswith(FORMULA_LEADS) and not _NUMBER.match(text) else text
        case str():
            return converted
        case list() | dict():
            return json.dumps(converted, ensure_ascii=False, separators=(",", ":"))
    return str(converted)


def json_text(documents: Sequence[Mapping[str, Any]]) -> str:
    return json.dumps([json_value(d) for d in documents], indent=2, ensure_ascii=True) + "\n"


def csv_text(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180; a bare \r in a value is then quoted too
    writer.writerow(columns)
    writer.writerows([csv_field(cell) for cell in row] for row in rows)
    return buffer.getvalue()


def say_empty(text: str) -> None:
    """An empty result, in words, on stderr: stdout stays a valid (empty) document."""
    console(stderr=True).print(plain(text))


def emit(
    fmt: OutputFormat,
    *,
    table: RenderableType,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    documents: Sequence[Mapping[str, Any]] | None = None,
    empty: str,
) -> None:
    """Print one listing in `fmt`: `table` for people, `columns` and `rows` as CSV, and as JSON
    `documents` (default: one object per row, by column name). With no rows, `empty` is said."""
    if fmt is OutputFormat.JSON:
        objects = [dict(zip(columns, row, strict=True)) for row in rows] if documents is None else documents
        sys.stdout.write(json_text(objects))
    elif fmt is OutputFormat.CSV:
        sys.stdout.write(csv_text(columns, rows))
    elif rows:
        console().print(table)
    if not rows:
        say_empty(empty)
