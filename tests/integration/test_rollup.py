"""Rolling a batch of events up into exact windowed totals per scope and model: the SQL the
writer runs, in the real ClickHouse engine, against totals worked out here by hand."""

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.aggregator.store import SourceRecord, SpendStore
from spendpipe.aggregator.writer import BatchWriter
from spendpipe.contracts.events import MAX_EVENT_COST, SpendEvent
from spendpipe.contracts.money import COST_PRECISION, COST_SCALE
from spendpipe.contracts.scopes import MAX_TAGS, Scope, ScopeType, attributed_tags, scopes_of
from spendpipe.contracts.windows import Window
from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.store.scope_sql import SCOPE_IDS
from tests.support.staging import stage

NOON = datetime(2026, 11, 28, 12, 0, 30, tzinfo=UTC)  # a Saturday
KEY = "ab" * 32
GLOBAL = Scope(ScopeType.GLOBAL, "")


def event(n: int = 0, **overrides: Any) -> SpendEvent:
    values: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=n)),
        "occurred_at": NOON,
        "key_hash": KEY,
        "user_id": "alice",
        "team_id": "eng",
        "org_id": "acme",
        "end_user": "customer-7",
        "model": "gpt-4o-mini",
        "cost": Decimal("0.000123456789012345678901"),
        "prompt_tokens": 10,
        "completion_tokens": 20,
        "total_tokens": 30,
        "gateway_id": "gw-1",
    }
    values.update(overrides)
    return SpendEvent(**values)


@dataclass(frozen=True)
class Totals:
    spend: Decimal = Decimal(0)
    requests: int = 0
    failures: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


Key = tuple[Window, int, Scope, str]


def roll_up(clickhouse: ClickhouseStore, events: list[SpendEvent], **watermarks: int) -> dict[Key, Totals]:
    """Stage `events` (partition 0, offsets 0..n-1) and run the writer's rollup over those past
    the watermark; read back every total row, watermark rows apart."""
    clickhouse.command("TRUNCATE TABLE spend_totals")
    store = SpendStore(clickhouse=clickhouse)
    stage(store, [(e, 0, n) for n, e in enumerate(events)], topic="t", ingested_at=NOON)
    store.insert_totals(after={0: watermarks.get("after", -1)}, watermarks={})
    rows = clickhouse.rows(
        "SELECT window, toUnixTimestamp(window_start), scope_type, scope_id, model, sum(spend), sum(requests), "
        "sum(failures), sum(cache_hits), sum(prompt_tokens), sum(completion_tokens), sum(total_tokens) "
        "FROM spend_totals GROUP BY ALL"
    )
    return {
        (Window(window), int(start), Scope(ScopeType(kind), scope_id), model): Totals(spend, *(int(v) for v in counts))
        for window, start, kind, scope_id, model, spend, *counts in rows
    }


def announced(clickhouse: ClickhouseStore) -> set[Scope]:
    """The scopes the flush announcement names for the stage `roll_up` left: every usable row's."""
    return SpendStore(clickhouse=clickhouse).written(new_after={0: -1}).scopes


def start_of(window: Window, moment: datetime) -> int:
    """Window starts computed with calendar arithmetic, independently of the windows module."""
    moment = moment.astimezone(UTC).replace(microsecond=0)
    if window is Window.MINUTE:
        begin = moment.replace(second=0)
    elif window is Window.HOUR:
        begin = moment.replace(minute=0, second=0)
    elif window is Window.DAY:
        begin = moment.replace(hour=0, minute=0, second=0)
    elif window is Window.WEEK:
        midnight = moment.replace(hour=0, minute=0, second=0)
        begin = midnight - timedelta(days=(midnight.weekday() + 1) % 7)  # back to Sunday
    else:
        begin = moment.replace(day=1, hour=0, minute=0, second=0)
    return int(begin.timestamp())


def attributions(e: SpendEvent) -> list[Scope]:
    """The scopes an event counts towards, spelled out from the rule in the scopes docstring."""
    team_member = f"{e.team_id}/{e.user_id}" if e.team_id and e.user_id else None
    candidates = [
        (ScopeType.KEY, e.key_hash),
        (ScopeType.USER, e.user_id),
        (ScopeType.TEAM, e.team_id),
        (ScopeType.TEAM_MEMBER, team_member),
        (ScopeType.ORG, e.org_id),
        (ScopeType.END_USER, e.end_user),
        (ScopeType.PROVIDER, e.provider),
    ]
    distinct_tags: list[str] = []
    for tag in e.request_tags:
        if tag and tag not in distinct_tags and not re.fullmatch("<[+][0-9]+ more>", tag):
            distinct_tags.append(tag)
    tags = [Scope(ScopeType.TAG, tag) for tag in distinct_tags[:32]]
    return [GLOBAL, *(Scope(kind, value) for kind, value in candidates if value), *tags]


def scopes_in(totals: dict[Key, Totals]) -> set[Scope]:
    return {key[2] for key in totals}


def models_in(totals: dict[Key, Totals]) -> set[str]:
    return {key[3] for key in totals if key[3]}


def test_many_tiny_costs_sum_exactly(clickhouse: ClickhouseStore) -> None:
    costs = [Decimal(f"0.{n:024d}") + Decimal("0.000000314159265358979323") for n in range(2_000)]
    events = [event(n, cost=cost) for n, cost in enumerate(costs)]

    totals = roll_up(clickhouse, events)

    total = totals[(Window.MONTH, start_of(Window.MONTH, NOON), GLOBAL, "")].spend
    assert Fraction(total) == sum((Fraction(c) for c in costs), Fraction(0))


def test_float_prices_that_would_drift_sum_exactly(clickhouse: ClickhouseStore) -> None:
    events = [event(n, cost=Decimal("0.1")) for n in range(10)]

    total = roll_up(clickhouse, events)[(Window.DAY, start_of(Window.DAY, NOON), GLOBAL, "")].spend

    assert total == Decimal("1.0")


def test_the_largest_batch_of_the_largest_events_fits_the_money_type() -> None:
    # ClickHouse sums Decimal(38, 24) as integers without a precision check: the bounds on one
    # batch keep every sum inside the type's integer digits
    largest_sum = MAX_EVENT_COST * AggregatorSettings.model_fields["batch_size"].metadata[-1].le

    assert largest_sum < Decimal(10) ** (COST_PRECISION - COST_SCALE)


def test_one_event_fans_out_to_every_scope_model_and_window(clickhouse: ClickhouseStore) -> None:
    totals = roll_up(clickhouse, [event()])

    expected_scopes = {
        GLOBAL,
        Scope(ScopeType.KEY, KEY),
        Scope(ScopeType.USER, "alice"),
        Scope(ScopeType.TEAM, "eng"),
        Scope(ScopeType.TEAM_MEMBER, "eng/alice"),
        Scope(ScopeType.ORG, "acme"),
        Scope(ScopeType.END_USER, "customer-7"),
    }
    assert scopes_in(totals) == expected_scopes == announced(clickhouse)
    assert models_in(totals) == {"gpt-4o-mini"}
    assert set(totals) == {
        (window, start_of(window, NOON), scope, model)
        for window in Window
        for scope in expected_scopes
        for model in ("", "gpt-4o-mini")
    }
    assert all(t.spend == Decimal("0.000123456789012345678901") for t in totals.values())


def test_an_anonymous_event_counts_only_globally(clickhouse: ClickhouseStore) -> None:
    totals = roll_up(clickhouse, [event(key_hash=None, user_id=None, team_id=None, org_id=None, end_user=None)])

    assert scopes_in(totals) == {GLOBAL}
    assert len(totals) == 2 * len(Window)


def test_a_user_outside_any_team_has_no_team_membership(clickhouse: ClickhouseStore) -> None:
    totals = roll_up(clickhouse, [event(team_id=None)])

    assert {scope.type for scope in scopes_in(totals)} == {
        ScopeType.GLOBAL, ScopeType.KEY, ScopeType.USER, ScopeType.ORG, ScopeType.END_USER
    }  # fmt: skip


def test_model_group_is_the_billed_model(clickhouse: ClickhouseStore) -> None:
    totals = roll_up(clickhouse, [event(model="azure/gpt-4o-2024-08-06", model_group="gpt-4o")])

    assert models_in(totals) == {"gpt-4o"}
    assert {key[3] for key in totals} == {"", "gpt-4o"}


def test_totals_are_kept_per_scope_and_per_window(clickhouse: ClickhouseStore) -> None:
    earlier = NOON - timedelta(hours=1)
    events = [
        event(1, cost=Decimal("1.5"), team_id="eng"),
        event(2, cost=Decimal("2.25"), team_id="ops", occurred_at=earlier),
        event(3, cost=Decimal("4"), team_id="eng", occurred_at=earlier),
    ]

    totals = roll_up(clickhouse, events)

    def spend(window: Window, at: datetime, scope: Scope, model: str = "") -> Decimal:
        return totals[(window, start_of(window, at), scope, model)].spend

    eng, ops = Scope(ScopeType.TEAM, "eng"), Scope(ScopeType.TEAM, "ops")
    assert spend(Window.HOUR, NOON, eng) == Decimal("1.5")
    assert spend(Window.HOUR, earlier, eng) == Decimal("4")
    assert spend(Window.DAY, NOON, eng) == Decimal("5.5")
    assert spend(Window.DAY, NOON, ops) == Decimal("2.25")
    assert spend(Window.HOUR, NOON, GLOBAL) == Decimal("1.5")
    assert spend(Window.WEEK, NOON, GLOBAL, "gpt-4o-mini") == Decimal("7.75")
    assert (Window.HOUR, start_of(Window.HOUR, NOON), ops, "") not in totals


def test_a_flush_over_several_minutes_writes_one_row_per_total(clickhouse: ClickhouseStore) -> None:
    """The hour, day, week and month rows of a batch's minutes share a key: the insert sums them
    (the SELECT does not group the fanned-out rows again), so the part has one row per key."""
    events = [event(n, occurred_at=NOON + timedelta(minutes=n % 3), team_id=f"t{n % 2}") for n in range(12)]

    totals = roll_up(clickhouse, events)

    rows = clickhouse.rows("SELECT count() FROM spend_totals")
    assert rows == [(len(totals),)]
    assert totals[(Window.HOUR, start_of(Window.HOUR, NOON), GLOBAL, "")].requests == 12
    assert totals[(Window.MINUTE, start_of(Window.MINUTE, NOON), GLOBAL, "")].requests == 4


@pytest.mark.parametrize("minutes", [1, 3])
def test_the_writer_leaves_one_row_per_total_whether_a_flush_spans_one_minute_or_more(
    clickhouse: ClickhouseStore, minutes: int
) -> None:
    """The writer skips the insert's summing for a batch within one minute (`NOTHING_TO_SUM`),
    where no two rows share a key; a batch over several minutes still gets one row per key."""
    events = [event(n, occurred_at=NOON + timedelta(minutes=n % minutes), team_id=f"t{n % 2}") for n in range(12)]
    writer = BatchWriter(store=SpendStore(clickhouse=clickhouse), topic="t", dedup_horizon_s=600)

    writer.write([SourceRecord(0, n, e.to_json()) for n, e in enumerate(events)])

    keys = "window, window_start, scope_type, scope_id, model"
    [(rows, distinct)] = clickhouse.rows(f"SELECT count(), uniqExact({keys}) FROM spend_totals")
    assert rows == distinct
    hour = "window = 'hour' AND scope_type = 'global' AND model = ''"
    assert clickhouse.rows(f"SELECT count(), sum(requests) FROM spend_totals WHERE {hour}") == [(1, 12)]


def test_an_event_at_sunday_midnight_opens_a_new_week(clickhouse: ClickhouseStore) -> None:
    saturday = datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC)
    sunday = datetime(2026, 11, 29, tzinfo=UTC)

    totals = roll_up(clickhouse, [event(1, occurred_at=saturday), event(2, occurred_at=sunday)])

    weeks = {key[1] for key in totals if key[0] is Window.WEEK}
    assert weeks == {start_of(Window.WEEK, saturday), start_of(Window.WEEK, sunday)}
    assert start_of(Window.WEEK, sunday) == int(sunday.timestamp())


def test_counters_add_up(clickhouse: ClickhouseStore) -> None:
    events = [
        event(1, prompt_tokens=5, completion_tokens=7, total_tokens=12),
        event(2, status="failure", error_class="RateLimitError", cost=Decimal(0)),
        event(3, cache_hit=True, cost=Decimal(0)),
    ]

    totals = roll_up(clickhouse, events)[(Window.MINUTE, start_of(Window.MINUTE, NOON), GLOBAL, "")]

    assert totals == Totals(
        spend=Decimal("0.000123456789012345678901"),
        requests=3,
        failures=1,
        cache_hits=1,
        prompt_tokens=25,
        completion_tokens=47,
        total_tokens=72,
    )


def test_only_rows_past_the_watermark_are_rolled_up(clickhouse: ClickhouseStore) -> None:
    events = [event(n, cost=Decimal(n)) for n in range(1, 6)]  # offsets 0..4

    totals = roll_up(clickhouse, events, after=2)

    assert totals[(Window.DAY, start_of(Window.DAY, NOON), GLOBAL, "")] == Totals(
        spend=Decimal(4 + 5), requests=2, prompt_tokens=20, completion_tokens=40, total_tokens=60
    )


def test_no_events_no_totals(clickhouse: ClickhouseStore) -> None:
    assert roll_up(clickhouse, []) == {}


def test_watermark_rows_land_with_the_totals(clickhouse: ClickhouseStore) -> None:
    store = SpendStore(clickhouse=clickhouse)
    stage(store, [(event(1), 0, 41), (event(2), 2, 7)], topic="spend.events", ingested_at=NOON)

    store.insert_totals(after={0: -1, 2: -1}, watermarks={"spend.events:0": 41, "spend.events:2": 7})

    assert store.totals_watermarks("spend.events") == {0: 41, 2: 7}
    assert clickhouse.rows("SELECT count() FROM system.parts WHERE table = 'spend_totals' AND active "
                           "AND database = currentDatabase()") == [(1,)]  # fmt: skip


random_events = st.lists(
    st.builds(
        lambda offset, cost, key, user, team, org, end_user, model, group, tags, provider: event(
            0,
            occurred_at=datetime(2026, 12, 30, tzinfo=UTC) + timedelta(seconds=offset),
            cost=cost,
            key_hash=key,
            user_id=user,
            team_id=team,
            org_id=org,
            end_user=end_user,
            model=model,
            model_group=group,
            request_tags=tags,
            provider=provider,
        ),
        # Four days around a month, year and week boundary.
        st.integers(min_value=0, max_value=4 * 86_400),
        st.decimals(min_value=0, max_value=1000, places=24, allow_nan=False, allow_infinity=False),
        st.sampled_from([None, "0" * 64, "f" * 64]),
        st.sampled_from([None, "alice", "bob"]),
        st.sampled_from([None, "eng", "ops"]),
        st.sampled_from([None, "acme"]),
        st.sampled_from([None, "customer-1", "customer-2"]),
        st.sampled_from(["gpt-4o", "claude-3-haiku"]),
        st.sampled_from([None, "smart"]),
        st.lists(st.sampled_from(["batch", "nightly", "", "<+2 more>", "<+x more>", "é'\\"]), max_size=4).map(tuple),
        st.sampled_from([None, "openai", "azure"]),
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(random_events)
def test_every_total_is_the_plain_sum_of_its_events(clickhouse: ClickhouseStore, events: list[SpendEvent]) -> None:
    expected_spend: dict[tuple[Window, int, Scope, str], Fraction] = defaultdict(Fraction)
    expected_requests: dict[tuple[Window, int, Scope, str], int] = defaultdict(int)
    for e in events:
        for window in Window:
            for scope in attributions(e):
                for model in ("", e.model_group or e.model):
                    key = (window, start_of(window, e.occurred_at), scope, model)
                    expected_spend[key] += Fraction(e.cost)
                    expected_requests[key] += 1

    totals = roll_up(clickhouse, events)

    assert set(totals) == set(expected_spend)
    assert announced(clickhouse) == scopes_in(totals)
    for key, t in totals.items():
        assert Fraction(t.spend) == expected_spend[key], key
        assert t.requests == expected_requests[key], key
    for window in Window:
        for begin in {start_of(window, e.occurred_at) for e in events}:
            in_window = [e.cost for e in events if start_of(window, e.occurred_at) == begin]
            assert Fraction(totals[(window, begin, GLOBAL, "")].spend) == sum(map(Fraction, in_window))


def test_staged_events_land_in_events_as_they_were_sent(clickhouse: ClickhouseStore) -> None:
    full = event(
        1,
        key_alias="sk-…abcd",
        model="azure/gpt-4o-2024-08-06",
        model_group="gpt-4o",
        provider="azure",
        call_type="acompletion",
        cache_hit=True,
        status="failure",
        error_class="RateLimitError",
        latency_ms=812.5,
        request_tags=("batch", "nightly"),
        occurred_at=datetime(2026, 11, 28, 12, 0, 30, 123456, tzinfo=UTC),
    )
    bare = event(2, key_hash=None, user_id=None, team_id=None, org_id=None, end_user=None)
    store = SpendStore(clickhouse=clickhouse)
    stage(store, [(full, 3, 17), (bare, 3, 18)], topic="spend.events", ingested_at=NOON)

    store.insert_events(after={3: -1})

    columns, rows = clickhouse.query("SELECT * FROM events ORDER BY kafka_offset")
    stored = [dict(zip(columns, row, strict=True)) for row in rows]
    assert [row["event_id"] for row in stored] == [uuid.UUID(int=1), uuid.UUID(int=2)]
    first, second = stored
    for field in ("key_hash", "user_id", "team_id", "org_id", "end_user", "key_alias", "provider", "call_type",
                  "model", "model_group", "cost", "cache_hit", "status", "error_class", "latency_ms", "gateway_id",
                  "prompt_tokens", "completion_tokens", "total_tokens", "schema_version"):  # fmt: skip
        assert first[field] == getattr(full, field), field
    assert first["occurred_at"].replace(tzinfo=UTC) == full.occurred_at
    assert first["ingested_at"].replace(tzinfo=UTC) == NOON
    assert first["billed_model"] == "gpt-4o"
    assert first["request_tags"] == ["batch", "nightly"]
    assert (first["kafka_topic"], first["kafka_partition"], first["kafka_offset"]) == ("spend.events", 3, 17)
    assert [second[f] for f in ("key_hash", "user_id", "team_id", "org_id", "end_user", "key_alias")] == [""] * 6
    assert second["billed_model"] == "gpt-4o-mini"
    assert second["request_tags"] == []


def test_the_sql_fans_out_to_every_scope_type_an_event_can_count_towards() -> None:
    every_attribute = scopes_of(KEY, "alice", "eng", "acme", "customer-7", tags=["batch"], provider="openai")

    assert {scope.type for scope in every_attribute} == {*SCOPE_IDS, ScopeType.TAG}


def test_an_event_counts_once_towards_each_distinct_tag_and_its_provider(clickhouse: ClickhouseStore) -> None:
    tags = ("batch", "nightly", "batch", "", "<+4 more>", "a:b|c")
    totals = roll_up(clickhouse, [event(1, cost=Decimal("0.25"), request_tags=tags, provider="openai")])

    def day(scope: Scope) -> Totals | None:
        return totals.get((Window.DAY, start_of(Window.DAY, NOON), scope, ""))

    for tag in ("batch", "nightly", "a:b|c"):
        assert day(Scope(ScopeType.TAG, tag)) == Totals(Decimal("0.25"), 1, 0, 0, 10, 20, 30)
    assert day(Scope(ScopeType.PROVIDER, "openai")) == Totals(Decimal("0.25"), 1, 0, 0, 10, 20, 30)
    assert day(Scope(ScopeType.TAG, "<+4 more>")) is None  # the overflow marker is no tag
    assert day(Scope(ScopeType.TAG, "")) is None
    assert day(GLOBAL) == Totals(Decimal("0.25"), 1, 0, 0, 10, 20, 30)  # counted once, not once per tag
    scopes = {key[2] for key in totals if key[2].type in (ScopeType.TAG, ScopeType.PROVIDER)}
    assert scopes == announced(clickhouse) - set(attributions(event())) == {
        Scope(ScopeType.TAG, "batch"), Scope(ScopeType.TAG, "nightly"), Scope(ScopeType.TAG, "a:b|c"),
        Scope(ScopeType.PROVIDER, "openai"),
    }  # fmt: skip


def test_at_most_max_tags_distinct_tags_of_an_event_are_attributed(clickhouse: ClickhouseStore) -> None:
    # an event from a producer that did not bound its tags: the first MAX_TAGS distinct ones count
    tags = tuple(f"t{n % 40}" for n in range(80))
    totals = roll_up(clickhouse, [event(1, cost=Decimal(1), request_tags=tags)])

    tagged = {key[2].id for key in totals if key[2].type is ScopeType.TAG}
    assert tagged == {f"t{n}" for n in range(MAX_TAGS)} == set(attributed_tags(tags))
    assert totals[(Window.DAY, start_of(Window.DAY, NOON), GLOBAL, "")].spend == Decimal(1)


def test_a_flush_bigger_than_an_insert_block_still_lands_as_one_part(clickhouse: ClickhouseStore) -> None:
    # stand-in for a flush past ClickHouse's ~1M-row insert block: blocks of 10 rows by default
    events = [event(n, key_hash=f"{n:064x}", end_user=f"customer-{n}") for n in range(300)]
    store = SpendStore(clickhouse=clickhouse)
    client = clickhouse._client
    defaults = dict(
        clickhouse.rows(
            "SELECT name, value FROM system.settings WHERE name IN ('min_insert_block_size_rows', 'max_block_size')"
        )
    )
    for name in defaults:
        client.set_client_setting(name, "10")
    try:
        stage(store, [(e, 0, n) for n, e in enumerate(events)], topic="spend.events", ingested_at=NOON)
        store.insert_totals(after={0: -1}, watermarks={"spend.events:0": 299})
        store.insert_events(after={0: -1})
    finally:
        for name, value in defaults.items():
            client.set_client_setting(name, value)

    parts = clickhouse.rows(
        "SELECT table, count() FROM system.parts WHERE database = currentDatabase() AND active "
        "AND table IN ('spend_totals', 'events') GROUP BY table ORDER BY table"
    )
    assert parts == [("events", 1), ("spend_totals", 1)]
    assert clickhouse.rows("SELECT count() FROM events") == [(300,)]
