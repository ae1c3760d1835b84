"""End customers name themselves: `spendpipe spend` and `spendpipe sql` print their `user`
values literally, through the real pipeline (events in, `run all`, its SQL endpoint)."""

import asyncio
import subprocess
from decimal import Decimal
from pathlib import Path

from dev.local_kafka import free_port_pair
from spendpipe.store.sql_endpoint.client import EndpointSource
from tests.support.events import make_event
from tests.support.pipeline import produce
from tests.support.processes import run_all, run_cli
from tests.support.waiting import eventually

HOSTILE = {
    "[/]": "[/]",
    "[bold red]admin[/bold red]": "[bold red]admin[/bold red]",
    "[link=https://x]y[/link]": "[link=https://x]y[/link]",
    "\x1b[2Jwiped": "\\x1b[2Jwiped",
    "over\rwritten": "over\\rwritten",
}
"""An end customer's `user` field, and what the operator must see of it."""


def spendpipe(port: int, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli({"SPENDPIPE_SQL_ENDPOINT_URL": f"http://127.0.0.1:{port}"}, *args)


async def test_spend_and_sql_print_hostile_end_users_literally(kafka_broker: str, make_topics, tmp_path: Path) -> None:
    topics = await make_topics(kafka_broker)
    port = free_port_pair()
    service = run_all(kafka_broker, topics, tmp_path, sql_port=port)
    events = [make_event(end_user=user, cost=Decimal("0.25")) for user in HOSTILE]
    store = EndpointSource(url=f"http://127.0.0.1:{port}")

    service.start()
    try:
        service.wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        await produce(kafka_broker, topics.events, [e.to_json() for e in events])
        await eventually(
            lambda: store.query("SELECT count() FROM events")[1][0][0],
            lambda n: int(n) == len(events),
            within=60,
            what="every event stored",
        )
        spend = await asyncio.to_thread(spendpipe, port, "spend", "--scope", "end_user")
        sql = await asyncio.to_thread(
            spendpipe, port, "sql", "SELECT end_user, sum(cost) AS spend FROM events GROUP BY end_user"
        )
    finally:
        service.stop()

    for result in (spend, sql):
        assert result.returncode == 0, result.stderr
        shown = [line.split("│")[1].strip() for line in result.stdout.splitlines() if line.startswith("│")]
        assert sorted(shown) == sorted(HOSTILE.values()), result.stdout
        assert "\x1b" not in result.stdout
        assert "\r" not in result.stdout
