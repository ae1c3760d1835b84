"""`spendpipe.install()` in a fresh application process, against the real pipeline (only the
provider is mocked): the application's own callbacks stay, installing twice registers once, plain
attribution names are counted, and once the enforcer blocks the team its next `acompletion` is
refused with LiteLLM's budget error, with no `check()` anywhere."""

import asyncio
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

from dev.litellm_proxy import plugin_env
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.pipeline import running_pipeline

CAP = Decimal("0.0015")  # a mocked gpt-4o call costs about 0.000225

APPLICATION = """
import asyncio
import threading
import time

import litellm
from litellm.integrations.custom_logger import CustomLogger

import spendpipe


class Mine(CustomLogger):
    pass


def on_success(kwargs, response, start, end):
    pass


mine = Mine()
litellm.callbacks = [mine]
litellm.success_callback = [on_success]
spend = spendpipe.install()
assert spendpipe.install() is spend, "installing twice gives the same plugin"
assert litellm.callbacks[0] is mine and litellm.callbacks.count(spend) == 1, litellm.callbacks
assert on_success in litellm.success_callback, litellm.success_callback
# only the proxy caps agent sessions: no session log is read (it would ask Kafka 20 times a second)
assert "spendpipe-sessions" not in [thread.name for thread in threading.enumerate()], threading.enumerate()
MESSAGES = [{"role": "user", "content": "hi"}]


async def main():
    deadline = time.monotonic() + 90
    served = 0
    while time.monotonic() < deadline:
        try:
            await litellm.acompletion(
                model="gpt-4o", messages=MESSAGES, mock_response="hello", metadata={"team": "search", "user": "alice"}
            )
        except litellm.BudgetExceededError as error:
            print("REFUSED", served, type(error).__name__, error)
            break
        served += 1
    else:
        print("NEVER REFUSED", served)
    await litellm.acompletion(model="gpt-4o", messages=MESSAGES, mock_response="hello", metadata={"team": "other"})
    print("OTHER SERVED")
    await spend.aclose()


asyncio.run(main())
"""


async def test_install_refuses_a_blocked_team_without_check(
    kafka_broker: str,
    make_topics,
    clickhouse: ClickhouseStore,
    clickhouse_settings: ClickhouseSettings,
    tmp_path: Path,
) -> None:
    topics = await make_topics(kafka_broker)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set, {"scope": "team:search", "max_budget": str(CAP), "budget_duration": "24h"})
    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)

    async with running_pipeline(aggregator, enforcer, clickhouse, time.time):
        run = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-c", APPLICATION],
            env=plugin_env(kafka_broker, topics, tmp_path / "spool"),
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    assert run.returncode == 0, run.stderr[-3000:]
    refused = next(line for line in run.stdout.splitlines() if line.startswith(("REFUSED", "NEVER")))
    assert refused.startswith("REFUSED"), run.stdout
    assert "SpendpipeBudgetExceededError" in refused
    assert "team:search" in refused
    assert "OTHER SERVED" in run.stdout
    spend = clickhouse.rows(
        "SELECT scope_type, scope_id, sum(spend) FROM spend_totals WHERE window = 'day' AND model = '' "
        "AND scope_type IN ('team', 'team_member') GROUP BY scope_type, scope_id"
    )
    by_scope = {(t, i): Decimal(s) for t, i, s in spend}
    assert by_scope[("team", "search")] >= CAP
    assert by_scope[("team_member", "search/alice")] == by_scope[("team", "search")]
