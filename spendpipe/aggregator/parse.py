"""The `SpendEvent` contract as SQL: ClickHouse parses and checks a whole batch at once.

Records in the gateways' canonical form take a fast path first (`CANONICAL_SQL`, at the end of
this module); what follows is the full check, for every other record.

The aggregator loads each batch's records as they came (partition, offset, value bytes)
into `RAW_TABLE`: a load that no record can make fail. One `INSERT … SELECT` (`PARSE_SQL`)
then reads every value into the `events` columns of `PARSED_TABLE` and lists what is wrong with
it in `problems`, as (field, problem, message) — the same (field, `Problem`) verdicts
`spendpipe.contracts.events.problems_of` gives, which `tests/integration/test_parse_contract.py`
holds it to with generated payloads. A record with problems is dead-lettered with
`reason`; the rest are counted. Nothing here can throw on a value: every conversion is an
`…OrZero`/`…OrNull` form whose result is used only once the checks passed.

How the JSON is read: one `JSONExtractKeysAndValuesRaw` gives each field's raw text, whose
first character says its JSON type (`"` string, `[` array, `t`/`f` boolean, `n` null, else a
number); a string is decoded from it (a plain slice unless it holds an escape). The raw text of a
number is rewritten (`12.0` reads `12`), so a count is "a JSON number with no fraction", in both
checkers. The reader (simdjson) writes an integer past 64 bits as a quoted string of digits; such
a value where a string belongs is taken for a number when its quoted digits are not in the
record as written (`_big_integer`). Two contrived records still get another verdict than
pydantic's: a string of 20 or more digits written with escapes (`"\u0031…"`, taken for a
number), and a bare integer past 64 bits whose digits also appear quoted elsewhere in the
record (taken for a string).

Each field's rule is chosen by name in `FIELD_RULES`; a field of the model without a rule is a
bug `tests/unit/test_parse_rules.py` catches.
"""

from collections.abc import Callable
from decimal import Decimal

from spendpipe.contracts.events import (
    EARLIEST,
    EVENT_ID_FORM,
    LATEST,
    MALFORMED_REASON,
    MAX_EVENT_COST,
    MAX_LATENCY_MS,
    MAX_TOKENS,
    SCHEMA_VERSION,
    TIMESTAMP_FORM,
    Problem,
    SpendEvent,
)
from spendpipe.contracts.money import COST_FORM, COST_SCALE

RAW_TABLE = "spendpipe_raw"
PARSED_TABLE = "spendpipe_stage"

LABEL_CHARS = 256
KEY_HASH_FORM = r"^[0-9a-f]{64}$"
NUMBER_FORM = r"^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$"

PARSE_SETTINGS: dict[str, object] = {}


def sql_text(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _raw(field: str) -> str:
    return f"raw_{field}"


def _str(field: str) -> str:
    return f"str_{field}"


def _decoded(raw: str) -> str:
    """The string a raw JSON string stands for: a slice when it has no escape (the reader writes
    any character that needs one escaped), else JSON's own decoding."""
    return (
        f"if(position({raw}, '\\\\') = 0, substring({raw}, 2, length({raw}) - 2), "
        f"JSONExtractString(concat('[', {raw}, ']'), 1))"
    )


def _big_integer(raw: str) -> str:
    return f"(length({raw}) >= 22 AND match({raw}, '^\"-?[0-9]{{20,}}\"$') AND position(value, {raw}) = 0)"


def _is_string(raw: str) -> str:
    """Whether a raw value is a JSON string (and not an integer past 64 bits)."""
    return f"(startsWith({raw}, '\"') AND NOT {_big_integer(raw)})"


def _string(field: str) -> str:
    """Whether the field is a JSON string (computed once per record, see `_PER_FIELD`)."""
    return f"is_string_{field}"


Check = list[tuple[str, str]]
"""(condition, message) pairs, in order: the first condition that holds is the problem."""


def _needs_string(field: str, *, nullable: bool, required: bool) -> Check:
    raw = _raw(field)
    checks: Check = []
    if required:
        checks.append((f"{raw} = ''", "field required"))
    allowed = _string(field) + (f" OR {raw} = 'null'" if nullable else "")
    checks.append((f"{raw} != '' AND NOT ({allowed})", "must be a string" + (" or null" if nullable else "")))
    return checks


def _label(field: str) -> Check:
    return [
        *_needs_string(field, nullable=True, required=False),
        (_too_long(field), f"must have at most {LABEL_CHARS} characters"),
    ]


def _too_long(field: str) -> str:
    return f"length({_str(field)}) > {LABEL_CHARS} AND lengthUTF8({_str(field)}) > {LABEL_CHARS}"


def _name(field: str) -> Check:
    return [
        *_needs_string(field, nullable=False, required=True),
        (f"{_str(field)} = ''", "must have at least 1 character"),
        (_too_long(field), f"must have at most {LABEL_CHARS} characters"),
    ]


def _pattern(pattern: str, message: str, *, nullable: bool, required: bool) -> Callable[[str], Check]:
    def rule(field: str) -> Check:
        return [
            *_needs_string(field, nullable=nullable, required=required),
            (f"{_string(field)} AND NOT match({_str(field)}, {sql_text(pattern)})", message),
        ]

    return rule


def _count(field: str) -> Check:
    raw = _raw(field)
    return [
        (f"{raw} != '' AND NOT match({raw}, {sql_text(NUMBER_FORM)})", "must be a JSON number with no fractional part"),
        (f"{raw} != '' AND toFloat64OrZero({raw}) != floor(toFloat64OrZero({raw}))", "must have no fractional part"),
        (
            f"{raw} != '' AND NOT (toFloat64OrZero({raw}) BETWEEN 0 AND {MAX_TOKENS})",
            f"must be from 0 to {MAX_TOKENS}",
        ),
    ]


def _latency(field: str) -> Check:
    raw = _raw(field)
    return [
        (f"{raw} != '' AND NOT match({raw}, {sql_text(NUMBER_FORM)})", "must be a JSON number"),
        (
            f"{raw} != '' AND NOT (toFloat64OrZero({raw}) BETWEEN 0 AND {MAX_LATENCY_MS})",
            f"must be from 0 to {MAX_LATENCY_MS:g}",
        ),
    ]


_COST_DIGITS = "cost_digits"
"""The cost string without a leading minus sign (pydantic's amount checks see the sign)."""
_COST_FRACTION = "cost_fraction"
"""Its fractional digits, trailing zeros dropped (they do not count against the 24 places)."""


def _cost(field: str) -> Check:
    return [
        *_needs_string(field, nullable=False, required=True),
        (
            f"NOT match({_COST_DIGITS}, {sql_text(COST_FORM.pattern)})",
            'must be a plain decimal string such as "0.000225"',
        ),
        (f"length({_COST_FRACTION}) > {COST_SCALE}", f"must have at most {COST_SCALE} decimal places"),
        (
            f"startsWith({_str(field)}, '-') AND toDecimal128OrZero({_COST_DIGITS}, {COST_SCALE}) != 0",
            "must be greater than or equal to 0",
        ),
        (
            f"toDecimal128OrZero({_COST_DIGITS}, {COST_SCALE}) > {MAX_EVENT_COST}",
            f"must be less than or equal to {MAX_EVENT_COST}",
        ),
    ]


def _flag(field: str) -> Check:
    raw = _raw(field)
    return [(f"{raw} NOT IN ('', 'true', 'false')", "must be true or false")]


def _status(field: str) -> Check:
    raw = _raw(field)
    return [
        (
            f"{raw} != '' AND NOT ({_string(field)} AND {_str(field)} IN ('success', 'failure'))",
            "must be 'success' or 'failure'",
        )
    ]


def _tags(field: str) -> Check:
    raw = _raw(field)
    return [
        (f"{raw} != '' AND NOT startsWith({raw}, '[')", "must be an array of strings"),
        (
            f"startsWith({raw}, '[') AND NOT arrayAll(x -> {_is_string('x')}, JSONExtractArrayRaw({raw}))",
            "must be an array of strings",
        ),
    ]


def _local_time(text: str) -> str:
    """An RFC 3339 time's date and time without its offset, read as UTC; NULL when it is no time."""
    return (
        f"toDateTime64OrNull(concat(substring({text}, 1, 10), ' ', "
        f"substring({text}, 12, length({text}) - if(endsWith({text}, 'Z'), 12, 17))), 6, 'UTC')"
    )


_LOCAL_TIME = "local_time"
"""`occurred_at` read without its offset, as UTC; NULL when it is no time at all."""
_OCCURRED_AT = "parsed_occurred_at"


def _timestamp(field: str) -> Check:
    return [
        *_needs_string(field, nullable=False, required=True),
        (
            f"NOT match({_str(field)}, {sql_text(TIMESTAMP_FORM.pattern)})",
            "must be RFC 3339 with T, at most 6 fractional digits and an offset (Z or +hh:mm)",
        ),
        (
            f"{_LOCAL_TIME} IS NULL "
            f"OR formatDateTime({_LOCAL_TIME}, '%Y-%m-%dT%H:%i:%S') != substring({_str(field)}, 1, 19)",
            "is not a date and time of the calendar",
        ),
        (
            f"NOT ({_OCCURRED_AT} >= toDateTime64({sql_text(f'{EARLIEST:%Y-%m-%d %H:%M:%S}')}, 6, 'UTC') "
            f"AND {_OCCURRED_AT} < toDateTime64({sql_text(f'{LATEST:%Y-%m-%d %H:%M:%S}')}, 6, 'UTC'))",
            f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}",
        ),
    ]


FIELD_RULES: dict[str, Callable[[str], Check]] = {
    "event_id": _pattern(EVENT_ID_FORM.pattern, "must be a lowercase UUID", nullable=False, required=True),
    "occurred_at": _timestamp,
    "key_hash": _pattern(KEY_HASH_FORM, "must be the SHA-256 of the key in hex", nullable=True, required=False),
    "key_alias": _label,
    "user_id": _label,
    "team_id": _label,
    "org_id": _label,
    "end_user": _label,
    "model": _name,
    "model_group": _label,
    "provider": _label,
    "call_type": _label,
    "prompt_tokens": _count,
    "completion_tokens": _count,
    "total_tokens": _count,
    "cost": _cost,
    "cache_hit": _flag,
    "status": _status,
    "error_class": _label,
    "latency_ms": _latency,
    "request_tags": _tags,
    "gateway_id": _name,
    "agent_id": _label,
    "session_id": _label,
}
"""The rule of each field of `SpendEvent` but `schema_version` (read before any of them)."""

FIELDS = tuple(SpendEvent.model_fields)


def _code(field: str) -> str:
    return f"code_{field}"


def _field_code(field: str) -> str:
    """The number of the first failed check of `field` (from 1), 0 when all pass: a UInt8 per
    record, cheap; the problem tuples are built only for records that have one."""
    checks = FIELD_RULES[field](field)
    branches = ", ".join(f"{condition}, {n}" for n, (condition, _) in enumerate(checks, start=1))
    return f"multiIf({branches}, 0)"


def _field_problem(field: str) -> str:
    """(field, problem, message) of the failed check numbered `code_<field>`."""
    checks = FIELD_RULES[field](field)
    kinds = [Problem.MISSING.value if message == "field required" else Problem.INVALID.value for _, message in checks]
    return (
        f"tuple({sql_text(field)}, [{', '.join(map(sql_text, kinds))}][{_code(field)}], "
        f"[{', '.join(sql_text(message) for _, message in checks)}][{_code(field)}])"
    )


def _label_value(field: str) -> str:
    return f"if({_string(field)}, {_str(field)}, '')"


def _count_value(field: str) -> str:
    return f"toUInt64(toFloat64OrZero({_raw(field)}))"


_KNOWN = "[" + ", ".join(sql_text(field) for field in FIELDS) + "]"

_VALUES = {
    "event_id": f"toUUIDOrZero({_str('event_id')})",
    "occurred_at": f"ifNull({_OCCURRED_AT}, toDateTime64(0, 6, 'UTC'))",
    "ingested_at": "{ingested_at:DateTime64(3)}",
    "key_hash": _label_value("key_hash"),
    "key_alias": _label_value("key_alias"),
    "user_id": _label_value("user_id"),
    "team_id": _label_value("team_id"),
    "org_id": _label_value("org_id"),
    "end_user": _label_value("end_user"),
    "model": _label_value("model"),
    "model_group": _label_value("model_group"),
    "billed_model": f"if({_label_value('model_group')} != '', {_label_value('model_group')}, {_label_value('model')})",
    "provider": _label_value("provider"),
    "call_type": _label_value("call_type"),
    "prompt_tokens": _count_value("prompt_tokens"),
    "completion_tokens": _count_value("completion_tokens"),
    "total_tokens": _count_value("total_tokens"),
    "cost": f"toDecimal128OrZero({_COST_DIGITS}, {COST_SCALE})",
    "cache_hit": f"{_raw('cache_hit')} = 'true'",
    "status": f"if({_str('status')} = 'failure', 'failure', 'success')",
    "error_class": _label_value("error_class"),
    "latency_ms": f"toFloat64OrZero({_raw('latency_ms')})",
    "request_tags": (f"arrayMap(x -> {_decoded('x')}, JSONExtractArrayRaw({_raw('request_tags')}))"),
    "gateway_id": _label_value("gateway_id"),
    "schema_version": f"toUInt8({SCHEMA_VERSION})",
    "kafka_topic": "{topic:String}",
    "kafka_partition": "kafka_partition",
    "kafka_offset": "kafka_offset",
    "agent_id": _label_value("agent_id"),
    "session_id": _label_value("session_id"),
}
"""Each `events` column from the checked fields (meaningful only for a record without problems)."""

EVENT_COLUMNS = tuple(_VALUES)
"""The `events` table's columns, in its order."""

_NOT_STRINGS = frozenset(
    {"schema_version", "prompt_tokens", "completion_tokens", "total_tokens", "cache_hit", "latency_ms", "request_tags"}
)
"""Fields whose rule reads only the raw text."""

_PER_FIELD = ",\n        ".join(
    f"raw_values[indexOf(keys, {sql_text(field)})] AS {_raw(field)}"
    + ("" if field in _NOT_STRINGS else f", {_decoded(_raw(field))} AS {_str(field)}")
    + ("" if field in _NOT_STRINGS else f", {_is_string(_raw(field))} AS {_string(field)}")
    for field in FIELDS
)

_UNSUPPORTED = f"unsupported schema_version ' || {_raw('schema_version')} || ': this consumer reads {SCHEMA_VERSION}"

_MALFORMED = f"[tuple('', {sql_text(Problem.MALFORMED.value)}, {sql_text(MALFORMED_REASON)})]"

PROBLEMS_SQL = f"""multiIf(
    value = '', [tuple('', {sql_text(Problem.MALFORMED.value)}, 'empty message (no value)')],
    NOT well_formed, {_MALFORMED},
    length(arrayDistinct(keys)) != length(keys), {_MALFORMED},
    {_raw("schema_version")} NOT IN ('', '{SCHEMA_VERSION}'),
        [tuple('schema_version', {sql_text(Problem.UNSUPPORTED_VERSION.value)}, '{_UNSUPPORTED}')],
    {" AND ".join(f"{_code(field)} = 0" for field in FIELD_RULES)} AND hasAll({_KNOWN}, keys), [],
    arrayConcat(
        arrayMap(k -> tuple(k, {sql_text(Problem.UNKNOWN_FIELD.value)}, 'extra inputs are not permitted'),
            arrayFilter(k -> NOT has({_KNOWN}, k), keys)),
        arrayFilter(p -> p.1 != '', [
            {", ".join(f"if({_code(field)} = 0, tuple('', '', ''), {_field_problem(field)})" for field in FIELD_RULES)}
        ])
    )
)"""

_CODES = ",\n        ".join(f"{_field_code(field)} AS {_code(field)}" for field in FIELD_RULES)

_ISO = (
    f"formatDateTime({_OCCURRED_AT}, '%Y-%m-%dT%H:%i:%S') "
    f"|| if(toUnixTimestamp64Micro({_OCCURRED_AT}) % 1000000 = 0, '', formatDateTime({_OCCURRED_AT}, '.%f')) "
    "|| '+00:00'"
)
_AHEAD = (
    f"'occurred_at ' || {_ISO} || ' is more than ' || {{allowance:String}} || ' s ahead of the aggregator''s clock "
    "(' || formatDateTime({latest:DateTime64(6)}, '%Y-%m-%dT%H:%i:%S.%f') || ' at the latest)'"
)
"""The reason for an event dated past the future allowance (its time as `isoformat` writes it)."""

PARSE_SQL = f"""
INSERT INTO {PARSED_TABLE}
SELECT {", ".join(f"{_VALUES[column]} AS {column}" for column in EVENT_COLUMNS)},
    arrayConcat(problems, if(empty(problems) AND {_OCCURRED_AT} > {{latest:DateTime64(6)}},
        [tuple('occurred_at', 'future', {_AHEAD})], [])
    ) AS problems
FROM (
    SELECT kafka_partition, kafka_offset, value,
        isValidUTF8(value) AND match(value, '^[ \\t\\n\\r]*\\\\{{') AND isValidJSON(value) AS well_formed,
        JSONExtractKeysAndValuesRaw(value) AS raw_pairs,
        arrayMap(p -> p.1, raw_pairs) AS keys,
        arrayMap(p -> p.2, raw_pairs) AS raw_values,
        {_PER_FIELD},
        if(startsWith({_str("cost")}, '-'), substring({_str("cost")}, 2), {_str("cost")}) AS {_COST_DIGITS},
        trimRight(substring({_COST_DIGITS}, position({_COST_DIGITS}, '.') + 1), '0') AS cost_fraction_raw,
        if(position({_COST_DIGITS}, '.') = 0, '', cost_fraction_raw) AS {_COST_FRACTION},
        {_local_time(_str("occurred_at"))} AS {_LOCAL_TIME},
        {_LOCAL_TIME} - toIntervalSecond(
            multiIf(endsWith({_str("occurred_at")}, 'Z'), 0,
                (if(substring({_str("occurred_at")}, -6, 1) = '-', -1, 1))
                * (toInt32OrZero(substring({_str("occurred_at")}, -5, 2)) * 3600
                   + toInt32OrZero(substring({_str("occurred_at")}, -2, 2)) * 60))
        ) AS {_OCCURRED_AT},
        {_CODES},
        {PROBLEMS_SQL} AS problems
    FROM {RAW_TABLE}
    WHERE (kafka_partition, kafka_offset) NOT IN (SELECT kafka_partition, kafka_offset FROM {PARSED_TABLE})
)
"""
"""Parse the rows of `RAW_TABLE` not yet in `PARSED_TABLE` (those `CANONICAL_SQL` did not take,
or all) into `PARSED_TABLE`, with `{topic}`, `{ingested_at}`, `{latest}` (the latest
`occurred_at` accepted: the aggregator's clock plus its allowance) and `{allowance}` (the
allowance in seconds, for the reason) as parameters."""


REASON_SQL = (
    "if(problems[1].2 IN ('unsupported_version', 'malformed', 'future'), "
    "if(problems[1].3 != 'empty message (no value)' AND problems[1].2 = 'malformed', "
    "'invalid spend event: ' || problems[1].3, problems[1].3), "
    "'invalid spend event: ' || arrayStringConcat(arrayMap(p -> p.1 || ': ' || p.3, arraySlice(problems, 1, 5)), '; '))"
)
"""The dead letter's reason for a row with problems: what its first five problems say."""


# The gateways' canonical form: a fast path for the records nearly all traffic is made of.
#
# A gateway writes each event with `SpendEvent.to_json`: the fields in the model's order, no
# whitespace, absent labels left out, a time in UTC with `Z`. The check above reads any JSON
# object in any order and costs about 0.3 s of CPU to analyse and 0.5 s per 100,000 records to
# run; a record in the canonical form is recognised by one regular expression (`CANONICAL_FORM`)
# and read by ClickHouse's typed JSON reader in one pass (`CANONICAL_SQL`), for about a third of
# that. The form is narrower than the contract on purpose: only strings of printable ASCII
# without escapes (a byte is a character, a value is its own text), only times in UTC (`Z`, or
# `+00:00` as `isoformat` writes it) on a day the calendar has and in the contract's years, only
# amounts, counts and latencies whose number of digits alone keeps them inside the contract's
# bounds (a latency may have a negative exponent, as pydantic writes one below 1e-5: that only
# makes the value smaller; above it pydantic writes up to 21 fractional digits, four zeros and
# 17 significant ones, as in 0.000022382287058851624). So every record the expression takes is
# valid and reads the same as the full check reads it; the rest, and every record dated past the
# future allowance, go through `PARSE_SQL` or pydantic as before.
# `tests/integration/test_parse_contract.py` holds the three to the same verdicts and values,
# with hostile records made to look canonical.

_PLAIN = r"[ !#-\[\]-~]"
"""A character a JSON string holds as itself: printable ASCII but the quote and the backslash."""


def _plain_string(least: int) -> str:
    """A string of plain characters; its length limit is checked apart (`_CANONICAL_LENGTHS`):
    a bounded repetition makes the expression's automaton count, which costs a third more."""
    return f'"{_PLAIN}{"+" if least else "*"}"'


def _digits_below(bound: float | Decimal) -> str:
    """A whole number without sign or leading zero, short enough to stay below `bound`."""
    most = len(str(int(bound))) - 1
    return f"(?:0|[1-9][0-9]{{0,{most - 1}}})"


def _form(pattern: str) -> str:
    return pattern.removeprefix("^").removesuffix("$")


_DAY = "(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)|(?:0[13578]|1[02])-31)"
"""A month and day every year has."""
_YEAR = "20[0-9]{2}"
"""2000 to 2099: the contract's `EARLIEST` to `LATEST` (a unit test holds them together)."""
_LEAP_DAY = "20(?:[02468][048]|[13579][26])-02-29"
"""February 29 of the leap years among them (every fourth, 2000 included)."""

CANONICAL_FIELDS: dict[str, str] = {
    "schema_version": str(SCHEMA_VERSION),
    "event_id": f'"{_form(EVENT_ID_FORM.pattern)}"',
    "occurred_at": (
        f'"(?:{_YEAR}-{_DAY}|{_LEAP_DAY})T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\\.[0-9]{{1,6}})?(?:Z|\\+00:00)"'
    ),
    "key_hash": f'"{_form(KEY_HASH_FORM)}"',
    "key_alias": _plain_string(0),
    "user_id": _plain_string(0),
    "team_id": _plain_string(0),
    "org_id": _plain_string(0),
    "end_user": _plain_string(0),
    "model": _plain_string(1),
    "model_group": _plain_string(0),
    "provider": _plain_string(0),
    "call_type": _plain_string(0),
    "prompt_tokens": _digits_below(MAX_TOKENS),
    "completion_tokens": _digits_below(MAX_TOKENS),
    "total_tokens": _digits_below(MAX_TOKENS),
    "cost": f'"{_digits_below(MAX_EVENT_COST)}(?:\\.[0-9]{{1,{COST_SCALE}}})?"',
    "cache_hit": "(?:true|false)",
    "status": '"(?:success|failure)"',
    "error_class": _plain_string(0),
    "latency_ms": f"{_digits_below(MAX_LATENCY_MS)}(?:\\.[0-9]{{1,21}})?(?:e-[1-9][0-9]?)?",
    "request_tags": f'\\[(?:"{_PLAIN}*"(?:,"{_PLAIN}*")*)?\\]',
    "gateway_id": _plain_string(1),
    "agent_id": _plain_string(0),
    "session_id": _plain_string(0),
}
"""Each field's value in the canonical form (a regular expression on its JSON text)."""

CANONICAL_FORM = (
    "^\\{"
    + "".join(
        (
            f'(?:,"{field}":{CANONICAL_FIELDS[field]})?'
            if SpendEvent.model_fields[field].default is None
            else f'{"" if n == 0 else ","}"{field}":{CANONICAL_FIELDS[field]}'
        )
        for n, field in enumerate(FIELDS)
    )
    + "\\}$"
)
"""A record as `SpendEvent.to_json` writes a valid event of the form above: the fields
in the model's order, the labels that are None left out (the first field, `schema_version`, is
always there)."""

_CANONICAL_TYPES = {
    "prompt_tokens": "UInt64",
    "completion_tokens": "UInt64",
    "total_tokens": "UInt64",
    "cache_hit": "Bool",
    "latency_ms": "Float64",
    "request_tags": "Array(String)",
}
_CANONICAL_TUPLE = (
    "Tuple("
    + ", ".join(f"{field} {_CANONICAL_TYPES.get(field, 'String')}" for field in FIELDS if field != "schema_version")
    + ")"
)
"""The typed reader's target: a label left out reads as ''."""

_CANONICAL_TIME = "canonical_time"

_CANONICAL_LENGTHS = " AND ".join(
    f"length(c.{field}) <= {LABEL_CHARS}" for field, rule in FIELD_RULES.items() if rule in (_label, _name)
)
"""The labels' and names' length limit (in bytes, which are characters in the canonical form)."""

_CANONICAL_VALUES = {
    **_VALUES,
    **{field: f"c.{field}" for field in FIELDS if field in _VALUES and field != "schema_version"},
    "event_id": "toUUIDOrZero(c.event_id)",
    "occurred_at": _CANONICAL_TIME,
    "billed_model": "if(c.model_group != '', c.model_group, c.model)",
    "cost": f"toDecimal128OrZero(c.cost, {COST_SCALE})",
}
"""Each `events` column of a canonical record, read from its typed tuple `c`."""

CANONICAL_SQL = f"""
INSERT INTO {PARSED_TABLE}
SELECT {", ".join(f"{_CANONICAL_VALUES[column]} AS {column}" for column in EVENT_COLUMNS)},
    CAST([], 'Array(Tuple(String, String, String))') AS problems
FROM (
    SELECT kafka_partition, kafka_offset, JSONExtract(value, {sql_text(_CANONICAL_TUPLE)}) AS c,
        {_local_time("c.occurred_at")} AS {_CANONICAL_TIME}
    FROM {RAW_TABLE}
    WHERE match(value, {sql_text(CANONICAL_FORM)})
)
WHERE {_CANONICAL_TIME} <= {{latest:DateTime64(6)}} AND {_CANONICAL_LENGTHS}
"""
"""Parse the records of `RAW_TABLE` in the canonical form (`CANONICAL_FORM` and
`_CANONICAL_LENGTHS`), and dated no later than `{latest}`,
into `PARSED_TABLE` (with `{topic}` and `{ingested_at}`), all of them accepted; `PARSE_SQL`
then takes the rest."""
