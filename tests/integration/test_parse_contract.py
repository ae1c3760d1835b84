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

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from spendpipe.aggregator.dedup import ORIGIN_SQL
from spendpipe.aggregator.parse import EVENT_COLUMNS, PARSED_TABLE
from spendpipe.aggregator.store import SourceRecord, SpendStore
from spendpipe.contracts.events import LATEST, InvalidEventError, Problem, SpendEvent, decode_event, problems_of
from spendpipe.platform.clickhouse import ClickhouseStore
from tests.support.events import make_event

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


def sql_verdicts(
    clickhouse: ClickhouseStore, batch: list[bytes], *, canonical: bool = False
) -> list[frozenset[tuple[str, Problem]]]:
    """What ClickHouse says of each payload: the full parse alone, or (`canonical`) the canonical
    form's fast path first and the full parse for the rest, as the aggregator runs them."""
    store = SpendStore(clickhouse=clickhouse)
    store.load_raw([SourceRecord(0, n, payload) for n, payload in enumerate(batch)])
    at = datetime(2026, 12, 1, tzinfo=UTC)
    if canonical:
        store.parse_canonical(topic="t", ingested_at=at, latest=LATEST)
    store.parse(topic="t", ingested_at=at, latest=LATEST)
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
    sql_verdicts(clickhouse, batch)
    by_sql = stored_rows(clickhouse)
    assert stored_by_pydantic(clickhouse, batch) == by_sql


def stored_by_pydantic(clickhouse: ClickhouseStore, batch: list[bytes]) -> dict[int, tuple[Any, ...]]:
    """The stage's rows once the records pydantic accepts are loaded as the writer loads them."""
    decoded = []
    for offset, payload in enumerate(batch):
        with contextlib.suppress(InvalidEventError):
            decoded.append((decode_event(payload), 0, offset))
    SpendStore(clickhouse=clickhouse).load_decoded(decoded, topic="t", ingested_at=datetime(2026, 12, 1, tzinfo=UTC))
    return stored_rows(clickhouse)


CANONICAL_VALID = {field: json.dumps(json.loads(raw), separators=(",", ":")) for field, raw in VALID.items()}
"""`VALID` as a gateway writes it (`SpendEvent.to_json`): no whitespace, the model's field order."""

PLAIN = list(" !#[]~az09-_.:/<>{}")
ODD = ['"', "\\", "é", "\x7f", "\x00", "\n", "\t", "😀", "\u2028"]


@st.composite
def strings(draw: st.DrawFn) -> str:
    """JSON strings near the canonical form's edges: lengths about the 256 limit, characters it
    refuses (quotes and backslashes escaped, control, non-ASCII), escapes of plain characters."""
    length = draw(st.sampled_from([0, 1, 2, 255, 256, 257]))
    extra = "".join(draw(st.lists(st.sampled_from(PLAIN + ODD), max_size=min(2, length))))
    text = "x" * (length - len(extra)) + extra
    written = json.dumps(text, ensure_ascii=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        written = written[:-1] + "\\u0041" + '"'  # an escape of a plain character
    return written


@st.composite
def times(draw: st.DrawFn) -> str:
    """Times in and out of the canonical `Z` form: every month's last days, leap days, the years
    at the contract's edges, out-of-range fields, fractions of 0 to 7 digits, other offsets."""
    year = draw(st.sampled_from([1999, 2000, 2023, 2024, 2096, 2099, 2100]))
    month = draw(st.integers(0, 13))
    day = draw(st.sampled_from([0, 1, 28, 29, 30, 31, 32]))
    hour, minute, second = draw(st.sampled_from([(0, 0, 0), (23, 59, 59), (24, 0, 0), (12, 60, 0), (12, 0, 60)]))
    fraction = draw(st.sampled_from(["", ".5", ".123456", ".1234567", "."]))
    offset = draw(st.sampled_from(["Z", "Z", "Z", "+00:00", "-00:00", "z", "+01:00", ""]))
    return f'"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}{fraction}{offset}"'


NEAR_CANONICAL: dict[str, list[str]] = {
    "count": ["0", "1", "999999999", "1000000000", "1000000001", "01", "-1", "1.0", "1e2", '"1"', "null", "-0"],
    "cost": [
        *BY_FIELD["cost"], '"999999.' + "9" * 24 + '"', '"999999.' + "9" * 25 + '"', '"0.' + "0" * 24 + '"',
        '"0.' + "0" * 25 + '"', '"0.' + "0" * 23 + '10"', '"1000000.0"', '"0000001"', '"1.0"', '"1"',
    ],
    "latency_ms": [
        *BY_FIELD["latency_ms"], "0", "0.0", "12.5", "9999999.5", "10000000.0", "86400000.0", "1e-05",
        "0." + "0" * 16 + "1", "0." + "0" * 17 + "1", "0.1000000000000000055511151231257827", "-1.5",
        "1.192092896e-7", "9999999.9e-1", "1e-99", "1e-100", "1e-400", "1e-0", "1e+2", "1E-5", "5e-324", "0e-5",
    ],
    "flag": ["true", "false", '"true"', "1", "null", "True"],
    "status": ['"success"', '"failure"', '"Success"', '"fail"', "null", '"success "'],
    "request_tags": [
        "[]", '[""]', '["a","b"]', '["a\\"b"]', '["é"]', "[1]", "[null]", '["a",["b"]]', '["a"]', '[ "a"]',
        '["\\u0041"]', '["a",""]',
    ],
    "event_id": [*BY_FIELD["event_id"], json.dumps(str(uuid.UUID(int=2**127)))],
    "key_hash": [*BY_FIELD["key_hash"], json.dumps("ab" * 32), json.dumps("a" * 65), "null", '""'],
    "schema_version": ["1", "2", "1.0", '"1"', "01", "true"],
    "time": [
        *BY_FIELD["occurred_at"], '"2000-02-29T00:00:00Z"', '"2096-02-29T00:00:00Z"', '"2100-02-29T00:00:00Z"',
        '"2099-02-29T00:00:00Z"', '"2026-02-29T00:00:00Z"', '"2026-02-28T23:59:59.999999Z"', '"2026-01-31T00:00:00Z"',
        '"2026-03-31T00:00:00Z"', '"2026-04-31T00:00:00Z"', '"2026-06-31T00:00:00Z"', '"2026-09-31T00:00:00Z"',
        '"2026-11-31T00:00:00Z"', '"2026-12-31T00:00:00Z"', '"2026-04-30T00:00:00Z"', '"2026-00-10T00:00:00Z"',
        '"2026-13-10T00:00:00Z"', '"2026-12-00T00:00:00Z"', '"2026-12-02T09:28:35.329634Z"', '"2026-12-02T09:28:35.Z"',
    ],
}  # fmt: skip

KIND = {
    **dict.fromkeys(("prompt_tokens", "completion_tokens", "total_tokens"), "count"),
    "cost": "cost", "latency_ms": "latency_ms", "cache_hit": "flag", "status": "status",
    "request_tags": "request_tags", "event_id": "event_id", "key_hash": "key_hash", "schema_version": "schema_version",
    "occurred_at": "time",
}  # fmt: skip


@st.composite
def canonical_looking(draw: st.DrawFn) -> bytes:
    """Payloads in the gateways' layout, or a step or two from it: a few fields (often none)
    left out or given a value near the canonical form's edges, the rest valid; now and then the
    layout itself broken (fields swapped or named twice, an unknown field, whitespace, text
    after the object)."""
    changed = set(draw(st.lists(st.sampled_from(list(CANONICAL_VALID)), max_size=3)))
    pairs: list[tuple[str, str]] = []
    for field, valid in CANONICAL_VALID.items():
        if field not in changed:
            pairs.append((field, valid))
        elif draw(st.integers(0, 4)) == 0:
            continue  # left out
        elif field == "occurred_at" and draw(st.booleans()):
            pairs.append((field, draw(times())))
        elif field in KIND:
            pairs.append((field, draw(st.sampled_from(NEAR_CANONICAL[KIND[field]]))))
        else:
            pairs.append((field, draw(strings())))
    layout = draw(st.integers(0, 19))
    if layout == 0 and len(pairs) > 1:
        n = draw(st.integers(0, len(pairs) - 2))
        pairs[n], pairs[n + 1] = pairs[n + 1], pairs[n]
    elif layout == 1 and pairs:
        pairs.append(draw(st.sampled_from(pairs)))
    elif layout == 2:
        pairs.append((draw(st.sampled_from(EXTRA_KEYS)), '"x"'))
    text = "{" + ",".join(f"{json.dumps(key)}:{raw}" for key, raw in pairs) + "}"
    if layout == 3:
        text = draw(st.sampled_from([" ", "\n", "{} "])) + text if draw(st.booleans()) else text + "\n"
    return text.encode()


def canonical_taken(clickhouse: ClickhouseStore) -> set[int]:
    return {int(offset) for (offset,) in clickhouse.rows(f"SELECT kafka_offset FROM {PARSED_TABLE}")}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(canonical_looking(), min_size=1, max_size=40))
def test_the_canonical_path_reaches_the_full_parses_verdicts_and_values(
    clickhouse: ClickhouseStore, batch: list[bytes]
) -> None:
    """Canonical path then full parse == full parse alone == pydantic, verdict by verdict and
    row by row, for payloads made to look canonical; and only valid payloads take the fast path."""
    store = SpendStore(clickhouse=clickhouse)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    store.load_raw([SourceRecord(0, n, payload) for n, payload in enumerate(batch)])
    store.parse_canonical(topic="t", ingested_at=at, latest=LATEST)
    for offset in canonical_taken(clickhouse):
        assert problems_of(batch[offset]) == frozenset(), batch[offset]
    both = sql_verdicts(clickhouse, batch, canonical=True)
    by_both = stored_rows(clickhouse)
    full = sql_verdicts(clickhouse, batch)
    by_full = stored_rows(clickhouse)
    for payload, with_canonical, alone in zip(batch, both, full, strict=True):
        assert with_canonical == alone == problems_of(payload), payload
    assert by_both == by_full
    assert stored_by_pydantic(clickhouse, batch) == by_full


label_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'), max_size=256
)
"""Printable ASCII but the two characters JSON escapes: what the canonical form holds."""


@st.composite
def gateway_events(draw: st.DrawFn) -> SpendEvent:
    """Valid events as gateways record them (a latency is 0 or at least a nanosecond, the clock's
    resolution), with labels the canonical form holds."""
    optional = st.none() | label_text
    return SpendEvent(
        event_id=str(draw(st.uuids())),
        occurred_at=draw(
            st.datetimes(datetime(2000, 1, 1), datetime(2099, 12, 31, 23, 59, 59), timezones=st.just(UTC))
        ),
        key_hash=draw(st.none() | st.binary(min_size=32, max_size=32).map(bytes.hex)),
        user_id=draw(optional), team_id=draw(optional), org_id=draw(optional), end_user=draw(optional),
        key_alias=draw(optional), model_group=draw(optional), provider=draw(optional), call_type=draw(optional),
        error_class=draw(optional), agent_id=draw(optional), session_id=draw(optional),
        model=draw(label_text.filter(bool)), gateway_id=draw(label_text.filter(bool)),
        prompt_tokens=draw(st.integers(0, 10**9 - 1)), completion_tokens=draw(st.integers(0, 10**9 - 1)),
        total_tokens=draw(st.integers(0, 10**9 - 1)),
        cost=draw(st.decimals(0, Decimal("999999.99"), places=draw(st.integers(0, 24)))),
        cache_hit=draw(st.booleans()), status=draw(st.sampled_from(["success", "failure"])),
        latency_ms=draw(st.just(0.0) | st.floats(1e-6, 9_999_999)),
        request_tags=tuple(draw(st.lists(label_text, max_size=3))),
    )  # fmt: skip


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(gateway_events(), min_size=1, max_size=20))
@example(  # latencies pydantic writes with the most fractional digits (a run found the first)
    events=[make_event(latency_ms=ms) for ms in (0.0006284968598657304, 0.000022382287058851624, 3.3333333333333333e-6)]
)
def test_what_gateways_write_takes_the_canonical_path(clickhouse: ClickhouseStore, events: list[SpendEvent]) -> None:
    """Every such event a gateway writes is read by the fast path, as pydantic reads it."""
    store = SpendStore(clickhouse=clickhouse)
    store.load_raw([SourceRecord(0, n, event.to_json()) for n, event in enumerate(events)])
    store.parse_canonical(topic="t", ingested_at=datetime(2026, 12, 1, tzinfo=UTC), latest=LATEST)
    assert store.unparsed() == []
    by_canonical = stored_rows(clickhouse)
    store.load_decoded(
        [(event, 0, n) for n, event in enumerate(events)], topic="t", ingested_at=datetime(2026, 12, 1, tzinfo=UTC)
    )
    assert stored_rows(clickhouse) == by_canonical


def test_every_near_canonical_value_reaches_the_same_verdict_on_each_path(clickhouse: ClickhouseStore) -> None:
    """Each listed near-canonical value alone in an otherwise canonical payload: the fast path
    takes only valid ones, and it takes the unchanged canonical payload."""

    def canonical(pairs: dict[str, str]) -> bytes:
        return ("{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs.items()) + "}").encode()

    batch = [canonical(CANONICAL_VALID)]
    for field in CANONICAL_VALID:
        values = NEAR_CANONICAL[KIND[field]] if field in KIND else [json.dumps("x" * 256), json.dumps("x" * 257)]
        batch += [canonical({**CANONICAL_VALID, field: raw}) for raw in values]
    store = SpendStore(clickhouse=clickhouse)
    store.load_raw([SourceRecord(0, n, payload) for n, payload in enumerate(batch)])
    store.parse_canonical(topic="t", ingested_at=datetime(2026, 12, 1, tzinfo=UTC), latest=LATEST)
    taken = canonical_taken(clickhouse)
    assert 0 in taken
    assert all(problems_of(batch[offset]) == frozenset() for offset in taken)
    both, full = sql_verdicts(clickhouse, batch, canonical=True), sql_verdicts(clickhouse, batch)
    for payload, with_canonical, alone in zip(batch, both, full, strict=True):
        assert with_canonical == alone == problems_of(payload), payload
