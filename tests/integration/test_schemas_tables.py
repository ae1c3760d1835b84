"""`schemas/clickhouse/tables/`: each table as the migrations leave it, on the real engine (chDB),
in a database of the test's own, so the file leaves the database's name out."""

from dev.schemas import ROOT, TABLES, stale, table_files
from spendpipe.platform.clickhouse import ClickhouseStore


def test_the_checked_in_tables_are_current(clickhouse: ClickhouseStore) -> None:
    files = table_files(clickhouse)

    found = stale(ROOT, files, lambda name: name.startswith(TABLES))

    assert found == [], f"out of date with the migrations ({', '.join(found)}): run `make schemas` and commit"
    assert set(files) == {f"{TABLES}{table}.sql" for table in ("events", "schema_migrations", "spend_totals")}
    assert all(clickhouse.settings.database not in text for text in files.values())
