"""The views for analysts (migrations 0006 and 0011): real events through the real aggregator into chDB,
then each view gives the sums worked out here by hand, to the last decimal place, and no view
shows the aggregator's bookkeeping rows."""

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from spendpipe.contracts.windows import Window, window_start
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.conftest import aggregator_settings
from tests.support.events import make_event
from tests.support.pipeline import events_counted, produce, running_aggregator

K1, K2, K3 = ("1" * 64, "2" * 64, "3" * 64)
TINY = Decimal("0.000000000000000000000001")  # the smallest amount a cost may carry


def _events(now: datetime) -> list[Any]:
    common = {"occurred_at": now, "org_id": "acme", "end_user": None, "model_group": None}
    return [
        make_event(
            **common, key_hash=K1, user_id="alice", team_id="eng", model="gpt-4o", cost=Decimal("0.1"),
            request_tags=("search", "beta"), prompt_tokens=10, completion_tokens=20, total_tokens=30,
            agent_id="planner", session_id="s-1",
        ),
        make_event(
            **common, key_hash=K2, user_id="bob", team_id="eng", model="claude", cost=Decimal("0.02"),
            request_tags=("search", "search", "<+2 more>"), status="failure", prompt_tokens=5, completion_tokens=0,
            total_tokens=5,
            agent_id="planner", session_id="s-1",
        ),
        make_event(
            **common, key_hash=K3, user_id="carol", team_id="ops", model="gpt-4o", cost=Decimal(1) + TINY,
            prompt_tokens=1, completion_tokens=2, total_tokens=3, agent_id="planner", session_id="s-2",
        ),
        make_event(
            **common, key_hash=K3, user_id="carol", team_id="ops", model="gpt-4o", cost=Decimal("0.3"),
            request_tags=("beta",), cache_hit=True, prompt_tokens=1, completion_tokens=1, total_tokens=2,
        ),
    ]  # fmt: skip


async def test_each_view_sums_exactly_and_hides_bookkeeping(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    # given four calls of two teams, counted by the real aggregator
    topics = await make_topics(kafka_broker)
    now = datetime.now(UTC).replace(microsecond=0)
    events = _events(now)
    async with running_aggregator(aggregator_settings(kafka_broker, topics, clickhouse_settings), clickhouse):
        await produce(kafka_broker, topics.events, [e.to_json() for e in events])
        await events_counted(clickhouse, len(events))
    day = datetime.fromtimestamp(window_start(Window.DAY, int(now.timestamp())), UTC).replace(tzinfo=None)
    hour = now.replace(minute=0, second=0, tzinfo=None)

    # then spend per scope: all models together, summed however the rows were merged
    by_scope = {
        (t, i): (s, r, f, c, p, o, n)
        for t, i, s, r, f, c, p, o, n in clickhouse.rows(
            "SELECT scope_type, scope_id, spend, requests, failures, cache_hits, prompt_tokens, "
            "completion_tokens, total_tokens FROM spend_by_scope "
            "WHERE window = 'day' AND window_start = {day:DateTime('UTC')}",
            {"day": day},
        )
    }
    assert by_scope[("team", "eng")] == (Decimal("0.12"), 2, 1, 0, 15, 20, 35)
    assert by_scope[("team", "ops")] == (Decimal("1.3") + TINY, 2, 0, 1, 2, 3, 5)
    assert by_scope[("global", "")] == (Decimal("1.42") + TINY, 4, 1, 1, 17, 23, 40)
    assert by_scope[("key", K3)][0] == Decimal("1.3") + TINY
    assert by_scope[("team_member", "eng/bob")][:3] == (Decimal("0.02"), 1, 1)
    assert {t for t, _ in by_scope} == {"global", "key", "user", "team", "team_member", "org", "tag"}
    assert {i: v[:3] for (t, i), v in by_scope.items() if t == "tag"} == {
        "beta": (Decimal("0.4"), 2, 0), "search": (Decimal("0.12"), 2, 1)
    }  # fmt: skip

    # and per model
    by_model = {
        (i, m): s
        for i, m, s in clickhouse.rows(
            "SELECT scope_id, model, spend FROM spend_by_model WHERE window = 'month' AND scope_type = 'team'"
        )
    }
    assert by_model == {("eng", "gpt-4o"): Decimal("0.1"), ("eng", "claude"): Decimal("0.02"),
                        ("ops", "gpt-4o"): Decimal("1.3") + TINY}  # fmt: skip

    # and per request tag: a call with two tags counts under each, one without under none, a tag
    # named twice once, the overflow marker under none: as the tag scopes count them
    by_tag = {
        t: (s, r, f, n)
        for t, h, s, r, f, n in clickhouse.rows(
            "SELECT tag, hour, spend, requests, failures, total_tokens FROM spend_by_tag ORDER BY tag"
        )
        if h == hour
    }
    assert by_tag == {"beta": (Decimal("0.4"), 2, 0, 32), "search": (Decimal("0.12"), 2, 1, 35)}

    # and per agent session (the call without one apart)
    sessions = clickhouse.rows(
        "SELECT agent_id, session_id, spend, requests, failures, total_tokens, first_call, last_call "
        "FROM spend_by_session ORDER BY session_id"
    )
    naive = now.replace(tzinfo=None)
    assert sessions == [
        ("planner", "s-1", Decimal("0.12"), 2, 1, 35, naive, naive),
        ("planner", "s-2", Decimal(1) + TINY, 1, 0, 3, naive, naive),
    ]

    # and the top spenders of the current month, ranked within each scope type
    top = clickhouse.rows(
        "SELECT scope_type, rank, scope_id, spend, requests FROM top_spenders "
        "WHERE window = 'month' AND scope_type IN ('team', 'key') ORDER BY scope_type, rank"
    )
    assert top == [
        ("key", 1, K3, Decimal("1.3") + TINY, 2),
        ("key", 2, K1, Decimal("0.1"), 1),
        ("key", 3, K2, Decimal("0.02"), 1),
        ("team", 1, "ops", Decimal("1.3") + TINY, 2),
        ("team", 2, "eng", Decimal("0.12"), 2),
    ]

    # and the bookkeeping rows, which the table does hold, appear in no view
    assert clickhouse.rows("SELECT count() FROM spend_totals WHERE window = 'watermark'")[0][0] > 0
    for view in ("spend_by_scope", "spend_by_model", "top_spenders"):
        leaked = clickhouse.rows(f"SELECT count() FROM {view} WHERE window = 'watermark' OR scope_type = 'ingest'")
        assert leaked == [(0,)], view
    assert clickhouse.rows("SELECT count() FROM spend_by_model WHERE model = ''") == [(0,)]
