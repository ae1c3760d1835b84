"""The deduplication token of a flush's insert (`store.insert_token`): the same for the same
records, different for any other."""

from spendpipe.aggregator.store import insert_token

AFTER = {0: 9, 1: -1}
MARKS = {"spend.events:0": 19, "spend.events:1": 4}


def token(table: str = "events", after: dict[int, int] = AFTER, marks: dict[str, int] = MARKS) -> str | None:
    settings = insert_token(table, after, marks)
    return None if settings is None else settings["insert_deduplication_token"]


def test_the_same_records_give_the_same_token_in_any_order() -> None:
    assert token() == token(after={1: -1, 0: 9}, marks=dict(reversed(MARKS.items())))
    assert token() == "spendpipe/events/spend.events:0(9,19] spend.events:1(-1,4]"


def test_other_records_table_or_topic_give_another_token() -> None:
    others = [
        token(after={0: 10, 1: -1}),
        token(marks={"spend.events:0": 20, "spend.events:1": 4}),
        token(marks={"spend.events:0": 19}),
        token(marks={"spend.events:2": 19, "spend.events:1": 4}),
        token(marks={"other:0": 19, "other:1": 4}),
        token(table="spend_totals"),
    ]

    assert len({token(), *others}) == len(others) + 1


def test_an_insert_that_advances_no_watermark_has_no_token() -> None:
    assert insert_token("events", AFTER, {}) is None
