"""Versioned migrations: splitting files into statements, applying each version once."""

import re

from spendpipe.store.migrate import Migration, bundled_migrations, migrate, split_statements


class FakeClickhouse:
    """Records commands and keeps the `schema_migrations` ledger the inserts describe."""

    def __init__(self, applied: tuple[int, ...] = ()) -> None:
        self.commands: list[str] = []
        self.ledger: list[int] = list(applied)

    def command(self, cmd: str) -> object:
        self.commands.append(cmd)
        recorded = re.search(r"INSERT INTO schema_migrations \(version, name\) VALUES \((\d+), '(\w+)'\)", cmd)
        if recorded:
            self.ledger.append(int(recorded[1]))
        return None

    def column(self, sql: str) -> list[object]:
        assert sql == "SELECT version FROM schema_migrations"
        return [str(v) for v in self.ledger]


MIGRATIONS = [
    Migration(1, "events", ("CREATE TABLE IF NOT EXISTS events (x UInt8) ENGINE = Memory",)),
    Migration(
        2,
        "totals",
        ("CREATE TABLE IF NOT EXISTS a (x UInt8) ENGINE = Memory", "CREATE VIEW IF NOT EXISTS b AS SELECT 1"),
    ),
]


def test_split_statements_at_semicolons_ending_a_line() -> None:
    sql = """
-- a comment; with a semicolon at its end;
CREATE TABLE a (x String DEFAULT ';')
ENGINE = Memory;

   -- indented comment
CREATE TABLE b (x UInt8) ENGINE = Memory ;
SELECT 1
"""

    assert split_statements(sql) == (
        "CREATE TABLE a (x String DEFAULT ';')\nENGINE = Memory",
        "CREATE TABLE b (x UInt8) ENGINE = Memory",
        "SELECT 1",
    )


def test_split_statements_of_only_comments_is_empty() -> None:
    assert split_statements("-- nothing here\n\n  -- still nothing;\n") == ()


def test_bundled_migrations_are_sorted_and_not_empty() -> None:
    migrations = bundled_migrations()

    versions = [m.version for m in migrations]
    assert versions
    assert versions == sorted(set(versions))
    assert versions[0] == 1
    for migration in migrations:
        assert migration.statements, migration.name
        assert re.fullmatch(r"[a-z0-9_]+", migration.name)
        for statement in migration.statements:
            assert not statement.endswith(";")
            assert "--" not in statement


def test_bundled_migrations_create_the_tables_the_aggregator_writes() -> None:
    statements = " ".join(s for m in bundled_migrations() for s in m.statements)

    assert "CREATE TABLE IF NOT EXISTS events" in statements
    assert "CREATE TABLE IF NOT EXISTS spend_totals" in statements


def test_migrate_applies_every_missing_version_in_order() -> None:
    store = FakeClickhouse()

    applied = migrate(store, MIGRATIONS)

    assert applied == [1, 2]
    assert store.ledger == [1, 2]
    statements = [
        c
        for c in store.commands
        if not c.lstrip().startswith(("CREATE TABLE IF NOT EXISTS schema_migrations", "INSERT"))
    ]
    assert statements == [*MIGRATIONS[0].statements, *MIGRATIONS[1].statements]


def test_a_second_run_applies_nothing() -> None:
    store = FakeClickhouse()
    migrate(store, MIGRATIONS)
    first_run = len(store.commands)

    applied = migrate(store, MIGRATIONS)

    assert applied == []
    later = store.commands[first_run:]
    assert all(statement not in later for m in MIGRATIONS for statement in m.statements)
    assert store.ledger == [1, 2]


def test_only_versions_missing_from_the_ledger_are_applied() -> None:
    store = FakeClickhouse(applied=(1,))

    applied = migrate(store, MIGRATIONS)

    assert applied == [2]
    assert MIGRATIONS[0].statements[0] not in store.commands
    assert all(statement in store.commands for statement in MIGRATIONS[1].statements)


def test_the_version_is_recorded_after_its_statements() -> None:
    store = FakeClickhouse()

    migrate(store, MIGRATIONS[:1])

    assert store.commands[-2] == MIGRATIONS[0].statements[0]
    assert store.commands[-1].startswith("INSERT INTO schema_migrations")


def test_the_bundled_set_is_applied_by_default_and_only_once() -> None:
    store = FakeClickhouse()

    first = migrate(store)
    second = migrate(store)

    assert first == [m.version for m in bundled_migrations()]
    assert second == []
