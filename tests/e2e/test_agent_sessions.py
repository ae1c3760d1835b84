"""Agent sessions through two real LiteLLM proxy processes, real Kafka and the real ClickHouse
engine: `max_iterations` and `max_budget_per_session` on an agent hold across both proxies
(every gateway replays the same session log), one capped session does not stop another, and
idle sessions expire and their state is dropped.

The proxies and the pipeline are shared by the module; every test uses agents and sessions of
its own. Agent and session travel in the request's metadata, as LiteLLM's own limiters read them.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from dev.litellm_proxy import LiteLLMProxy
from dev.local_kafka import free_port_pair
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.topics import Topics
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore, connect_clickhouse
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.store.migrate import migrate
from tests.conftest import aggregator_settings, create_topics, enforcer_settings
from tests.support.pipeline import running_pipeline
from tests.support.rate_traffic import HELLO
from tests.support.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

KEY = "sk-agent-sessions-0"
IDLE_S = 8.0
MODEL = "gpt-4o-mini"


@dataclass
class Setup:
    proxies: list[LiteLLMProxy]
    ops_ports: list[int]
    admin: BudgetAdmin
    clickhouse: ClickhouseStore
    http: httpx.AsyncClient

    async def call(self, n: int, agent: str, session: str) -> httpx.Response:
        proxy = self.proxies[n % len(self.proxies)]
        return await self.http.post(
            f"{proxy.url}/chat/completions",
            headers={"Authorization": f"Bearer {KEY}"},
            json={"model": MODEL, "messages": HELLO, "metadata": {"agent_id": agent, "session_id": session}},
        )

    async def live_sessions(self) -> list[float]:
        values = []
        for port in self.ops_ports:
            text = (await self.http.get(f"http://127.0.0.1:{port}/metrics")).text
            line = next(line for line in text.splitlines() if line.startswith("spendpipe_gateway_sessions_live "))
            values.append(float(line.split()[1]))
        return values


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sessions(kafka_broker: str, chdb_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Setup]:
    suffix = uuid.uuid4().hex[:12]
    topics = Topics(**{name: f"{name}-{suffix}" for name in Topics.model_fields})
    await create_topics(kafka_broker, topics, partitions=3)
    store_settings = ClickhouseSettings(dsn=f"chdb://{chdb_dir}", database=f"t_{suffix}")
    clickhouse = connect_clickhouse(store_settings)
    migrate(clickhouse)
    workdir = tmp_path_factory.mktemp("agent-sessions")
    ops_ports = [free_port_pair() for _ in (0, 1)]
    proxies = [
        LiteLLMProxy(
            workdir / f"proxy-{n}",
            kafka_broker,
            topics,
            {KEY: ("agent-owner", "t-agents")},
            (MODEL,),
            env={
                "SPENDPIPE_SESSION_IDLE_S": str(IDLE_S),
                "SPENDPIPE_OPS__ENABLED": "true",
                "SPENDPIPE_OPS__PORT": str(ops_ports[n]),
            },
        )
        for n in (0, 1)
    ]
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    try:
        await asyncio.gather(*(asyncio.to_thread(p.start) for p in proxies))
        aggregator = aggregator_settings(kafka_broker, topics, store_settings)
        enforcer = enforcer_settings(kafka_broker, topics, store_settings)
        async with (
            running_pipeline(aggregator, enforcer, clickhouse, time.time),
            httpx.AsyncClient(timeout=60) as http,
        ):
            setup = Setup(proxies, ops_ports, admin, clickhouse, http)
            await _caps_arrived(setup)
            yield setup
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in proxies))
        clickhouse.command(f"DROP DATABASE IF EXISTS {store_settings.database}")
        clickhouse.close()


async def _caps_arrived(setup: Setup) -> None:
    """A canary agent with max_iterations 1: once both proxies refuse a new session's second call,
    they hold the agents' caps and read the session log."""
    await asyncio.to_thread(setup.admin.set, {"scope": "agent:canary", "max_iterations": 1})
    for n in (0, 1):

        async def second_call(n: int = n) -> int:
            session = uuid.uuid4().hex
            await setup.call(n, "canary", session)
            return (await setup.call(n, "canary", session)).status_code

        await eventually(second_call, lambda code: code == 429, within=60, what=f"session caps at proxy {n}")


async def _set(setup: Setup, budget: dict[str, object]) -> None:
    """Publish an agent's caps and wait until both proxies apply them (a probe session is capped)."""
    await asyncio.to_thread(setup.admin.set, budget)
    agent = str(budget["scope"]).removeprefix("agent:")

    async def capped_everywhere() -> list[int]:
        probe = f"probe-{uuid.uuid4().hex}"
        codes = []
        for n in (0, 1):
            if "max_iterations" in budget:
                for _ in range(int(str(budget["max_iterations"]))):
                    await setup.call(n, agent, probe)
                codes.append((await setup.call(n, agent, probe)).status_code)
                probe = f"probe-{uuid.uuid4().hex}"
            else:
                codes.append(429)
        return codes

    await eventually(capped_everywhere, lambda codes: codes == [429, 429], within=60, what=f"caps of {agent}")


def cost_of(response: httpx.Response) -> Decimal:
    return Decimal(response.headers["x-litellm-response-cost"])


async def calls_counted(setup: Setup, session: str, count: int) -> list[tuple[str, str, Decimal]]:
    def rows() -> list[tuple[str, str, Decimal]]:
        found = setup.clickhouse.rows(
            "SELECT agent_id, session_id, cost FROM events WHERE session_id = {s:String} AND status = 'success'",
            {"s": session},
        )
        return [(str(a), str(s), Decimal(str(c))) for a, s, c in found]

    return list(await eventually(rows, lambda r: len(r) == count, within=30, what=f"{count} calls of {session}"))


async def test_max_iterations_admits_exactly_n_calls_across_two_proxies(sessions: Setup) -> None:
    setup = sessions
    agent, session, n_max = f"agent-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex}", 4
    await _set(setup, {"scope": f"agent:{agent}", "max_iterations": n_max})
    # when 12 calls of one session arrive at once, spread over both proxies
    started = time.monotonic()
    answers: Sequence[httpx.Response] = await asyncio.gather(*(setup.call(n, agent, session) for n in range(12)))
    took = time.monotonic() - started
    codes = [a.status_code for a in answers]
    print(
        f"\nmax_iterations {n_max}: {codes.count(200)} served, {codes.count(429)} refused "
        f"of 12 concurrent ({took:.2f} s)"
    )
    # then exactly N are served, by either proxy, and the rest refused
    assert codes.count(200) == n_max
    assert codes.count(429) == 12 - n_max
    # and later calls of the session are refused at both proxies, naming the session, cap and count
    for n in (0, 1):
        refused = await setup.call(n, agent, session)
        assert refused.status_code == 429
        assert refused.headers.get("rate_limit_type") == "max_iterations"
        assert refused.json()["error"]["message"] == (
            f"Max iterations exceeded for session {session} of agent:{agent}. "
            f"Current count: {n_max}, max_iterations: {n_max}."
        )
    # and the events in ClickHouse carry the agent and the session
    counted = await calls_counted(setup, session, n_max)
    assert {(a, s) for a, s, _ in counted} == {(agent, session)}


async def test_a_session_budget_blocks_that_session_only(sessions: Setup) -> None:
    setup = sessions
    agent = f"agent-{uuid.uuid4().hex[:8]}"
    probe = await setup.call(0, "uncapped", uuid.uuid4().hex)
    per_call = cost_of(probe)
    cap = per_call * Decimal("2.5")
    await asyncio.to_thread(setup.admin.set, {"scope": f"agent:{agent}", "max_budget_per_session": str(cap)})
    first, second = f"s-{uuid.uuid4().hex}", f"s-{uuid.uuid4().hex}"

    async def refused_at_both() -> list[int]:
        return [(await setup.call(n, agent, first)).status_code for n in (0, 1)]

    # given a session that spends past its cap (one call at a time, both proxies)
    await eventually(refused_at_both, lambda codes: codes == [429, 429], within=60, what="the session refused")
    refused = await setup.call(1, agent, first)
    message = refused.json()["error"]["message"]
    assert refused.headers.get("rate_limit_type") == "budget"
    assert f"Session budget exceeded for session {first} of agent:{agent}. Current spend: $" in message
    assert f"max_budget_per_session: ${cap}." in message
    spent = Decimal(message.split("Current spend: $")[1].split(",")[0])
    assert cap <= spent < cap + per_call
    # then another session of the same agent is still served, at both proxies
    assert [(await setup.call(n, agent, second)).status_code for n in (0, 1)] == [200, 200]


async def test_concurrent_first_calls_of_a_new_session_stay_within_the_bound(sessions: Setup) -> None:
    setup = sessions
    agent, session = f"agent-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex}"
    per_call = cost_of(await setup.call(0, "uncapped", uuid.uuid4().hex))
    cap = per_call * Decimal("3.5")
    await asyncio.to_thread(setup.admin.set, {"scope": f"agent:{agent}", "max_budget_per_session": str(cap)})
    await _caps_arrived(setup)  # published after the agent's caps: once it holds, so do they
    # when 20 calls open the same new session at once, 10 at each proxy
    started = time.monotonic()
    answers = await asyncio.gather(*(setup.call(n, agent, session) for n in range(20)))
    took = time.monotonic() - started
    served = [a for a in answers if a.status_code == 200]
    spent = sum((cost_of(a) for a in served), Decimal(0))
    overshoot = spent - cap
    print(
        f"\nmax_budget_per_session {cap} (3.5 calls of {per_call}): 20 concurrent first calls -> {len(served)} served, "
        f"spend {spent}, past the cap by {overshoot} ({overshoot / per_call:.2f} calls; bound: 1 call); {took:.2f} s"
    )
    # then the spend passed the cap by less than one call (calls of one size: the documented bound)
    assert spent >= cap
    assert overshoot < per_call
    assert {a.status_code for a in answers} <= {200, 429}
    counted = await calls_counted(setup, session, len(served))
    assert sum(c for _, _, c in counted) == spent


async def test_idle_sessions_expire_and_their_state_is_dropped(sessions: Setup) -> None:
    setup = sessions
    agent, session = f"agent-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex}"
    await _set(setup, {"scope": f"agent:{agent}", "max_iterations": 1})
    # given a session that used its one call
    assert (await setup.call(0, agent, session)).status_code == 200
    assert (await setup.call(1, agent, session)).status_code == 429
    assert min(await setup.live_sessions()) >= 1
    # when it stays idle, both gateways drop every session's state (within twice the idle time)
    started = time.monotonic()
    await eventually(setup.live_sessions, lambda live: live == [0, 0], within=4 * IDLE_S + 30, what="no live session")
    print(f"\nsession state dropped {time.monotonic() - started:.1f} s after the last call (idle {IDLE_S:g} s)")
    # then the same session starts again from nothing: one call served, the next refused
    assert (await setup.call(1, agent, session)).status_code == 200
    assert (await setup.call(0, agent, session)).status_code == 429
