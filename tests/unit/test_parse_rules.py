"""The SQL side of the event contract covers every field of the model, and writes every column
of `events`."""

from datetime import UTC, datetime

from spendpipe.aggregator.parse import CANONICAL_FIELDS, EVENT_COLUMNS, FIELD_RULES
from spendpipe.contracts.events import EARLIEST, LATEST, SpendEvent
from spendpipe.store.migrate import bundled_migrations


def test_every_field_but_the_version_has_a_sql_rule() -> None:
    assert set(FIELD_RULES) == set(SpendEvent.model_fields) - {"schema_version"}


def test_the_parsed_columns_are_the_events_columns_in_order() -> None:
    created = "\n".join(statement for m in bundled_migrations() for statement in m.statements)
    positions = [created.find(f"\n    {column} ") for column in EVENT_COLUMNS[:28]]

    assert all(p > 0 for p in positions)
    assert positions == sorted(positions)
    assert EVENT_COLUMNS[28:] == ("agent_id", "session_id")  # added by 0003, in this order


def test_every_field_has_a_canonical_form() -> None:
    assert list(CANONICAL_FIELDS) == list(SpendEvent.model_fields)


def test_the_canonical_years_are_the_contracts() -> None:
    """`CANONICAL_FIELDS` writes the years as 20xx: exactly EARLIEST to LATEST, both at midnight UTC."""
    assert datetime(2000, 1, 1, tzinfo=UTC) == EARLIEST
    assert datetime(2100, 1, 1, tzinfo=UTC) == LATEST
