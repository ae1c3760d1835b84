"""Whether a batch's parsed rows fall in one minute (`ParsedIds.one_minute`): then the totals
insert has no two rows of one key and skips summing them (`store.NOTHING_TO_SUM`)."""

from datetime import UTC, datetime, timedelta

from spendpipe.aggregator.store import ParsedIds

MINUTE = datetime(2026, 12, 2, 17, 59, tzinfo=UTC)


def span(oldest: datetime | None, newest: datetime | None) -> ParsedIds:
    return ParsedIds([], [], oldest, newest)


def test_rows_from_the_first_to_the_last_microsecond_of_a_minute_are_in_one() -> None:
    assert span(MINUTE, MINUTE + timedelta(seconds=59, microseconds=999_999)).one_minute
    assert span(MINUTE, MINUTE).one_minute


def test_rows_either_side_of_a_minute_boundary_are_not() -> None:
    assert not span(MINUTE - timedelta(microseconds=1), MINUTE).one_minute
    assert not span(MINUTE, MINUTE + timedelta(minutes=1)).one_minute
    assert not span(MINUTE, MINUTE + timedelta(hours=1)).one_minute  # the same minute of another hour


def test_no_rows_or_an_unknown_end_are_not_in_one_minute() -> None:
    assert not span(None, None).one_minute
    assert not span(MINUTE, None).one_minute
