"""Rolling a batch of events up into windowed totals per scope, inside ClickHouse.

The writer stages a batch's new events in a temporary Memory table (`STAGE_TABLE`, private
to the writer's ClickHouse session). One `INSERT … SELECT` then turns them into totals:
events are summed per (minute, attribution, model), each of those groups fans out to its
scopes x {all models, its model} x the calendar windows, and the result is summed again and
written together with the batch's watermark rows, as one block: one part, all or nothing.

ClickHouse sums `Decimal(38, 24)` as exact integers, so no total is ever rounded. A batch
holds at most 100k events of at most $1M each (`MAX_EVENT_COST`): its sums stay far inside
the 14 integer digits the type has.

The fan-out here must agree with `scopes_of` (the scopes) and `window_start` (the windows);
`tests/integration/test_rollup.py` checks it against both on random events.
"""

from collections.abc import Iterable

from spendpipe.schemas.scopes import ALL_MODELS, Scope, scopes_of
from spendpipe.schemas.windows import Window

STAGE_TABLE = "spendpipe_stage"
WATERMARK_WINDOW = "watermark"
INGEST_SCOPE_TYPE = "ingest"
NO_OFFSET = -1

Attribution = tuple[str | None, str | None, str | None, str | None, str | None]
"""(key hash, user, team, org, end user) of one event."""

_WINDOW_STARTS: dict[Window, str] = {
    Window.MINUTE: "minute",
    Window.HOUR: "toStartOfHour(minute)",
    Window.DAY: "toStartOfDay(minute)",
    Window.WEEK: "toDateTime(toStartOfWeek(minute, 0), 'UTC')",  # mode 0: weeks start on Sunday
    Window.MONTH: "toDateTime(toStartOfMonth(minute), 'UTC')",
}

_SCOPES = """arrayFilter(s -> s.1 = 'global' OR s.2 != '', [
        ('global', ''), ('key', key_hash), ('user', user_id), ('team', team_id),
        ('team_member', if(team_id != '' AND user_id != '', concat(team_id, '/', user_id), '')),
        ('org', org_id), ('end_user', end_user)])"""

_WINDOWS = "[" + ", ".join(f"('{window.value}', {start})" for window, start in _WINDOW_STARTS.items()) + "]"

ROLLUP_SQL = f"""
INSERT INTO spend_totals (window, window_start, scope_type, scope_id, model, spend, requests, failures,
    cache_hits, prompt_tokens, completion_tokens, total_tokens, ingest_offset)
SELECT w.1, w.2, s.1, s.2, m, sum(spend), sum(requests), sum(failures), sum(cache_hits),
    sum(prompt), sum(completion), sum(total), {NO_OFFSET}
FROM (
    SELECT toDateTime(toStartOfMinute(occurred_at), 'UTC') AS minute,
        key_hash, user_id, team_id, org_id, end_user, billed_model,
        sum(cost) AS spend, count() AS requests, countIf(status = 'failure') AS failures,
        countIf(cache_hit) AS cache_hits, sum(prompt_tokens) AS prompt,
        sum(completion_tokens) AS completion, sum(total_tokens) AS total
    FROM {STAGE_TABLE}
    WHERE {{new_rows}}
    GROUP BY minute, key_hash, user_id, team_id, org_id, end_user, billed_model
)
ARRAY JOIN {_SCOPES} AS s
ARRAY JOIN ['{ALL_MODELS}', billed_model] AS m
ARRAY JOIN {_WINDOWS} AS w
GROUP BY w.1, w.2, s.1, s.2, m
UNION ALL
SELECT '{WATERMARK_WINDOW}', toDateTime(0, 'UTC'), '{INGEST_SCOPE_TYPE}', mark.1, '{ALL_MODELS}',
    toDecimal128(0, 24), 0, 0, 0, 0, 0, 0, mark.2
FROM system.one
ARRAY JOIN arrayZip({{sources:Array(String)}}, {{offsets:Array(Int64)}}) AS mark
"""
"""Totals of the staged rows that `{new_rows}` selects, plus one watermark row per
`<topic>:<partition>`: the highest offset those totals include."""


def rows_after(watermarks: dict[int, int]) -> str:
    """A filter on the stage: the rows of each partition past its watermark (-1: every row).
    Built from ints only; a partition not named takes no rows."""
    if not watermarks:
        return "0"
    return " OR ".join(
        f"(kafka_partition = {int(partition)} AND kafka_offset > {int(offset)})"
        for partition, offset in sorted(watermarks.items())
    )


def touched_scopes(attributions: Iterable[Attribution]) -> set[Scope]:
    """Every scope whose totals a batch with these attributions changes (for the flush
    announcement); the same scopes the SQL fans out to."""
    return {scope for attribution in set(attributions) for scope in scopes_of(*attribution)}
