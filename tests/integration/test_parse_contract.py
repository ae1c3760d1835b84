"""The contract stated twice must say one thing: for generated payloads, the aggregator's SQL
checks (`spendpipe.aggregator.parse`, run in the real ClickHouse engine) name exactly the
(field, problem) pairs that the pydantic model names (`problems_of`), and a payload both
accept is stored with the values pydantic reads."""

import contextlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spendpipe.aggregator.dedup import ORIGIN_SQL
from spendpipe.aggregator.parse import EVENT_COLUMNS, PARSED_TABLE
from spendpipe.aggregator.store import SourceRecord, SpendStore
from spendpipe.contracts.events import LATEST, InvalidEventError, Problem, SpendEvent, decode_event, problems_of
from spendpipe.platform.clickhouse import ClickhouseStore

VALID: dict[str, str] = {
    "schema_version": "1",
    "event_id": json.dumps(str(uuid.UUID(int=7))),
    "occurred_at": '"2026-11-28T13:45:00.123456Z"',
    "key_hash": json.dumps("ab" * 32),
    "key_alias": '"ci"',
    "user_id": '"alice"',
    "team_id": '"eng"',
    "org_id": '"acme"',
    "end_user": '"customer-7"',
    "model": '"gpt-4o"',
    "model_group": '"gpt-4o-group"',
    "provider": '"openai"',
    "call_type": '"acompletion"',
    "prompt_tokens": "11",
    "completion_tokens": "22",
    "total_tokens": "33",
    "cost": '"0.000225"',
    "cache_hit": "false",
    "status": '"failure"',
    "error_class": '"RateLimitError"',
    "latency_ms": "812.5",
    "request_tags": '["batch", "nightly"]',
    "gateway_id": '"gw-1"',
    "agent_id": '"agent"',
    "session_id": '"session"',
}
"""A valid payload, field by field, as raw JSON text."""

ANY_FIELD = [
    "null", "true", "false", "0", "-0", "1", "5.0", "1.5", "-1", "1e2", "1E+2", "-0.0", "1e-400",
    "1000000000", "1000000001", "12345678901234567890", "100000000000000000000000", "[]", '["a"]',
    '["a", 1]', "{}", '{"a": 1}', '""', '"x"', '"123"', '"-1"', '"true"', '"null"', '"\\u0000"',
    '"\\ud83d\\ude00"', '"\\u00e9"', json.dumps("x" * 256), json.dumps("x" * 257), json.dumps("é" * 256),
    json.dumps("é" * 257), json.dumps("😀" * 257), '"<script>alert(1)</script>"', '"a\\"b"', '"\\/"',
]  # fmt: skip

BY_FIELD: dict[str, list[str]] = {
    "schema_version": ["1.0", "2", '"1"', "true", "1e0"],
    "event_id": [json.dumps(str(uuid.UUID(int=n))) for n in (1, 2**128 - 1)]
    + ['"40FE17C3-7B42-436A-AD94-B08C521CA926"', '"40fe17c37b42436aad94b08c521ca926"', '"call-1"',
       '"{40fe17c3-7b42-436a-ad94-b08c521ca926}"', '"\\u0034' + "0fe17c3-7b42-436a-ad94-b08c521ca926" + '"'],
    "occurred_at": [
        '"2026-11-28T13:45:00Z"', '"2026-11-28T13:45:00+05:30"', '"2026-11-28T13:45:00-00:00"',
        '"2026-11-28T13:45:00.5Z"', '"2026-11-28T13:45:00.1234567Z"', '"2026-11-28T13:45:00"',
        '"2026-02-30T00:00:00Z"', '"2026-12-01T24:00:00Z"', '"2026-12-01T23:60:00Z"', '"2026-12-01T23:59:60Z"',
        '"2026-11-28T13:45:00+24:00"', '"2026-11-28T13:45:00+23:59"', '"2026-11-28t13:45:00z"',
        '"2026-11-28 13:45:00Z"', '"1999-12-31T23:59:59Z"', '"2000-01-01T00:00:00Z"', '"2000-01-01T00:30:00+01:00"',
        '"2099-12-31T23:59:59.999999Z"', '"2100-01-01T00:00:00Z"', '"2099-12-31T23:30:00-01:00"',
        '"0000-01-01T00:00:00Z"', '"2024-02-29T12:00:00Z"', '"2023-02-29T12:00:00Z"', "1732801500",
        '"2026-11-28T13:45:00\\u005a"',
    ],
    "key_hash": [json.dumps("AB" * 32), json.dumps("a" * 63), json.dumps("g" * 64), '"sk-raw-key"'],
    "cost": [
        '"0"', '"0.1"', '"0_5"', '"1e-4"', '" 1"', '"-0.0"', '"-0"', '"-1"', '"01"', '"0."', '".5"',
        '"1000000"', '"1000000.000001"', '"999999.999999999999999999999999"', json.dumps("0." + "0" * 23 + "1"),
        json.dumps("0." + "0" * 24 + "1"), json.dumps("0.1" + "0" * 30), '"12345678901234"', '"123456789012345"',
        '"0.000000000000000000000001"', "0.1", "1", '"\\u0030.5"', '"+1"', '"1.2.3"', '"NaN"', '"Infinity"',
    ],
    "status": ['"success"', '"Success"', '"\\u0073uccess"', '"fail"'],
    "latency_ms": ["86400000", "86400000.1", "1e400", '"1.5"', "-0.0", "0.000001"],
    "request_tags": ['["a", "\\u00e9"]', "[null]", '[["a"]]', '"a"', "[]", '[""]', '["a", "a"]', '["<+3 more>"]'],
}  # fmt: skip

EXTRA_KEYS = ["surprise", "Cost", "cost ", "", "é", "user_id\u0000"]

WHOLE = [
    b"",
    b"[1, 2]",
    b'"event"',
    b"42",
    b"null",
    b"{",
    b"{}",
    b'{"a": 1} trailing',
    b"\xff\xfe{}",
    b' \n\t{"schema_version": 2}\r\n',
    b'{"cost": 1e400}',
    b'{"cost": NaN}',
    b'{"user_id": "\\ud800"}',
    b'{"user_id": "\xc3\x28"}',
]


@st.composite
def payloads(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.sampled_from(WHOLE))
    pairs: list[tuple[str, str]] = []
    for field, valid in VALID.items():
        choice = draw(st.integers(0, 19))
        if choice == 0:
            continue  # left out
        if choice == 1:
            pairs.append((field, draw(st.sampled_from(ANY_FIELD))))
        elif choice == 2 and field in BY_FIELD:
            pairs.append((field, draw(st.sampled_from(BY_FIELD[field]))))
        else:
            pairs.append((field, valid))
    if draw(st.integers(0, 9)) == 0:
        pairs.append((draw(st.sampled_from(EXTRA_KEYS)), draw(st.sampled_from(ANY_FIELD))))
    if pairs and draw(st.integers(0, 19)) == 0:
        pairs.append(draw(st.sampled_from(pairs)))  # a field named twice
    pairs = draw(st.permutations(pairs))
    return ("{" + ", ".join(f"{json.dumps(key)}: {raw}" for key, raw in pairs) + "}").encode()


def sql_verdicts(clickhouse: ClickhouseStore, batch: list[bytes]) -> list[frozenset[tuple[str, Problem]]]:
    store = SpendStore(clickhouse=clickhouse)
    store.load_raw([SourceRecord(0, n, payload) for n, payload in enumerate(batch)])
    store.parse(topic="t", ingested_at=datetime(2026, 12, 1, tzinfo=UTC), latest=LATEST)
    rows = clickhouse.rows(f"SELECT kafka_offset, arrayMap(p -> (p.1, p.2), problems) FROM {PARSED_TABLE}")
    found = {int(offset): frozenset((field, Problem(kind)) for field, kind in problems) for offset, problems in rows}
    return [found[n] for n in range(len(batch))]


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(payloads(), min_size=1, max_size=25))
def test_sql_and_pydantic_reach_the_same_verdicts(clickhouse: ClickhouseStore, batch: list[bytes]) -> None:
    for payload, verdict in zip(batch, sql_verdicts(clickhouse, batch), strict=True):
        assert verdict == problems_of(payload), payload


def test_every_hand_picked_value_reaches_the_same_verdict(clickhouse: ClickhouseStore) -> None:
    """Each listed value in each field, alone in an otherwise valid payload, and each whole-payload case."""
    batch = list(WHOLE)
    for field in VALID:
        for raw in ANY_FIELD + BY_FIELD.get(field, []):
            pairs = {**VALID, field: raw}
            batch.append(("{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in pairs.items()) + "}").encode())
    for payload, verdict in zip(batch, sql_verdicts(clickhouse, batch), strict=True):
        assert verdict == problems_of(payload), payload


def test_an_accepted_payload_is_stored_as_pydantic_reads_it(clickhouse: ClickhouseStore) -> None:
    variants = [
        {**VALID},
        {**VALID, "occurred_at": '"2026-11-29T01:30:00.5+05:00"', "prompt_tokens": "1.1e1", "cost": '"-0.0"'},
        {k: v for k, v in VALID.items() if k in ("event_id", "occurred_at", "model", "cost", "gateway_id")},
        {**VALID, "user_id": json.dumps("é" * 256), "request_tags": '["\\u00e9", "<b>"]', "key_hash": "null"},
    ]
    batch = [("{" + ", ".join(f"{json.dumps(k)}: {v}" for k, v in d.items()) + "}").encode() for d in variants]
    sql_verdicts(clickhouse, batch)
    rows = clickhouse.rows(f"SELECT {', '.join(EVENT_COLUMNS)} FROM {PARSED_TABLE} ORDER BY kafka_offset")
    for payload, row in zip(batch, rows, strict=True):
        stored = dict(zip(EVENT_COLUMNS, row, strict=True))
        event = SpendEvent.model_validate_json(payload)
        expected: dict[str, Any] = {
            name: getattr(event, name) for name in EVENT_COLUMNS if name in SpendEvent.model_fields
        }
        expected = {k: ("" if v is None else v) for k, v in expected.items()}
        expected["event_id"] = uuid.UUID(event.event_id)
        expected["occurred_at"] = event.occurred_at.replace(tzinfo=None)
        expected["request_tags"] = list(event.request_tags)
        expected["cost"] = Decimal(event.cost)
        actual = {k: stored[k] for k in expected}
        actual["occurred_at"] = actual["occurred_at"].replace(tzinfo=None)
        assert actual == expected
        assert stored["billed_model"] == event.billed_model


def stored_rows(clickhouse: ClickhouseStore) -> dict[int, tuple[Any, ...]]:
    """The accepted rows of the stage by offset: every `events` column and the origin dedup compares."""
    rows = clickhouse.rows(
        f"SELECT kafka_offset, {', '.join(EVENT_COLUMNS)}, {ORIGIN_SQL} FROM {PARSED_TABLE} WHERE empty(problems)"
    )
    return {int(row[0]): tuple(row[1:]) for row in rows}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(payloads(), min_size=1, max_size=25))
def test_both_parsers_store_an_accepted_payload_alike(clickhouse: ClickhouseStore, batch: list[bytes]) -> None:
    """The aggregator parses a large batch in ClickHouse and a small one with pydantic, and a
    batch replayed after a failure may go the other way: each accepted record must land as the
    same row, with the same origin, or a replay would count as a conflict."""
    store = SpendStore(clickhouse=clickhouse)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    sql_verdicts(clickhouse, batch)
    by_sql = stored_rows(clickhouse)
    decoded = []
    for offset, payload in enumerate(batch):
        with contextlib.suppress(InvalidEventError):
            decoded.append((decode_event(payload), 0, offset))
    store.load_decoded(decoded, topic="t", ingested_at=at)
    assert stored_rows(clickhouse) == by_sql
