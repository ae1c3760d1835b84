"""Rich tables for query results: money right-aligned and never rounded."""

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich.table import Table

_DECIMAL = re.compile(r"^-?\d+\.\d+$")
NUMERIC = {"spend", "requests", "failures", "prompt_tokens", "completion_tokens", "total_tokens"}


def result_table(title: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, justify="right" if name in NUMERIC else "left", overflow="fold")
    for row in rows:
        table.add_row(*(_cell(value) for value in row))
    return table


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if value == "":
        return "(all)"
    text = format(value, "f") if isinstance(value, Decimal) else str(value)
    if _DECIMAL.match(text):
        # Decimal(38, 24) prints 24 places; trailing zeros carry no information
        text = text.rstrip("0").rstrip(".")
    return text
