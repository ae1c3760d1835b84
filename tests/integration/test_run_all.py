"""`spendpipe run all`, as a real process with the command and environment a deployment gives
it: events in, totals queryable through its SQL endpoint, a budget enforced, SIGTERM to stop."""

import asyncio
from decimal import Decimal
from pathlib import Path

from dev.local_kafka import free_port_pair
from spendpipe.admin.budget_admin import BudgetAdmin
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.store.sql_endpoint.client import EndpointSource
from tests.support.events import make_event
from tests.support.gateway_blocks import following_blocklist
from tests.support.pipeline import produce
from tests.support.processes import run_all
from tests.support.waiting import eventually


async def test_run_all_counts_and_enforces(kafka_broker: str, make_topics, tmp_path: Path) -> None:
    topics = await make_topics(kafka_broker)
    port = free_port_pair()
    service = run_all(kafka_broker, topics, tmp_path, sql_port=port)
    admin = BudgetAdmin(kafka=KafkaSettings(bootstrap_servers=kafka_broker), topics=topics)
    await asyncio.to_thread(admin.set, {"scope": "team:eng", "max_budget": "1.00", "budget_duration": "1mo"})
    store = EndpointSource(url=f"http://127.0.0.1:{port}")
    events = [make_event(team_id="eng", cost=Decimal("0.30")) for _ in range(4)]

    service.start()
    try:
        service.wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        with following_blocklist(kafka_broker, topics.decisions) as gateway:
            await produce(kafka_broker, topics.events, [e.to_json() for e in events])
            block = await eventually(lambda: gateway.blocking(["team:eng"]), bool, within=60, what="team:eng blocked")
        _, rows = await asyncio.to_thread(
            store.query,
            "SELECT sum(spend) FROM spend_totals WHERE scope_type = 'team' AND scope_id = 'eng' "
            "AND model = '' AND window = 'month'",
        )
    finally:
        service.stop()

    assert Decimal(rows[0][0]) == Decimal("1.20")
    assert (block.spend, block.cap, block.window) == (Decimal("1.2"), Decimal("1"), "1mo")
    assert service.process is not None
    assert service.process.returncode == 0, service.log_tail()
