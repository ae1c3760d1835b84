"""SDK mode end to end: LiteLLM `mock_response` calls through the plugin, real Kafka, the
aggregator, real ClickHouse. Totals per scope and window equal the sum of LiteLLM's own
`response_cost`, to the last digit; no raw API key is published or stored."""

import asyncio
import hashlib
import random
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import litellm

from spendpipe.contracts.money import cost_from_float
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.conftest import aggregator_settings
from tests.support.gateway import sdk_plugin
from tests.support.pipeline import counted_events, events_counted, read_topic, running_aggregator

CALLS = 300
FAILURES = 12
RAW_KEYS = [f"sk-test-raw-key-{n}-{'x' * 20}" for n in range(4)]
USERS = ["alice", "bob", "carol"]
TEAMS = ["search", "support"]
END_USERS = ["acme", "globex", "initech", "umbrella", "hooli"]
MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-3.5-turbo"]
WINDOWS = ["minute", "hour", "day", "week", "month"]


def attribution(i: int) -> dict[str, str]:
    return {
        "key": RAW_KEYS[i % 4],
        "user": USERS[i % 3],
        "team": TEAMS[(i // 3) % 2],
        "end_user": END_USERS[i % 5],
        "model": MODELS[(i // 2) % 3],
    }


async def one_call(i: int, fail: bool) -> tuple[dict[str, str], Decimal, int]:
    who = attribution(i)
    kwargs = {
        "model": who["model"],
        "messages": [{"role": "user", "content": "question " * (1 + i % 13)}],
        "user": who["end_user"],
        "metadata": {
            "user_api_key": who["key"],
            "user_api_key_user_id": who["user"],
            "user_api_key_team_id": who["team"],
            "user_api_key_org_id": "org-1",
        },
    }
    if fail:
        try:
            await litellm.acompletion(**kwargs, mock_response=Exception("provider down"))
        except Exception:
            return who, Decimal(0), 0
        raise AssertionError("a failing mock call returned")
    response = await litellm.acompletion(**kwargs, mock_response="answer " * (1 + i % 17))
    return who, cost_from_float(response._hidden_params["response_cost"]), response.usage.total_tokens


def expected_by_scope(
    results: list[tuple[dict[str, str], Decimal, int]],
) -> dict[tuple[str, str, str], Decimal]:
    spend: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for who, cost, _ in results:
        key_hash = hashlib.sha256(who["key"].encode()).hexdigest()
        for scope in [
            ("global", ""),
            ("key", key_hash),
            ("user", who["user"]),
            ("team", who["team"]),
            ("team_member", f"{who['team']}/{who['user']}"),
            ("org", "org-1"),
            ("end_user", who["end_user"]),
            ("provider", "openai"),  # every model here is OpenAI's
        ]:
            spend[(*scope, "")] += cost
            spend[(*scope, who["model"])] += cost
    return dict(spend)


async def test_sdk_calls_give_exact_totals_per_scope_and_window(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    tmp_path: Path,
) -> None:
    # given the pipeline and the plugin registered in the LiteLLM SDK
    topics = await make_topics(kafka_broker)
    settings = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    failing = set(random.Random(7).sample(range(CALLS), FAILURES))
    with sdk_plugin(kafka_broker, topics, tmp_path / "spool"):
        async with running_aggregator(settings, clickhouse):
            # when a few hundred calls run, some of them failing
            results = []
            for start in range(0, CALLS, 50):
                results += await asyncio.gather(*(one_call(i, i in failing) for i in range(start, start + 50)))
            await events_counted(clickhouse, CALLS, within=120)

    # then each window's totals equal LiteLLM's response_cost summed per scope and model
    expected = expected_by_scope(results)
    assert sum(cost for _, cost, _ in results) > 0
    for window in WINDOWS:
        rows = clickhouse.rows(
            "SELECT scope_type, scope_id, model, sum(spend) FROM spend_totals "
            "WHERE window = {w:String} GROUP BY scope_type, scope_id, model",
            {"w": window},
        )
        assert {(t, i, m): Decimal(s) for t, i, m, s in rows} == expected, window
    # and requests, failures and tokens add up too
    requests, failures, tokens = clickhouse.rows(
        "SELECT sum(requests), sum(failures), sum(total_tokens) FROM spend_totals "
        "WHERE window = 'day' AND scope_type = 'global' AND model = ''"
    )[0]
    assert (requests, failures, tokens) == (CALLS, FAILURES, sum(t for _, _, t in results))
    assert counted_events(clickhouse) == CALLS

    # and no raw API key is anywhere in Kafka or ClickHouse, while its hash is there to join on
    published = await read_topic(kafka_broker, topics.events, expected=CALLS)
    announcements = await read_topic(kafka_broker, topics.flushes, expected=1)
    kafka_bytes = b"\n".join(bytes(r.value or b"") + bytes(r.key or b"") for r in published + announcements)
    stored = repr(clickhouse.rows("SELECT * FROM events")) + repr(clickhouse.rows("SELECT * FROM spend_totals"))
    for raw in RAW_KEYS:
        assert raw.encode() not in kafka_bytes
        assert raw not in stored
        assert hashlib.sha256(raw.encode()).hexdigest() in stored
