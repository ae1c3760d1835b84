"""What the CLI prints. Values from data are plain text: never Rich markup, never terminal control.

A scope id comes from a request's `user` field, a model name or a reason from whoever wrote
the topic, a SQL cell from anything stored: every one of them reaches the screen as `plain()`,
a `Text` that Rich never parses for markup, with control characters (ESC sequences, `\\r`,
the other C0/C1 controls, bidirectional overrides, characters that print as nothing) shown as
visible escapes, so a value cannot style itself, link somewhere, clear the screen, overwrite
the line before it, or pass for another value. Our own words
carry the styles, given as styles: `message("budget of ", ("team:eng", "bold"), " published")`.
The consoles below parse no markup either, so a string that slips past `plain()` still prints
as written.
"""

import re
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from spendpipe.platform.visible_text import visible

_DECIMAL = re.compile(r"^-?\d+\.\d+$")
NUMERIC = {"spend", "requests", "failures", "prompt_tokens", "completion_tokens", "total_tokens"}


def console(*, stderr: bool = False) -> Console:
    """A console that takes no markup (styles come only from `Text` styles) and does not break
    a message across lines (a scope id or a setting's name stays whole for grep and copy)."""
    return Console(stderr=stderr, markup=False, highlight=False, soft_wrap=True)


def shown(value: object, *, lines: bool = False) -> str:
    """`str(value)` with every control or invisible character replaced by a visible escape
    (`\\x1b`, `\\r`, `\\u200b`; the rule is `platform.visible_text`); with `lines`, line
    breaks stay (for our own multi-line messages, such as settings errors)."""
    return visible(value, lines=lines)


def plain(value: object, style: str = "", *, lines: bool = False) -> Text:
    """A value from data as the operator should see it: literally, control characters escaped."""
    return Text(shown(value, lines=lines), style=style)


def message(*parts: object | tuple[object, str]) -> Text:
    """One line of output: each part printed as `plain()`; a `(value, style)` pair is styled."""
    line = Text()
    for part in parts:
        value, style = part if isinstance(part, tuple) else (part, "")
        line.append_text(plain(value, style))
    return line


def add_plain_row(target: Table, cells: Sequence[object]) -> None:
    """Every table row goes in this way: each cell `plain()`."""
    target.add_row(*(plain(cell) for cell in cells))


def result_table(title: str, columns: list[str], rows: Sequence[Sequence[Any]]) -> Table:
    """Query results: money right-aligned and never rounded, every cell plain text."""
    result = Table(title=plain(title), title_justify="left")
    for name in columns:
        result.add_column(plain(name), justify="right" if name in NUMERIC else "left", overflow="fold")
    for row in rows:
        add_plain_row(result, [_cell(value) for value in row])
    return result


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
