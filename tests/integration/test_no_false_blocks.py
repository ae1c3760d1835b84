"""No false blocks, through the real pipeline: random spend over many scopes with random budgets;
every block ever published is for a scope whose exact spend reached its cap, and every scope
that reached its cap is blocked. (The same property over random caps and costs, with shrinking,
is a hypothesis test of the verdict in tests/unit/test_verdict.py.)"""

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal

from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.contracts.decisions import Decision
from spendpipe.platform.clickhouse import ClickhouseSettings, ClickhouseStore
from spendpipe.platform.kafka import KafkaSettings
from tests.conftest import aggregator_settings, enforcer_settings
from tests.support.events import make_event
from tests.support.gateway_blocks import at
from tests.support.pipeline import ManualClock, counted_events, produce, read_topic, running_pipeline
from tests.support.waiting import eventually

TEAMS = [f"team-{n}" for n in range(16)]
DURATIONS = ["15m", "1h", "24h", "7d", "1mo", None]


async def test_blocks_match_exact_spend_over_random_traffic_and_budgets(
    kafka_broker: str, make_topics, clickhouse: ClickhouseStore, clickhouse_settings: ClickhouseSettings
) -> None:
    rng = random.Random(20261128)
    topics = await make_topics(kafka_broker)
    clock = ManualClock(datetime(2026, 5, 20, 10, 7, tzinfo=UTC))
    caps = {team: Decimal(rng.randint(1, 400)) / 100 for team in TEAMS}
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(
        admin.set_many,
        [
            {"scope": f"team:{team}", "max_budget": str(cap)}
            | ({"budget_duration": d} if (d := rng.choice(DURATIONS)) else {})
            for team, cap in caps.items()
        ],
    )
    events = [
        make_event(
            occurred_at=at(clock()),
            team_id=rng.choice(TEAMS),
            cost=Decimal(rng.randint(1, 10**6)) / 10**7,  # up to 0.1 with seven decimals
        )
        for _ in range(600)
    ]
    spent: dict[str, Decimal] = defaultdict(Decimal)
    for event in events:
        spent[event.team_id or ""] += event.cost
    over = {team for team in TEAMS if spent[team] >= caps[team]}
    assert over, "the scenario reaches some caps"
    assert set(TEAMS) - over, "and leaves others under theirs"

    aggregator = aggregator_settings(kafka_broker, topics, clickhouse_settings)
    enforcer = enforcer_settings(kafka_broker, topics, clickhouse_settings)
    async with running_pipeline(aggregator, enforcer, clickhouse, clock) as service:
        for start in range(0, len(events), 50):  # many small flushes: spend grows step by step
            await produce(kafka_broker, topics.events, [e.to_json() for e in events[start : start + 50]])
        await eventually(lambda: counted_events(clickhouse), lambda n: n >= len(events), within=60, what="counted")
        await eventually(
            lambda: {d.scope.removeprefix("team:") for d in service.enforcer.blocks()},
            lambda blocked: blocked == over,
            within=30,
            what="every team over its cap blocked",
        )

    history = [Decision.model_validate_json(r.value) for r in await read_topic(kafka_broker, topics.decisions, 1)]
    for decision in (d for d in history if d.blocked):
        team = decision.scope.removeprefix("team:")
        assert decision.spend is not None
        assert decision.spend >= caps[team], f"false block: {decision}"
        assert spent[team] >= caps[team], f"{team} blocked while its exact spend stays under its cap"
