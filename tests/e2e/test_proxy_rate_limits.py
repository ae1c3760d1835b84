"""Rate limits through two real LiteLLM proxy processes, real Kafka and the real ClickHouse
engine: each proxy counts its own traffic (the first line), the enforcer counts everyone's over
a sliding minute and publishes time-boxed blocks (the bound across replicas).

The proxies, the pipeline and the store are shared by the module (starting two proxies costs
most of a minute on two cores); every test uses keys, users and teams of its own.
"""

import asyncio
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from dev.litellm_proxy import LiteLLMProxy
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.topics import Topics
from spendpipe.enforcer.app import EnforcerService
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore, connect_clickhouse
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.store.migrate import migrate
from tests.conftest import aggregator_settings, create_topics, enforcer_settings
from tests.support.pipeline import running_pipeline
from tests.support.rate_traffic import Answer, ask, key_scope, most_in_a_sliding_minute, most_in_flight, paced
from tests.support.waiting import eventually

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timing]  # bounds allow LAG_S of lag

LAG_S = 1.5
"""The pipeline's lag allowed here (call logged -> decision at every gateway). docs/architecture.md's
goal is 1 s at p99 and this machine measures 0.3-1 s; the margin keeps a loaded 2-core run from failing on
noise. Across replicas a sliding minute admits at most the limit plus (aggregate rate x lag)."""

SLOW, FAILING = "gpt-3.5-turbo", "gpt-4-turbo"
MODEL_PARAMS: dict[str, dict[str, object]] = {
    SLOW: {"mock_delay": 1.5},
    FAILING: {"mock_delay": 1.0, "mock_response": "litellm.InternalServerError"},
}

PARALLEL, TPM_IN, TPM_OUT, TPM_TOTAL = (
    "sk-rl-parallel-000",
    "sk-rl-tpm-input-0",
    "sk-rl-tpm-output",
    "sk-rl-tpm-total-0",
)
MODEL_LIMITED, RUNTIME, BURST, STEADY = (
    "sk-rl-model-00000",
    "sk-rl-runtime-000",
    "sk-rl-burst-00000",
    "sk-rl-steady-0000",
)
CANARY = "sk-rl-canary-00000"
KEYS = {
    PARALLEL: ("paula", "t-parallel"),
    TPM_IN: ("ida", "t-in"),
    TPM_OUT: ("otto", "t-out"),
    TPM_TOTAL: ("tom", "t-total"),
    MODEL_LIMITED: ("mona", "t-models"),
    RUNTIME: ("rita", "t-runtime"),
    BURST: ("bert", "t-burst"),
    STEADY: ("stella", "t-steady"),
    CANARY: ("cana", "t-canary"),
}

TPM_LIMIT = 100
BURST_RPM, STEADY_RPM = 20, 60
BUDGETS: list[dict[str, object]] = [
    {"scope": key_scope(PARALLEL), "max_parallel_requests": 2},
    {"scope": key_scope(TPM_IN), "tpm_limit": TPM_LIMIT, "token_rate_limit_type": "input"},
    {"scope": key_scope(TPM_OUT), "tpm_limit": TPM_LIMIT, "token_rate_limit_type": "output"},
    {"scope": key_scope(TPM_TOTAL), "tpm_limit": TPM_LIMIT},
    {"scope": "team:t-models", "model_rpm_limit": {"gpt-4o": 3}},
    {"scope": key_scope(BURST), "rpm_limit": BURST_RPM},
    {"scope": key_scope(STEADY), "rpm_limit": STEADY_RPM},
]


@dataclass
class Setup:
    proxies: list[LiteLLMProxy]
    admin: BudgetAdmin
    enforcer: EnforcerService
    clickhouse: ClickhouseStore
    http: httpx.AsyncClient


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rate_limited(
    kafka_broker: str, chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Setup]:
    suffix = uuid.uuid4().hex[:12]
    topics = Topics(**{name: f"{name}-{suffix}" for name in Topics.model_fields})
    await create_topics(kafka_broker, topics, partitions=3)
    store_settings = ClickhouseSettings(dsn=f"chdb://{chdb_dir}", database=f"t_{suffix}")
    clickhouse = connect_clickhouse(store_settings)
    migrate(clickhouse)
    workdir = tmp_path_factory.mktemp("rate-limits")
    models = ("gpt-4o-mini", "gpt-4o", SLOW, FAILING)
    proxies = [LiteLLMProxy(workdir / f"proxy-{n}", kafka_broker, topics, KEYS, models, MODEL_PARAMS) for n in (0, 1)]
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in proxies))
        aggregator = aggregator_settings(kafka_broker, topics, store_settings)
        enforcer = enforcer_settings(kafka_broker, topics, store_settings)
        async with running_pipeline(aggregator, enforcer, clickhouse, time.time) as service:
            await asyncio.to_thread(admin.set_many, BUDGETS)
            async with httpx.AsyncClient(timeout=30) as http:
                await _limits_arrived(Setup(proxies, admin, service, clickhouse, http))
                yield Setup(proxies, admin, service, clickhouse, http)
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in proxies))
        clickhouse.command(f"DROP DATABASE IF EXISTS {store_settings.database}")
        clickhouse.close()


async def _limits_arrived(setup: Setup) -> None:
    """Budgets published before the canary's are read by then: each proxy shows the canary's
    limit in its headers, and the enforcer holds it."""
    await asyncio.to_thread(setup.admin.set, {"scope": key_scope(CANARY), "rpm_limit": 1_000_000})
    for n in range(len(setup.proxies)):

        async def canary_limit(n: int = n) -> str:
            answer = await ask(setup.http, setup.proxies, n, CANARY)
            return str(answer.response.headers.get("x-ratelimit-limit-requests"))

        await eventually(canary_limit, lambda limit: limit == "1000000", within=30, what=f"limits at proxy {n}")
    await eventually(
        lambda: setup.enforcer.enforcer.book.get(key_scope(CANARY)), bool, within=30, what="limits at the enforcer"
    )


async def test_max_parallel_requests_never_admits_more_in_flight(rate_limited: Setup) -> None:
    setup = rate_limited

    async def wave(model: str, size: int) -> list[Answer]:
        return list(await asyncio.gather(*(ask(setup.http, setup.proxies, 0, PARALLEL, model) for _ in range(size))))

    # given max_parallel_requests 2 on a key, when 6 slow calls arrive at once at one proxy
    first = await wave(SLOW, 6)
    # then 2 are served and 4 refused with LiteLLM's 429 for concurrent requests
    assert sorted(a.response.status_code for a in first) == [200, 200, 429, 429, 429, 429]
    refused = next(a.response for a in first if not a.admitted)
    assert refused.headers["rate_limit_type"] == "max_parallel_requests"
    assert "max_parallel_requests 2" in refused.json()["error"]["message"]
    # and failed calls give their slots back as surely as successful ones
    failed = await wave(FAILING, 2)
    assert [a.response.status_code >= 500 for a in failed] == [True, True], [a.response.text for a in failed]
    again = await wave(SLOW, 3)
    assert sorted(a.response.status_code for a in again) == [200, 200, 429]

    # and the pipeline's own record agrees: never more than 2 in flight at the proxy
    def served() -> list[tuple[float, float]]:
        rows = setup.clickhouse.rows(
            "SELECT toUnixTimestamp64Micro(occurred_at) / 1e6 - latency_ms / 1e3, "
            "toUnixTimestamp64Micro(occurred_at) / 1e6 FROM events WHERE key_hash = {key:String} "
            "AND status = 'success' AND billed_model = {model:String}",
            {"key": key_scope(PARALLEL).removeprefix("key:"), "model": SLOW},
        )
        return [(float(start), float(end)) for start, end in rows]

    intervals = await eventually(served, lambda rows: len(rows) == 4, within=30, what="4 slow calls counted")
    print(f"\nmax_parallel_requests 2: most in flight {most_in_flight(intervals)}")
    assert most_in_flight(intervals) <= 2


async def test_tpm_counts_input_output_or_total_tokens(rate_limited: Setup) -> None:
    setup = rate_limited
    # each call: 10 input and 20 output tokens; tpm_limit 100 is 10, 5 or 4 calls by type
    for key, kind in ((TPM_IN, "prompt"), (TPM_OUT, "completion"), (TPM_TOTAL, "total")):
        per_call = {"prompt": 10, "completion": 20, "total": 30}[kind]
        answers = await paced(setup.http, setup.proxies, key, per_second=4, until_refused_by_all=True)
        admitted = [a for a in answers if a.admitted]
        counted = sum(a.tokens(kind) for a in admitted)
        first_refusal = next(n for n, a in enumerate(answers) if not a.admitted)
        before = sum(a.tokens(kind) for a in answers[:first_refusal])
        slack = math.ceil(4 * LAG_S) * per_call
        print(f"\ntpm_limit {TPM_LIMIT} on {kind} tokens: {counted} admitted in {len(admitted)} calls")
        # refused only once the limit's own kind of tokens reached it, and not much later
        assert before >= TPM_LIMIT, f"{key}: refused after {before} {kind} tokens"
        assert counted <= TPM_LIMIT + slack
        refused = next(a.response for a in answers if not a.admitted)
        assert refused.status_code == 429
        message = refused.json()["error"]["message"]
        assert key_scope(key) in message
        assert f"tpm_limit {TPM_LIMIT} per sliding minute" in message
        assert {"prompt": "input", "completion": "output", "total": "total"}[kind] + " tokens" in message


async def test_a_model_limit_applies_only_to_that_model(rate_limited: Setup) -> None:
    setup = rate_limited
    # given model_rpm_limit {gpt-4o: 3} on the key's team
    limited = await paced(setup.http, setup.proxies, MODEL_LIMITED, per_second=4, until_refused_by_all=True)
    admitted = sum(a.admitted for a in limited)
    assert 3 <= admitted <= 3 + math.ceil(4 * LAG_S)
    message = next(a for a in limited if not a.admitted).response.json()["error"]["message"]
    assert "team:t-models on model gpt-4o" in message
    assert "model_rpm_limit[gpt-4o] 3 per sliding minute" in message
    # then the same key is still served on another model, by both proxies
    other = [await ask(setup.http, setup.proxies, n, MODEL_LIMITED, "gpt-4o-mini") for n in range(6)]
    assert [a.response.status_code for a in other] == [200] * 6


async def test_limits_change_at_runtime(rate_limited: Setup) -> None:
    setup = rate_limited
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    scope = f"end_user:{customer}"

    async def served_by_both() -> list[int]:
        return [(await ask(setup.http, setup.proxies, n, RUNTIME, user=customer)).response.status_code for n in (0, 1)]

    # given an end customer limited to 2 requests a minute: both proxies refuse it soon
    await asyncio.to_thread(setup.admin.set, {"scope": scope, "rpm_limit": 2})
    await eventually(served_by_both, lambda codes: codes == [429, 429], within=30, what="the limit at both proxies")
    # when the limit is raised, both serve it again, without a restart
    await asyncio.to_thread(setup.admin.set, {"scope": scope, "rpm_limit": 1000})
    await eventually(served_by_both, lambda codes: codes == [200, 200], within=30, what="the raised limit")
    # and when it is lowered, both refuse again
    await asyncio.to_thread(setup.admin.set, {"scope": scope, "rpm_limit": 1})
    await eventually(served_by_both, lambda codes: codes == [429, 429], within=30, what="the lowered limit")


async def test_a_burst_straddling_a_minute_boundary_does_not_admit_twice_the_limit(rate_limited: Setup) -> None:
    setup = rate_limited
    # given rpm_limit R: a burst of R just before a minute boundary, all served...
    boundary = (time.time() // 60 + 1) * 60
    if boundary - time.time() < 4:
        boundary += 60
    await eventually(time.time, lambda now: now >= boundary - 3, within=70, what="3 s before a minute boundary")

    async def burst() -> list[Answer]:
        return list(await asyncio.gather(*(ask(setup.http, setup.proxies, n, BURST) for n in range(BURST_RPM))))

    before = await burst()
    assert sum(a.admitted for a in before) == BURST_RPM
    # ...and another burst of R just after it
    await eventually(time.time, lambda now: now >= boundary + 0.5, within=10, what="the minute boundary")
    after = await burst()
    admitted_after = sum(a.admitted for a in after)
    print(
        f"\nburst across a minute boundary, rpm_limit {BURST_RPM}: {BURST_RPM} + {admitted_after} admitted "
        f"(a fixed per-minute window admits {2 * BURST_RPM})"
    )
    # then the second burst is refused: the sliding minute still holds the first one
    assert admitted_after == 0
    assert {a.response.headers.get("rate_limit_type") for a in after} == {"requests"}


async def test_rpm_holds_across_two_proxies_for_two_minutes(rate_limited: Setup) -> None:
    setup = rate_limited
    rate = 4.0
    # given rpm_limit R on one key, when it sends 4 requests a second spread over both proxies
    answers = await paced(setup.http, setup.proxies, STEADY, per_second=rate, seconds=120)
    admitted = [a for a in answers if a.admitted]
    bound = STEADY_RPM + math.ceil(rate * LAG_S)

    def counted() -> list[float]:
        rows = setup.clickhouse.rows(
            "SELECT toUnixTimestamp64Micro(occurred_at) / 1e6 FROM events "
            "WHERE key_hash = {key:String} AND status = 'success'",
            {"key": key_scope(STEADY).removeprefix("key:")},
        )
        return [float(moment) for (moment,) in rows]

    server_side = await eventually(counted, lambda rows: len(rows) == len(admitted), within=30, what="every call")
    at_clients = most_in_a_sliding_minute([a.done_at for a in admitted])
    at_gateways = most_in_a_sliding_minute(server_side)
    print(
        f"\nrpm_limit {STEADY_RPM}, {len(answers)} requests at {rate:.0f}/s over 2 proxies for 120 s: "
        f"{len(admitted)} admitted; most in a sliding minute {at_gateways} (gateway clocks), "
        f"{at_clients} (client); bound {bound} = limit + rate x {LAG_S} s lag"
    )
    # then no sliding minute admitted more than the limit plus the lag slack
    assert at_gateways <= bound
    assert at_clients <= bound
    # and the limit was used, not undercut: the first R requests were all served
    assert all(a.admitted for a in answers[:STEADY_RPM])
    refused = next(a.response for a in answers if not a.admitted)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "throttling_error"
    assert f"rpm_limit {STEADY_RPM} per sliding minute" in refused.json()["error"]["message"]
    served = next(a.response for a in admitted)
    assert served.headers["x-ratelimit-limit-requests"] == str(STEADY_RPM)
    assert int(served.headers["x-ratelimit-remaining-requests"]) < STEADY_RPM
