"""Analysts' own tools against a real `spendpipe run all` over its embedded store: clickhouse-connect's
`http://` client and the curl binary, as they would be pointed at a ClickHouse server."""

import asyncio
import json
import subprocess
from decimal import Decimal
from pathlib import Path

import clickhouse_connect

from dev.local_kafka import free_port_pair
from tests.support.events import make_event
from tests.support.pipeline import produce
from tests.support.processes import run_all
from tests.support.waiting import eventually

TEAM_SPEND = (
    "SELECT scope_id, sum(spend) AS spend FROM spend_totals WHERE window = 'month' "
    "AND scope_type = {scope_type:String} AND model = '' GROUP BY scope_id ORDER BY scope_id"
)


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    """curl as a person runs it; `-w` appends the status and the exception code header."""
    return subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code} %header{x-clickhouse-exception-code}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )


async def test_run_all_serves_clickhouse_clients(kafka_broker: str, make_topics, tmp_path: Path) -> None:
    topics = await make_topics(kafka_broker)
    port = free_port_pair()
    service = run_all(kafka_broker, topics, tmp_path, sql_port=port)
    events = [make_event(team_id=team, cost=Decimal("0.25")) for team in ("eng", "eng", "ops")]

    service.start()
    try:
        service.wait_http_ok(f"http://127.0.0.1:{port}/ping")
        client = clickhouse_connect.get_client(host="127.0.0.1", port=port, username="default", password="")
        await produce(kafka_broker, topics.events, [e.to_json() for e in events])
        typed = await eventually(
            lambda: asyncio.to_thread(client.query, TEAM_SPEND, {"scope_type": "team"}),
            lambda result: len(result.result_rows) == 2,
            within=60,
            what="both teams counted",
        )
        raw = client.raw_query(
            "SELECT scope_id FROM spend_totals WHERE scope_type = 'team' GROUP BY 1 ORDER BY 1 FORMAT CSV"
        )
        client.close()
        base = f"http://127.0.0.1:{port}"
        ping = curl(f"{base}/ping")
        get = curl(
            "--get", f"{base}/", "--data-urlencode", "query=SELECT count() FROM spend_totals WHERE scope_id = 'ops'"
        )
        post = curl(f"{base}/", "--data-binary", "SELECT scope_id FROM spend_by_scope_probe")
        each_row = curl(
            f"{base}/?param_t=team",
            "--data-binary",
            "SELECT scope_id, toString(sum(spend)) AS spend FROM spend_totals WHERE window = 'month' AND scope_type = "
            "{t:String} AND model = '' GROUP BY scope_id ORDER BY scope_id FORMAT JSONEachRow",
        )
        database = curl(f"{base}/?database=system", "--data-binary", "SELECT currentDatabase()")
        compressed = curl("--compressed", f"{base}/?enable_http_compression=1", "--data-binary", "SELECT 42")
        kill = curl(f"{base}/", "--data-binary", "KILL QUERY WHERE 1")
    finally:
        service.stop()

    assert typed.column_names == ("scope_id", "spend")
    assert typed.result_rows == [("eng", Decimal("0.5")), ("ops", Decimal("0.25"))]
    assert raw == b'"eng"\n"ops"\n'
    assert ping.stdout == "Ok.\n\n200 "
    assert get.stdout.endswith("\n200 ")
    assert int(get.stdout.split()[0]) > 0
    assert post.stdout.startswith("Code: 60. DB::Exception: ")
    assert post.stdout.endswith("\n404 60")
    lines = each_row.stdout.splitlines()
    assert [json.loads(line) for line in lines[:-1] if line] == [
        {"scope_id": "eng", "spend": "0.5"},
        {"scope_id": "ops", "spend": "0.25"},
    ]
    assert lines[-1] == "200 "
    assert database.stdout == "system\n\n200 "
    assert compressed.stdout == "42\n\n200 "
    assert kill.stdout.startswith("Code: 164. DB::Exception: Refused by the spendpipe SQL endpoint: KILL")
    assert kill.stdout.endswith("\n403 164")
    assert service.process is not None
    assert service.process.returncode == 0, service.log_tail()
