"""The read model of `spend_totals`: which rows make up a cap's window, and the query behind
`spendpipe spend` (parameters, never values pasted into SQL)."""

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from spendpipe.contracts.budgets import Cap
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.scopes import ScopeType
from spendpipe.contracts.windows import Window
from spendpipe.store.totals import Grain, SpendQuery, grain

SATURDAY = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)
NOW = int(SATURDAY.timestamp()) + 59


def epoch(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> int:
    return int(datetime(year, month, day, hour, minute, tzinfo=UTC).timestamp())


@pytest.mark.parametrize(
    ("duration", "expected"),
    [
        ("24h", Grain(Window.DAY, epoch(2026, 11, 28), epoch(2026, 11, 29), epoch(2026, 11, 29))),
        ("7d", Grain(Window.WEEK, epoch(2026, 11, 22), epoch(2026, 11, 29), epoch(2026, 11, 29))),
        ("1mo", Grain(Window.MONTH, epoch(2026, 11, 1), epoch(2026, 12, 1), epoch(2026, 12, 1))),
        ("48h", Grain(Window.DAY, epoch(2026, 11, 27), epoch(2026, 11, 29), epoch(2026, 11, 29))),
        ("2h", Grain(Window.HOUR, epoch(2026, 11, 28, 14), epoch(2026, 11, 28, 16), epoch(2026, 11, 28, 16))),
        (
            "90m",
            Grain(Window.MINUTE, epoch(2026, 11, 28, 15), epoch(2026, 11, 28, 16, 30), epoch(2026, 11, 28, 16, 30)),
        ),
    ],
)
def test_a_caps_window_is_read_from_its_own_row_or_the_finest_rows_that_tile_it(duration: str, expected: Grain) -> None:
    assert grain(Cap(parse_duration(duration), Decimal(1)), NOW) == expected


def test_a_lifetime_cap_sums_every_month_and_never_resets() -> None:
    rows, start, end, reset = grain(Cap(None, Decimal(1)), NOW)

    assert (rows, start, reset) == (Window.MONTH, 0, None)
    assert end > epoch(2100, 1, 1)


def query(**overrides: object) -> tuple[str, dict[str, object]]:
    values: dict[str, object] = {
        "scope_type": ScopeType.TEAM,
        "scope_id": "eng",
        "window": Window.WEEK,
        "at": SATURDAY,
    }
    values.update(overrides)
    return SpendQuery(**values).sql()  # type: ignore[arg-type]


def test_parameters_for_a_team_this_week() -> None:
    sql, parameters = query()

    assert parameters == {
        "window": "week",
        "start": int(datetime(2026, 11, 22, tzinfo=UTC).timestamp()),
        "scope_type": "team",
        "scope_id": "eng",
        "limit": 50,
    }
    assert "scope_id = {scope_id:String}" in sql
    assert "model = ''" in sql
    assert "LIMIT {limit:UInt32}" in sql


def test_window_start_for_month_and_minute() -> None:
    _, month = query(window=Window.MONTH)
    _, minute = query(window=Window.MINUTE)

    assert month["start"] == int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())
    assert minute["start"] == int(datetime(2026, 11, 28, 15, 30, tzinfo=UTC).timestamp())


def test_an_instant_with_an_offset_uses_its_utc_window() -> None:
    _, parameters = query(window=Window.DAY, at=datetime(2026, 11, 29, 2, 0, tzinfo=timezone(timedelta(hours=5))))

    assert parameters["start"] == int(datetime(2026, 11, 28, tzinfo=UTC).timestamp())


def test_every_scope_of_a_type() -> None:
    sql, parameters = query(scope_id=None, limit=10)

    assert "scope_id" not in parameters
    assert "scope_id =" not in sql
    assert parameters["limit"] == 10


def test_one_row_per_model() -> None:
    sql, parameters = query(model="*")

    assert "model != ''" in sql
    assert "model" not in parameters


def test_one_named_model() -> None:
    sql, parameters = query(model="gpt-4o")

    assert "model = {model:String}" in sql
    assert "model = ''" not in sql
    assert parameters["model"] == "gpt-4o"


def test_values_are_never_pasted_into_the_sql() -> None:
    hostile = "eng' OR 1=1 --"

    sql, parameters = query(scope_id=hostile, model="m' --")

    assert hostile not in sql
    assert "m' --" not in sql
    assert parameters["scope_id"] == hostile
