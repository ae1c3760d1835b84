"""What an operator sees when values from data are hostile: every table and message of the CLI
prints them literally, as plain text, with control characters shown as visible escapes."""

import io
import re
import sys
import unicodedata
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka.structs import ConsumerRecord
from rich.console import Console, RenderableType

from spendpipe.admin import cli_tail
from spendpipe.admin.cli_budgets import budgets_table, decisions_table
from spendpipe.admin.formats import OutputFormat
from spendpipe.admin.render import message, plain, result_table, shown
from spendpipe.contracts.budgets import validate_budget
from spendpipe.contracts.decisions import Decision
from spendpipe.platform.visible_text import visible

HOSTILE = {
    "[/]": "[/]",
    "[bold red]admin[/bold red]": "[bold red]admin[/bold red]",
    "[link=https://x]y[/link]": "[link=https://x]y[/link]",
    "\x1b[2J": "\\x1b[2J",
    "a\rb": "a\\rb",
    "\x9b2J\x07\x00": "\\x9b2J\\x07\\x00",
    "line\nbreak\ttab": "line\\nbreak\\ttab",
    "\u202eevil": "\\u202eevil",
    "a\u061cb": "a\\u061cb",
    "eng\u200b": "eng\\u200b",
    "\ufeffeng\u2060": "\\ufeffeng\\u2060",
    "eng\ufe0f": "eng\\ufe0f",
    "\u3164": "\\u3164",
    "x\u2028y\u2029": "x\\u2028y\\u2029",
    "tag\U000e0041\U000e007f": "tag\\U000e0041\\U000e007f",
    "bad\ud800": "bad\\ud800",
    "eng\u180b": "eng\\u180b",
    "eng\u206a": "eng\\u206a",
    "eng\ufff9": "eng\\ufff9",
    "eng\U0001d173": "eng\\U0001d173",
    "café ✓ 東京": "café ✓ 東京",
}
"""A value from data, and exactly what the operator must see of it. Beyond the controls: the
Arabic letter mark (bidi), characters that print as nothing (zero-width, word joiner, BOM,
variation selectors, Hangul fillers, Unicode tags), so two ids that look alike do not print
alike, line and paragraph separators, and lone surrogates (no terminal can be sent them:
printing one to a UTF-8 stdout raises). Letters and symbols print as they are."""

cases = pytest.mark.parametrize(("value", "seen"), HOSTILE.items(), ids=[repr(v) for v in HOSTILE])
UTF8 = {value: seen for value, seen in HOSTILE.items() if "\ud800" not in value}
utf8_cases = pytest.mark.parametrize(("value", "seen"), UTF8.items(), ids=[repr(v) for v in UTF8])
"""For budgets, which refuse a lone surrogate before anything prints them."""


def screen(renderable: RenderableType, *, terminal: bool = False) -> str:
    """What a console prints: plain text, or with `terminal` the bytes a colour terminal gets."""
    out = io.StringIO()
    Console(file=out, width=200, force_terminal=terminal, color_system="truecolor" if terminal else None).print(
        renderable
    )
    return out.getvalue()


def cells(text: str) -> list[list[str]]:
    """The rows of a printed table, each a list of its cells' text."""
    return [[cell.strip() for cell in re.split("[│┃]", line)[1:-1]] for line in text.splitlines() if line[:1] in "│┃"]


@cases
def test_a_sql_result_cell_prints_as_written(value: str, seen: str) -> None:
    printed = screen(result_table("spend", ["user", "spend"], [[value, "1.50"]]))

    assert cells(printed) == [["user", "spend"], [seen, "1.5"]]


@utf8_cases
def test_a_scope_and_a_model_in_the_budgets_table_print_as_written(value: str, seen: str) -> None:
    budget = validate_budget({"scope": f"end_user:{value}", "max_budget": "10", "model_rpm_limit": {value: 5}})

    rows = cells(screen(budgets_table([budget])))

    assert rows[1:] == [[f"end_user:{seen}", "10", "lifetime", "", f"model_rpm_limit={{'{seen}': 5}}"]]


@cases
def test_a_scope_and_a_reason_in_the_blocks_table_print_as_written(value: str, seen: str) -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    decision = Decision(
        scope=f"end_user:{value}", model=value, version=1, blocked=True, reason=value, window="24h",
        expires_at=now + timedelta(hours=1), decided_at=now,
    )  # fmt: skip

    rows = cells(screen(decisions_table([decision], "blocks in force", reasons=True)))

    assert rows[1] == [f"end_user:{seen}", seen, "", "", "24h", "01-02 04:04:05", seen]


@cases
def test_a_message_prints_the_value_as_written(value: str, seen: str) -> None:
    printed = screen(message("budget of ", (f"end_user:{value}", "bold"), " published"))

    assert printed == f"budget of end_user:{seen} published\n"


@cases
def test_a_terminal_gets_no_control_sequence_from_data(value: str, seen: str) -> None:
    printed = screen(result_table("", ["user"], [[value]]), terminal=True)

    assert "\x1b]8;" not in printed  # no hyperlink
    assert "\x1b[1;31m" not in printed  # no bold red
    assert not any(control in printed for control in ("\x1b[2J", "\r", "\x9b"))
    assert seen in printed


def test_the_title_and_column_names_are_plain_text_too() -> None:
    printed = screen(result_table("[bold]spend[/bold] of [/]", ["\x1b[2J"], [["x" * 40]]))

    assert printed.splitlines()[0].rstrip() == "[bold]spend[/bold] of [/]"
    assert cells(printed)[0] == ["\\x1b[2J"]


def test_our_own_multi_line_messages_keep_their_line_breaks() -> None:
    assert screen(plain("invalid settings:\n  X: bad '\x1b'", lines=True)) == "invalid settings:\n  X: bad '\\x1b'\n"
    assert shown("a\\nb") == "a\\nb"  # a backslash already in the data stays as it is


def test_an_alert_holding_a_lone_surrogate_prints_escaped_rather_than_failing_the_listing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """spend.alerts is read with `json.loads`, which turns `\\ud800` into a lone surrogate; a UTF-8
    stdout (pytest's capture is one) cannot take it raw, so one such record used to fail the
    whole listing with an encoding error."""
    value = b'{"scope": "team:\\ud800", "alerted_at": "2026-01-02T03:04:05Z", "spend": "1.5"}'
    record = ConsumerRecord("spend.alerts", 0, 7, 0, 0, None, value, None, 0, len(value), [])
    monkeypatch.setenv("COLUMNS", "300")  # one line per row

    cli_tail._listing([cli_tail._alert_row(record)], cli_tail.ALERT_COLUMNS, OutputFormat.TABLE, empty="none")

    assert "team:\\ud800" in capsys.readouterr().out


def test_every_format_character_is_escaped() -> None:
    """Unicode's format characters (category Cf) print as nothing or change what follows: none
    may reach a terminal or a page as it is, in this Python's Unicode or a later one's."""
    shown_as_is = [
        f"U+{code:04X}"
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) == "Cf" and visible(chr(code)) == chr(code)
    ]

    assert shown_as_is == []
