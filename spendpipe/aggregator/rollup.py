"""Rolling a batch of events up into windowed totals per scope, inside ClickHouse.

The writer stages a batch's new events in a temporary Memory table (`STAGE_TABLE`, private
to the writer's ClickHouse session). One `INSERT … SELECT` then turns them into totals in
three steps that keep the fan-out small: events are summed per (minute, attribution, model);
each of those groups is added to its scopes x {all models, its model} per minute; each
(minute, scope, model) total fans out to the calendar windows. The totals are written together
with the batch's watermark rows, as one block: one part, all or nothing.

The fanned-out rows are not grouped again in the SELECT: where a batch spans several minutes,
their hour, day, week and month rows share a key, and the insert sums those as it sorts the
block for the part (`optimize_on_insert`, what a merge of `spend_totals` does), so the part
still holds one row per key. A GROUP BY over the ~17 fanned-out rows per event was about 40%
of the statement's time (2026-12-02, docs/performance.md); the insert sorts the block anyway.

ClickHouse sums decimals as exact integers, so no total is ever rounded, but it wraps a sum that
outgrows its type without an error. A batch holds at most 500k events (`batch_size`'s bound) of at most $1M each
(`MAX_EVENT_COST`): its sums stay far inside the 14 integer digits of `Decimal(38, 24)`. The
window totals, which add up batch after batch, are `Decimal(76, 24)`: the rollup widens each
batch's sum to it. Token counts are summed as UInt128, the type of the
`spend_totals` columns: at most 10^9 per event (`MAX_TOKENS`), no sum can overflow.

The day, week and month windows start on the deployment's calendar (`windows.Calendar`): the
zone goes into ClickHouse's `toStartOfDay`/`toStartOfWeek`/`toStartOfMonth`, which read midnight
as Python's zoneinfo does (a DST day is 23 or 25 hours; where midnight does not exist the day starts
at the change). The scope ids are `store.scope_sql`'s (an event group fans out to one scope per
attributed tag). The fan-out here must agree with `scopes_of` (the scopes) and `window_start` (the
windows); `tests/integration/test_rollup.py` checks it against both on random events, and
`tests/integration/test_calendar_windows.py` the windows in several zones. The flush announcement
names its scopes by the same fan-out (`scopes_sql`), checked against the totals' scopes there too.
"""

from spendpipe.aggregator.parse import PARSED_TABLE as STAGE_TABLE
from spendpipe.contracts.scopes import ALL_MODELS, ScopeType
from spendpipe.contracts.windows import UTC_SUNDAY, Calendar, WeekStart, Window
from spendpipe.store.scope_sql import ATTRIBUTED_TAGS, SCOPE_IDS
from spendpipe.store.totals import INGEST_SCOPE_TYPE, WATERMARK_WINDOW

NO_OFFSET = -1


def _window_starts(calendar: Calendar) -> dict[Window, str]:
    """Each window's start as an expression on `minute` (a UTC minute); the zone's name is
    checked by `Calendar` (letters, digits, `_+-/` only) before it is written into SQL."""
    zone = calendar.timezone
    mode = 0 if calendar.week_start is WeekStart.SUNDAY else 1  # toStartOfWeek: 0 Sunday, 1 Monday
    return {
        Window.MINUTE: "minute",
        Window.HOUR: "toStartOfHour(minute)",
        Window.DAY: f"toDateTime(toStartOfDay(minute, '{zone}'), 'UTC')",
        Window.WEEK: f"toDateTime(toDateTime(toStartOfWeek(minute, {mode}, '{zone}'), '{zone}'), 'UTC')",
        Window.MONTH: f"toDateTime(toDateTime(toStartOfMonth(minute, '{zone}'), '{zone}'), 'UTC')",
    }


_SCOPE_TYPE_LIST = (
    "arrayConcat(["
    + ", ".join(f"'{scope_type.value}'" for scope_type in SCOPE_IDS)
    + f"], arrayMap(t -> '{ScopeType.TAG.value}', tags))"
)
_SCOPE_ID_LIST = "arrayConcat([" + ", ".join(SCOPE_IDS.values()) + "], tags)"
"""Each scope an event group counts towards: the one-id types, then one scope per attributed tag."""
_WINDOW_NAMES = "[" + ", ".join(f"'{window.value}'" for window in Window) + "]"
_SCOPE_JOIN = f"ARRAY JOIN {_SCOPE_TYPE_LIST} AS scope_type, {_SCOPE_ID_LIST} AS scope_id"
_IS_SCOPE = f"scope_id != '' OR scope_type = '{ScopeType.GLOBAL.value}'"
"""From rows of attributions (the stage's columns, the tags as `tags`) to one row per scope each
counts towards (`scope_type`, `scope_id`), with the filter that drops absent ids: the rollup's
fan-out and the announcement's."""


def rollup_sql(calendar: Calendar = UTC_SUNDAY) -> str:
    """Totals of the staged rows that `{new_rows}` selects, plus one watermark row per
    `<topic>:<partition>`: the highest offset those totals include; windows on `calendar`. All
    of it, or nothing when the condition `{fence}` is false (`ownership.Fence`)."""
    starts = _window_starts(calendar)
    return _ROLLUP_SQL.replace("{window_starts}", "[" + ", ".join(starts[window] for window in Window) + "]")


_ROLLUP_SQL = f"""
INSERT INTO spend_totals (window, window_start, scope_type, scope_id, model, spend, requests, failures,
    cache_hits, prompt_tokens, completion_tokens, total_tokens, ingest_offset)
SELECT * FROM (
SELECT window, window_start, scope_type, scope_id, model, toDecimal256(spend, 24), requests, failures,
    cache_hits, prompt, completion, total, {NO_OFFSET}
FROM (
    SELECT minute, scope_type, scope_id, model, sum(spend) AS spend, sum(requests) AS requests,
        sum(failures) AS failures, sum(cache_hits) AS cache_hits, sum(prompt) AS prompt,
        sum(completion) AS completion, sum(total) AS total
    FROM (
        SELECT toDateTime(toStartOfMinute(occurred_at), 'UTC') AS minute,
            key_hash, user_id, team_id, org_id, end_user, provider, {ATTRIBUTED_TAGS} AS tags, billed_model,
            sum(cost) AS spend, count() AS requests, countIf(status = 'failure') AS failures,
            countIf(cache_hit) AS cache_hits, sum(toUInt128(prompt_tokens)) AS prompt,
            sum(toUInt128(completion_tokens)) AS completion, sum(toUInt128(total_tokens)) AS total
        FROM {STAGE_TABLE}
        WHERE {{new_rows}}
        GROUP BY minute, key_hash, user_id, team_id, org_id, end_user, provider, tags, billed_model
    )
    {_SCOPE_JOIN}
    ARRAY JOIN ['{ALL_MODELS}', billed_model] AS model
    WHERE {_IS_SCOPE}
    GROUP BY minute, scope_type, scope_id, model
)
ARRAY JOIN {_WINDOW_NAMES} AS window, {{window_starts}} AS window_start
UNION ALL
SELECT '{WATERMARK_WINDOW}', toDateTime(0, 'UTC'), '{INGEST_SCOPE_TYPE}', mark.1, '{ALL_MODELS}',
    toDecimal256(0, 24), 0, 0, 0, 0, 0, 0, mark.2
FROM system.one
ARRAY JOIN arrayZip({{sources:Array(String)}}, {{offsets:Array(Int64)}}) AS mark
) WHERE {{fence}}
"""


def rows_after(watermarks: dict[int, int], up_to: dict[int, int] | None = None) -> str:
    """A filter on the stage: the rows of each partition past its watermark (-1: every row),
    and, with `up_to`, at or below that partition's offset there. Built from ints only, in
    parentheses (it is combined with AND); a partition not named takes no rows."""
    if not watermarks:
        return "0"
    bounds = up_to or {}
    return (
        "("
        + " OR ".join(
            f"(kafka_partition = {int(partition)} AND kafka_offset > {int(offset)}"
            + (f" AND kafka_offset <= {int(bounds[partition])})" if partition in bounds else ")")
            for partition, offset in sorted(watermarks.items())
        )
        + ")"
    )


def scopes_sql(rows: str) -> str:
    """The distinct (scope_type, scope_id) of the staged rows that `rows` (a condition) selects:
    every scope whose totals they count towards, by the rollup's own fan-out (for the flush
    announcement; ClickHouse's work rather than a `scopes_of` call per event in Python).

    The distinct attributions are fanned out, not the rows: a batch has far fewer of them than
    events (the benchmark's 200,000 events have 3,000), and fanning out every row made about ten
    rows an event to deduplicate: the statement took 0.13-0.14 s of CPU per 200,000 events against
    0.04, and the writer's `rollup` step, which runs it, 0.25-0.75 s a flush against 0.13-0.20
    (2026-12-03, docs/performance.md)."""
    return (
        "SELECT DISTINCT scope_type, scope_id FROM ("
        f"SELECT key_hash, user_id, team_id, org_id, end_user, provider, {ATTRIBUTED_TAGS} AS tags FROM ("
        "SELECT DISTINCT key_hash, user_id, team_id, org_id, end_user, provider, request_tags "
        f"FROM {STAGE_TABLE} WHERE {rows})) {_SCOPE_JOIN} WHERE {_IS_SCOPE}"
    )
