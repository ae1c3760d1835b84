"""Rolling a batch of events up into exact windowed totals per scope and model."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal, Inexact
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spendpipe.schemas.events import SpendEvent
from spendpipe.schemas.scopes import Scope, ScopeType
from spendpipe.schemas.windows import Window
from spendpipe.services.aggregator.rollup import TOTALS_COLUMNS, Rollup, Totals, roll_up, totals_columns

NOON = datetime(2026, 11, 28, 12, 0, 30, tzinfo=UTC)  # a Saturday
KEY = "ab" * 32
GLOBAL = Scope(ScopeType.GLOBAL, "")


def event(n: int = 0, **overrides: Any) -> SpendEvent:
    values: dict[str, Any] = {
        "event_id": f"call-{n}",
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
    ]
    return [GLOBAL, *(Scope(kind, value) for kind, value in candidates if value)]


def test_many_tiny_costs_sum_exactly() -> None:
    costs = [Decimal(f"0.{n:024d}") + Decimal("0.000000314159265358979323") for n in range(2_000)]
    events = [event(n, cost=cost) for n, cost in enumerate(costs)]

    rollup = roll_up(events)

    total = rollup.totals[(Window.MONTH, start_of(Window.MONTH, NOON), GLOBAL, "")].spend
    assert Fraction(total) == sum((Fraction(c) for c in costs), Fraction(0))


def test_float_prices_that_would_drift_sum_exactly() -> None:
    events = [event(n, cost=Decimal("0.1")) for n in range(10)]

    total = roll_up(events).totals[(Window.DAY, start_of(Window.DAY, NOON), GLOBAL, "")].spend

    assert total == Decimal("1.0")


def test_a_sum_that_cannot_be_exact_raises_instead_of_rounding() -> None:
    # SpendEvent refuses a cost this large (MAX_EVENT_COST); the rollup's own guard is checked
    # here on events built without that validation
    big = Decimal("99999999999999.999999999999999999999999")
    events = [
        event(0).model_copy(update={"cost": big}),
        event(1).model_copy(update={"cost": Decimal("0.000000000000000000000002")}),
    ]

    with pytest.raises(Inexact):
        roll_up(events)


def test_one_event_fans_out_to_every_scope_model_and_window() -> None:
    rollup = roll_up([event()])

    expected_scopes = {
        GLOBAL,
        Scope(ScopeType.KEY, KEY),
        Scope(ScopeType.USER, "alice"),
        Scope(ScopeType.TEAM, "eng"),
        Scope(ScopeType.TEAM_MEMBER, "eng/alice"),
        Scope(ScopeType.ORG, "acme"),
        Scope(ScopeType.END_USER, "customer-7"),
    }
    assert rollup.scopes == expected_scopes
    assert rollup.models == {"gpt-4o-mini"}
    assert set(rollup.totals) == {
        (window, start_of(window, NOON), scope, model)
        for window in Window
        for scope in expected_scopes
        for model in ("", "gpt-4o-mini")
    }
    assert all(t.spend == Decimal("0.000123456789012345678901") for t in rollup.totals.values())


def test_an_anonymous_event_counts_only_globally() -> None:
    rollup = roll_up([event(key_hash=None, user_id=None, team_id=None, org_id=None, end_user=None)])

    assert rollup.scopes == {GLOBAL}
    assert len(rollup.totals) == 2 * len(Window)


def test_model_group_is_the_billed_model() -> None:
    rollup = roll_up([event(model="azure/gpt-4o-2024-08-06", model_group="gpt-4o")])

    assert rollup.models == {"gpt-4o"}
    assert {key[3] for key in rollup.totals} == {"", "gpt-4o"}


def test_totals_are_kept_per_scope_and_per_window() -> None:
    earlier = NOON - timedelta(hours=1)
    events = [
        event(1, cost=Decimal("1.5"), team_id="eng"),
        event(2, cost=Decimal("2.25"), team_id="ops", occurred_at=earlier),
        event(3, cost=Decimal("4"), team_id="eng", occurred_at=earlier),
    ]

    totals = roll_up(events).totals

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


def test_an_event_at_sunday_midnight_opens_a_new_week() -> None:
    saturday = datetime(2026, 11, 28, 23, 59, 59, tzinfo=UTC)
    sunday = datetime(2026, 11, 29, tzinfo=UTC)

    totals = roll_up([event(1, occurred_at=saturday), event(2, occurred_at=sunday)]).totals

    weeks = {key[1] for key in totals if key[0] is Window.WEEK}
    assert weeks == {start_of(Window.WEEK, saturday), start_of(Window.WEEK, sunday)}
    assert start_of(Window.WEEK, sunday) == int(sunday.timestamp())


def test_counters_add_up() -> None:
    events = [
        event(1, prompt_tokens=5, completion_tokens=7, total_tokens=12),
        event(2, status="failure", error_class="RateLimitError", cost=Decimal(0)),
        event(3, cache_hit=True, cost=Decimal(0)),
    ]

    totals = roll_up(events).totals[(Window.MINUTE, start_of(Window.MINUTE, NOON), GLOBAL, "")]

    assert totals == Totals(
        spend=Decimal("0.000123456789012345678901"),
        requests=3,
        failures=1,
        cache_hits=1,
        prompt_tokens=25,
        completion_tokens=47,
        total_tokens=72,
    )


def test_no_events_no_totals() -> None:
    assert roll_up([]).totals == {}


def test_totals_columns_are_column_oriented_with_watermarks_last() -> None:
    rollup = roll_up([event(key_hash=None, user_id=None, team_id=None, org_id=None, end_user=None)])
    watermarks = {"spend.events:0": 41, "spend.events:2": 7}

    columns = totals_columns(rollup, watermarks)

    assert len(TOTALS_COLUMNS) == 13
    assert len(columns) == 13
    by_name = dict(zip(TOTALS_COLUMNS, columns, strict=True))
    rows = len(rollup.totals) + len(watermarks)
    assert all(len(column) == rows for column in columns)
    assert list(by_name["window"][-2:]) == ["watermark", "watermark"]
    assert list(by_name["scope_type"][-2:]) == ["ingest", "ingest"]
    assert list(by_name["scope_id"][-2:]) == ["spend.events:0", "spend.events:2"]
    assert list(by_name["ingest_offset"]) == [-1] * len(rollup.totals) + [41, 7]
    assert list(by_name["spend"][-2:]) == [0, 0]
    assert set(by_name["window"][:-2]) == {w.value for w in Window}
    assert set(by_name["scope_type"][:-2]) == {"global"}
    assert set(by_name["model"]) == {"", "gpt-4o-mini"}
    assert set(by_name["spend"][:-2]) == {Decimal("0.000123456789012345678901")}
    assert set(by_name["requests"][:-2]) == {1}


def test_totals_columns_for_a_row_matches_its_key() -> None:
    rollup = roll_up([event()])
    key = (Window.HOUR, start_of(Window.HOUR, NOON), Scope(ScopeType.TEAM, "eng"), "gpt-4o-mini")

    columns = totals_columns(rollup, {})
    rows = [dict(zip(TOTALS_COLUMNS, row, strict=True)) for row in zip(*columns, strict=True)]
    (row,) = [
        r
        for r in rows
        if (r["window"], r["scope_type"], r["scope_id"], r["model"]) == ("hour", "team", "eng", "gpt-4o-mini")
    ]

    assert row["window_start"] == key[1]
    assert row["spend"] == rollup.totals[key].spend
    assert (row["requests"], row["prompt_tokens"], row["completion_tokens"], row["total_tokens"]) == (
        1,
        10,
        20,
        30,
    )


def test_totals_columns_of_nothing_is_empty() -> None:
    assert totals_columns(Rollup(), {}) == []


def test_totals_columns_with_only_watermarks() -> None:
    columns = totals_columns(Rollup(), {"spend.events:1": 99})

    assert [list(c) for c in columns] == [
        ["watermark"],
        [0],
        ["ingest"],
        ["spend.events:1"],
        [""],
        [Decimal(0)],
        [0],
        [0],
        [0],
        [0],
        [0],
        [0],
        [99],
    ]


random_events = st.lists(
    st.builds(
        lambda offset, cost, key, user, team, org, end_user, model, group: event(
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
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(random_events)
def test_every_total_is_the_plain_sum_of_its_events(events: list[SpendEvent]) -> None:
    expected_spend: dict[tuple[Window, int, Scope, str], Fraction] = defaultdict(Fraction)
    expected_requests: dict[tuple[Window, int, Scope, str], int] = defaultdict(int)
    for e in events:
        for window in Window:
            for scope in attributions(e):
                for model in ("", e.model_group or e.model):
                    key = (window, start_of(window, e.occurred_at), scope, model)
                    expected_spend[key] += Fraction(e.cost)
                    expected_requests[key] += 1

    totals = roll_up(events).totals

    assert set(totals) == set(expected_spend)
    for key, t in totals.items():
        assert Fraction(t.spend) == expected_spend[key], key
        assert t.requests == expected_requests[key], key
    for window in Window:
        for begin in {start_of(window, e.occurred_at) for e in events}:
            in_window = [e.cost for e in events if start_of(window, e.occurred_at) == begin]
            assert Fraction(totals[(window, begin, GLOBAL, "")].spend) == sum(map(Fraction, in_window))
