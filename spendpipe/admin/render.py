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

_DECIMAL = re.compile(r"^-?\d+\.\d+$")
NUMERIC = {"spend", "requests", "failures", "prompt_tokens", "completion_tokens", "total_tokens"}

_CONTROL = "\x00-\x1f\x7f-\x9f"
_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
"""The bidirectional marks, overrides and isolates (which can make text read in a different
order than it is stored)."""
_INVISIBLE = (
    "\u00ad\u034f\u115f\u1160\u180e\u200b-\u200d\u2060-\u2064\u3164\ufe00-\ufe0f\ufeff\uffa0"
    "\U000e0000-\U000e007f\U000e0100-\U000e01ef"
)
"""Characters that print as nothing (soft hyphen, zero-width space and joiners, word joiner,
BOM, variation selectors, Hangul fillers, Unicode tags): `eng` and `eng` + U+200B are two
scopes that would look like one, and tags can carry hidden text."""
_OTHER = "\u2028\u2029\ud800-\udfff"
"""Line and paragraph separators, and lone surrogates (from JSON's `\\ud800`: no UTF-8 stream
can carry one, so printing it would raise)."""
_HIDDEN = f"{_BIDI}{_INVISIBLE}{_OTHER}"
_ESCAPED = re.compile(f"[{_CONTROL}{_HIDDEN}]")
_ESCAPED_BUT_NEWLINE = re.compile(f"[\x00-\x09\x0b-\x1f\x7f-\x9f{_HIDDEN}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def console(*, stderr: bool = False) -> Console:
    """A console that takes no markup (styles come only from `Text` styles) and does not break
    a message across lines (a scope id or a setting's name stays whole for grep and copy)."""
    return Console(stderr=stderr, markup=False, highlight=False, soft_wrap=True)


def shown(value: object, *, lines: bool = False) -> str:
    """`str(value)` with every control character replaced by a visible escape (`\\x1b`, `\\r`);
    with `lines`, line breaks stay (for our own multi-line messages, such as settings errors)."""
    return (_ESCAPED_BUT_NEWLINE if lines else _ESCAPED).sub(_escape, str(value))


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


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
