"""What a topic's writer can repeat without end is counted every time and logged the first few."""

import logging

import pytest

from spendpipe.platform.first_logged import FirstLogged


def test_counts_every_occurrence_and_logs_only_the_first_few(caplog: pytest.LogCaptureFixture) -> None:
    logged = FirstLogged(logging.getLogger("first-logged-test"), most=3)

    with caplog.at_level(logging.ERROR, logger="first-logged-test"):
        for n in range(10):
            logged.error("record %d unreadable", n)

    assert logged.count == 10
    assert [r.getMessage() for r in caplog.records] == [
        "record 0 unreadable",
        "record 1 unreadable",
        "record 2 unreadable; no more of these are logged",
    ]
