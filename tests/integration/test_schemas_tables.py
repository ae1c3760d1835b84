"""`schemas/clickhouse/tables/` and `views/`: each table and view as the migrations leave it, on
the real engine (chDB), in a database of the test's own, so the file leaves the database's name out."""

from dev.schemas import ROOT, TABLES, VIEWS, stale, table_files
from spendpipe.platform.clickhouse import ClickhouseStore


def test_the_checked_in_tables_are_current(clickhouse: ClickhouseStore) -> None:
    files = table_files(clickhouse)

    found = stale(ROOT, files, lambda name: name.startswith((TABLES, VIEWS)))

    assert found == [], f"out of date with the migrations ({', '.join(found)}): run `make schemas` and commit"
    tables = (
        "budget_history", "calendar_windows", "decision_history", "events", "partition_owners", "schema_migrations",
        "spend_totals", "store_calendar",
    )  # fmt: skip
    views = (
        "blocks_history", "budget_utilisation", "spend_by_model", "spend_by_scope", "spend_by_session",
        "spend_by_tag", "top_spenders",
    )  # fmt: skip
    assert set(files) == {f"{TABLES}{table}.sql" for table in tables} | {f"{VIEWS}{view}.sql" for view in views}
    assert all(clickhouse.settings.database not in text for text in files.values())
