"""What an operator sees when values from data are hostile: every table and message of the CLI
prints them literally, as plain text, with control characters shown as visible escapes."""

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console, RenderableType

from spendpipe.admin.cli_budgets import budgets_table, decisions_table
from spendpipe.admin.render import message, plain, result_table, shown
from spendpipe.contracts.budgets import validate_budget
from spendpipe.contracts.decisions import Decision

HOSTILE = {
    "[/]": "[/]",
    "[bold red]admin[/bold red]": "[bold red]admin[/bold red]",
    "[link=https://x]y[/link]": "[link=https://x]y[/link]",
    "\x1b[2J": "\\x1b[2J",
    "a\rb": "a\\rb",
    "\x9b2J\x07\x00": "\\x9b2J\\x07\\x00",
    "line\nbreak\ttab": "line\\nbreak\\ttab",
    "\u202eevil": "\\u202eevil",
}
"""A value from data, and exactly what the operator must see of it."""

cases = pytest.mark.parametrize(("value", "seen"), HOSTILE.items(), ids=[repr(v) for v in HOSTILE])


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


@cases
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
