"""The key spend figure of successful proxy responses (`gateway/key_spend.py`): this gateway's
recorded cost per key in the key's window, or the enforcer's figure plus this gateway's calls
after it, with a header saying which."""

from datetime import UTC, datetime
from decimal import Decimal

from spendpipe.contracts.decisions import Decision
from spendpipe.contracts.durations import parse_duration
from spendpipe.contracts.windows import Calendar
from spendpipe.gateway.key_spend import KeySpend

KEY = "ab" * 32
OTHER = "cd" * 32


def utc(hour: int, minute: int = 0, day: int = 2) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


def decision(spend: str, at: datetime, expires: datetime | None, **fields: object) -> Decision:
    values: dict[str, object] = {
        "scope": f"key:{KEY}",
        "version": 1,
        "blocked": True,
        "reason": "r",
        "window": "24h",
        "spend": Decimal(spend),
        "cap": Decimal(1),
        "expires_at": expires,
        "decided_at": at,
    } | fields
    return Decision(**values)


def test_a_keys_figure_is_this_gateways_calls_in_the_keys_window() -> None:
    clock = Clock(utc(0, 30, day=1))  # the gateway started the day before
    spend = KeySpend(clock=clock)
    spend.add(KEY, Decimal("0.25"), utc(23, 50, day=1))  # yesterday
    spend.add(KEY, Decimal("0.5"), utc(10))
    spend.add(KEY, Decimal("0.125"), utc(11))
    spend.add(OTHER, Decimal("7"), utc(11))
    clock.now = utc(12).timestamp()

    daily = spend.figure(KEY, parse_duration("24h"), None)
    assert daily.headers() == {
        "x-litellm-key-spend": "0.625",
        "x-spendpipe-key-spend-basis": "this gateway since 2026-12-02T00:00:00Z",
    }
    # no duration: everything since the gateway started
    assert spend.figure(KEY, None, None).spend == Decimal("0.875")
    assert spend.figure("ef" * 32, None, None).headers()["x-litellm-key-spend"] == "0"


def test_the_keys_day_is_the_deployments_day() -> None:
    clock = Clock(utc(0, day=1))
    spend = KeySpend(calendar=Calendar("Asia/Kolkata"), clock=clock)
    spend.add(KEY, Decimal("0.5"), utc(18, 29))  # 23:59 in Kolkata
    spend.add(KEY, Decimal("0.25"), utc(18, 30))  # 00:00 the next day there
    clock.now = utc(19).timestamp()

    figure = spend.figure(KEY, parse_duration("1d"), None)
    assert (figure.spend, figure.gateway_since) == (Decimal("0.25"), utc(18, 30))


def test_the_enforcers_figure_in_its_window_plus_this_gateways_calls_after_it() -> None:
    clock = Clock(utc(0))
    spend = KeySpend(clock=clock)
    spend.add(KEY, Decimal("0.5"), utc(10, 4))  # in the enforcer's figure
    spend.add(KEY, Decimal("0.25"), utc(10, 6))
    clock.now = utc(10, 7).timestamp()

    figure = spend.figure(KEY, parse_duration("24h"), decision("1.5", utc(10, 5), utc(0, day=3)))
    assert figure.headers() == {
        "x-litellm-key-spend": "1.75",
        "x-spendpipe-key-spend-basis": "enforcer at 2026-12-02T10:05:00Z + this gateway since 2026-12-02T10:06:00Z",
    }
    # a figure whose window has reset, or on one model only, is not the key's: this gateway's calls
    for stale in (
        decision("1.5", utc(10, 5), utc(10, 6)),
        decision("1.5", utc(10, 5), utc(0, day=3), model="gpt-4o"),
        decision("1.5", utc(10, 5), utc(0, day=3), kind="rate_limit", rate_limit_type="requests", window=None),
    ):
        assert spend.figure(KEY, parse_duration("24h"), stale).spend == Decimal("0.75")


def test_minutes_older_than_the_longest_window_fold_into_the_keys_lifetime_sum() -> None:
    clock = Clock(datetime(2026, 10, 1, tzinfo=UTC))
    spend = KeySpend(clock=clock)
    spend.add(KEY, Decimal("1"), datetime(2026, 10, 1, tzinfo=UTC))
    clock.now = utc(0).timestamp()
    spend.add(KEY, Decimal("2"), utc(0))  # the add that folds October's minute

    assert spend.figure(KEY, None, None).spend == Decimal("3")
    assert spend.figure(KEY, parse_duration("1mo"), None).spend == Decimal("2")


def test_the_call_being_answered_counts_once() -> None:
    clock = Clock(utc(0))
    spend = KeySpend(clock=clock)
    spend.add(KEY, Decimal("0.5"), utc(10), "call-1")
    clock.now = utc(10, 1).timestamp()

    # its event not built yet: its cost is added
    assert spend.figure(KEY, None, None, call=("call-2", Decimal("0.25"))).spend == Decimal("0.75")
    # already recorded: not twice
    assert spend.figure(KEY, None, None, call=("call-1", Decimal("0.5"))).spend == Decimal("0.5")


def test_a_window_that_began_hours_ago_on_a_half_hour_zone_is_counted_exactly() -> None:
    clock = Clock(utc(0, day=1))
    spend = KeySpend(calendar=Calendar("Asia/Kolkata"), clock=clock)
    spend.add(KEY, Decimal("0.5"), utc(18, 29))  # 23:59 in Kolkata
    spend.add(KEY, Decimal("0.25"), utc(18, 31))  # 00:01 the next day there
    clock.now = utc(23).timestamp()
    spend.add(KEY, Decimal("0.125"), utc(23))  # folds the minutes of more than two hours ago

    figure = spend.figure(KEY, parse_duration("1d"), None)
    assert (figure.spend, figure.gateway_since) == (Decimal("0.375"), utc(18, 30))


def test_after_a_decision_of_hours_ago_the_figure_counts_from_the_next_quarter_and_says_so() -> None:
    clock = Clock(utc(0))
    spend = KeySpend(clock=clock)
    spend.add(KEY, Decimal("0.5"), utc(10, 10))
    spend.add(KEY, Decimal("0.25"), utc(10, 20))
    clock.now = utc(14).timestamp()
    spend.add(KEY, Decimal("0.125"), utc(14))

    figure = spend.figure(KEY, parse_duration("24h"), decision("1.5", utc(10, 5), utc(0, day=3)))
    assert figure.headers() == {
        "x-litellm-key-spend": "1.875",
        "x-spendpipe-key-spend-basis": "enforcer at 2026-12-02T10:05:00Z + this gateway since 2026-12-02T10:15:00Z",
    }


def test_a_key_busy_every_minute_for_a_week_keeps_minutes_for_two_hours_and_quarters_before() -> None:
    start = utc(0, day=1)
    clock = Clock(start)
    spend = KeySpend(clock=clock)
    for minute in range(7 * 24 * 60):
        clock.now = start.timestamp() + minute * 60
        spend.add(KEY, Decimal("0.001"), datetime.fromtimestamp(clock.now, UTC))

    assert spend.figure(KEY, None, None).spend == Decimal("10.080")
    assert len(spend._minutes[KEY]) <= 2 * 60 + 15
    assert len(spend._quarters[KEY]) <= 7 * 24 * 4
