"""The query behind `spendpipe spend`: parameters, never values pasted into SQL."""

from datetime import UTC, datetime, timedelta, timezone

from spendpipe.admin.spend_query import SpendQuery
from spendpipe.contracts.scopes import ScopeType
from spendpipe.contracts.windows import Window

SATURDAY = datetime(2026, 11, 28, 15, 30, tzinfo=UTC)


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
