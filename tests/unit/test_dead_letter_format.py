"""A dead letter always fits the producer's limit, keeps the record's key, and is published once
per record until its offset is committed."""

from spendpipe.aggregator.dead_letters import (
    DEAD_LETTER_REASON,
    EXCERPT_BYTES,
    SOURCE_OFFSET,
    SOURCE_PARTITION,
    SOURCE_TOPIC,
    SOURCE_VALUE_SIZE,
    TRUNCATED,
    Letter,
    PublishedLetters,
    letter_for,
)

PRODUCER_LIMIT = 1 << 20


def letter(value: bytes | None, key: bytes | None = b"k", reason: str = "why") -> Letter:
    return letter_for(topic="spend.events", partition=3, offset=41, key=key, value=value, reason=reason)


def test_a_small_record_is_carried_whole_with_its_key() -> None:
    small = letter(b'{"cost": "0_5"}', key=b"ab" * 32)

    assert small.value == b'{"cost": "0_5"}'
    assert small.key == b"ab" * 32
    assert small.headers == {
        DEAD_LETTER_REASON: "why",
        SOURCE_TOPIC: "spend.events",
        SOURCE_PARTITION: "3",
        SOURCE_OFFSET: "41",
        SOURCE_VALUE_SIZE: "15",
        TRUNCATED: "",
    }


def test_a_record_without_value_or_key_is_an_empty_letter() -> None:
    empty = letter(None, key=None)

    assert (empty.key, empty.value, empty.headers[SOURCE_VALUE_SIZE]) == (None, b"", "0")


def test_a_record_near_the_broker_limit_is_cut_to_an_excerpt_that_fits() -> None:
    huge_value, huge_key = b"x" * (PRODUCER_LIMIT - 100), b"k" * (PRODUCER_LIMIT - 100)

    cut = letter(huge_value, key=huge_key, reason="r" * PRODUCER_LIMIT)

    assert cut.value == huge_value[:EXCERPT_BYTES]
    assert cut.key == huge_key[:EXCERPT_BYTES]
    assert cut.headers[TRUNCATED] == "key,value"
    assert cut.headers[SOURCE_VALUE_SIZE] == str(len(huge_value))
    size = len(cut.value) + len(cut.key) + sum(len(k) + len(v.encode()) for k, v in cut.headers.items())
    assert size < PRODUCER_LIMIT // 4


def test_a_value_of_exactly_the_excerpt_size_is_not_cut() -> None:
    assert letter(b"x" * EXCERPT_BYTES).headers[TRUNCATED] == ""
    assert letter(b"x" * (EXCERPT_BYTES + 1)).headers[TRUNCATED] == "value"


def test_published_letters_are_remembered_until_their_offsets_are_committed() -> None:
    published = PublishedLetters()
    published.add((0, 5))
    published.add((0, 9))
    published.add((1, 2))

    published.committed({0: 7})

    assert (0, 5) not in published
    assert (0, 9) in published
    assert (1, 2) in published


def test_partitions_given_up_are_forgotten() -> None:
    published = PublishedLetters()
    published.add((0, 5))
    published.add((1, 2))

    published.forget([1])

    assert (0, 5) in published
    assert (1, 2) not in published
