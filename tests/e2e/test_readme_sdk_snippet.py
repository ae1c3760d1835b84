"""The README's SDK snippet, run literally as a script in fresh processes against the real
pipeline (only the provider is mocked): every call it makes is counted, to the exact cost."""

import asyncio
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import litellm

from dev.litellm_proxy import plugin_env
from spendpipe.contracts.money import cost_from_float
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from tests.conftest import aggregator_settings
from tests.support.pipeline import counted_events, events_counted, running_aggregator

README = Path(__file__).parents[2] / "README.md"
CALL = 'completion(**call, messages=[{"role": "user", "content": "hi"}])'
MOCKED = 'completion(**call, messages=[{"role": "user", "content": "hi"}], mock_response="hello")'
RUNS = 3


def sdk_snippet() -> str:
    """The python block of "Plug it into LiteLLM", its one call answered by LiteLLM's mock."""
    section = README.read_text().split("## Plug it into LiteLLM", 1)[1].split("\n## ", 1)[0]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    assert snippet.count(CALL) == 1, "the README's SDK snippet no longer makes the call this test mocks"
    return snippet.replace(CALL, MOCKED)


def run_snippet(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", sdk_snippet()], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_the_readme_sdk_snippet_counts_every_call(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    tmp_path: Path,
) -> None:
    # given the pipeline, and what the snippet's call costs by LiteLLM's own count
    topics = await make_topics(kafka_broker)
    response = litellm.completion(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], mock_response="hello"
    )
    cost = cost_from_float(response._hidden_params["response_cost"])
    async with running_aggregator(aggregator_settings(kafka_broker, topics, clickhouse_settings), clickhouse):
        # when the snippet runs as a script in a few fresh processes at once
        runs = await asyncio.gather(
            *(
                asyncio.to_thread(run_snippet, plugin_env(kafka_broker, topics, tmp_path / f"spool-{n}"))
                for n in range(RUNS)
            )
        )
        for run in runs:
            assert run.returncode == 0, run.stderr

        # then every call is counted once, to the exact cost, under the snippet's attribution
        await events_counted(clickhouse, RUNS, within=60)
    assert counted_events(clickhouse) == RUNS
    rows = clickhouse.rows(
        "SELECT scope_type, scope_id, sum(spend), sum(requests) FROM spend_totals "
        "WHERE window = 'day' AND model = '' AND scope_type IN ('global', 'user', 'team', 'end_user') "
        "GROUP BY scope_type, scope_id"
    )
    scopes = [("global", ""), ("user", "alice"), ("team", "search"), ("end_user", "customer-42")]
    assert {(t, i): (Decimal(s), r) for t, i, s, r in rows} == dict.fromkeys(scopes, (cost * RUNS, RUNS))
    assert cost > 0
