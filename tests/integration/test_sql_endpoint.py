"""The SQL endpoint as ClickHouse's HTTP interface over real chDB: what clients may read, what
is refused and how, and the limits. `test_run_all_serves_clickhouse_clients` goes through a
real `spendpipe run all`; the rest serve a test's own store with the same `SqlEndpoint`."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import clickhouse_connect
import httpx
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError

from spendpipe.platform.clickhouse import ClickhouseStore
from spendpipe.store.sql_endpoint.errors import ClickhouseError
from spendpipe.store.sql_endpoint.server import SqlEndpoint
from spendpipe.store.sql_endpoint.settings import SqlEndpointSettings
from spendpipe.store.sql_endpoint.statements import check_read_only
from tests.support.processes import run_cli
from tests.support.waiting import eventually_sync

READINGS = [("a", Decimal("1.5")), ("b", Decimal("2.25")), ("c", Decimal("0.000000000000000000000001"))]


@pytest.fixture
def store(clickhouse: ClickhouseStore) -> ClickhouseStore:
    clickhouse.command("CREATE TABLE readings (k String, v Decimal(38, 24)) ENGINE = MergeTree ORDER BY k")
    clickhouse.command("INSERT INTO readings VALUES " + ", ".join(f"('{k}', {v})" for k, v in READINGS))
    return clickhouse


@contextmanager
def serve(store: ClickhouseStore, **settings: object) -> Iterator[SqlEndpoint]:
    endpoint = SqlEndpoint(clickhouse=store.settings, settings=SqlEndpointSettings(port=0, **settings)).start()
    try:
        yield endpoint
    finally:
        endpoint.stop()


@pytest.fixture
def endpoint(store: ClickhouseStore) -> Iterator[SqlEndpoint]:
    with serve(store) as served:
        yield served


def url(endpoint: SqlEndpoint) -> str:
    return f"http://127.0.0.1:{endpoint.port}"


def post(endpoint: SqlEndpoint, query: str, **params: str) -> httpx.Response:
    return httpx.post(f"{url(endpoint)}/", content=query, params=params, timeout=30)


def assert_clickhouse_error(response: httpx.Response, status: int, code: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["X-ClickHouse-Exception-Code"] == str(code)
    assert response.text.startswith(f"Code: {code}. DB::Exception: ")


def test_clickhouse_connect_reads_typed_results_parameters_and_formats(endpoint: SqlEndpoint) -> None:
    client = clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port, username="default", password="")
    try:
        typed = client.query("SELECT k, v FROM readings WHERE v > {least:Decimal(38, 24)} ORDER BY k", {"least": 1})
        raw = client.raw_query("SELECT k FROM readings ORDER BY k FORMAT JSONEachRow")
        # thousands of bound values: clickhouse-connect sends them as a multipart form
        keys = [(f"k{i}", f"x{i}") for i in range(3000)] + [("b", "x")]
        bound = client.query(
            "SELECT k FROM readings WHERE (k, 'x') IN {keys:Array(Tuple(String, String))}", {"keys": keys}
        )
        frame = client.query_df("SELECT k, v FROM readings ORDER BY k")
    finally:
        client.close()

    assert typed.result_rows == [("a", Decimal("1.5")), ("b", Decimal("2.25"))]
    assert raw == b'{"k":"a"}\n{"k":"b"}\n{"k":"c"}\n'
    assert bound.result_rows == [("b",)]
    assert list(frame["v"]) == [v for _, v in READINGS]


FORBIDDEN = {
    "kill": "KILL QUERY WHERE 1",
    "system": "SYSTEM DROP MARK CACHE",
    "insert": "INSERT INTO readings VALUES ('z', 9)",
    "alter": "ALTER TABLE readings DELETE WHERE 1",
    "drop": "DROP TABLE readings",
    "create": "CREATE TABLE t2 (a UInt8) ENGINE = Memory",
    "truncate": "TRUNCATE TABLE readings",
    "optimize": "OPTIMIZE TABLE readings FINAL",
    "set": "SET max_result_rows = 0",
    "grant": "GRANT ALL ON *.* TO default",
    "file": "SELECT * FROM file('/etc/hostname', 'LineAsString')",
    "file scalar": "SELECT file('/etc/hostname')",
    "url": "SELECT * FROM url('http://127.0.0.1:9/', 'CSV', 'a String')",
    "s3 family": "SELECT * FROM s3Cluster('c', 'http://127.0.0.1:9/x.csv')",
    "remote": "SELECT * FROM remote('127.0.0.1', system.one)",
    "outfile": "SELECT 1 INTO OUTFILE '/tmp/spendpipe-outfile'",
    "two statements": "SELECT 1; SELECT 2",
    "a statement after a select": "SELECT 1; DROP TABLE readings",
    "behind a block comment": "/* SELECT */ KILL QUERY WHERE 1",
    "behind a line comment": "-- SELECT\nKILL QUERY WHERE 1",
    "after a comment holding a semicolon": "SELECT 1 /* ; */ ; DROP TABLE readings",
    "nested comment": "/* /* */ SELECT */ DROP TABLE readings",
    "unclosed comment": "SELECT 1 /* DROP",
    "table function in a subquery": "SELECT count() FROM (SELECT * FROM FILE('/etc/hostname', 'LineAsString'))",
    "quoted function name": "SELECT * FROM `file`('/etc/hostname', 'LineAsString')",
    "escaped function name": "SELECT * FROM `\\x66ile`('/etc/hostname', 'LineAsString')",
}


@pytest.mark.parametrize("query", FORBIDDEN.values(), ids=FORBIDDEN.keys())
def test_every_forbidden_statement_is_refused_by_the_allow_list(endpoint: SqlEndpoint, query: str) -> None:
    response = post(endpoint, query)

    assert_clickhouse_error(response, 403, 164)
    assert "Refused by the spendpipe SQL endpoint" in response.text
    assert post(endpoint, "SELECT count() FROM readings").text == f"{len(READINGS)}\n"


STORE_ONLY_TABLE_FUNCTIONS = frozenset(
    {
        "SQLStandardValues", "values", "format", "null", "view", "viewExplain", "viewIfPermitted", "merge",
        "loop", "numbers", "numbers_mt", "zeros", "zeros_mt", "primes", "generateRandom", "generateSeries",
        "generate_series", "mergeTreeIndex", "mergeTreeProjection", "mergeTreeTextIndex",
        "mergeTreeAnalyzeIndexes", "mergeTreeAnalyzeIndexesUUID", "mergeTreeCodecBlockCounts",
        "timeSeriesMetricFamilies", "timeSeriesMetrics", "timeSeriesSamples", "timeSeriesSelector",
        "timeSeriesTags", "prometheusQueryRange",
    }
)  # fmt: skip
"""Table functions that read only the store's own tables or make up rows, each looked at by hand."""


def test_every_table_function_of_the_engine_is_known_or_refused(store: ClickhouseStore) -> None:
    """A chDB upgrade that brings a table function nobody looked at fails here, rather than
    letting it run behind the first wall."""
    unknown = [
        name
        for name in store.column("SELECT name FROM system.table_functions ORDER BY name")
        if name not in STORE_ONLY_TABLE_FUNCTIONS and not _refused(f"SELECT * FROM {name}(1)")
    ]

    assert unknown == []


def _refused(query: str) -> bool:
    try:
        check_read_only(query)
    except ClickhouseError as error:
        return error.code == 164
    return False


ALLOWED = {
    "with": ("WITH 2 AS two SELECT two", "2\n"),
    "keywords in a string": ("SELECT 'KILL QUERY; DROP TABLE t; file(1)'", "KILL QUERY; DROP TABLE t; file(1)\n"),
    "a statement in a comment": ("SELECT 1 -- ; DROP TABLE readings", "1\n"),
    "file as a name": ("SELECT count() AS file FROM readings", "3\n"),
    "exists": ("EXISTS TABLE readings", "1\n"),
    "explain": ("EXPLAIN SYNTAX SELECT 1 FROM readings", "SELECT 1\\nFROM readings\n"),
    "show": ("SHOW TABLES LIKE 'readings'", "readings\n"),
    "a trailing semicolon": ("SELECT 3;", "3\n"),
}  # fmt: skip


@pytest.mark.parametrize(("query", "expected"), ALLOWED.values(), ids=ALLOWED.keys())
def test_reads_run(endpoint: SqlEndpoint, query: str, expected: str) -> None:
    response = post(endpoint, query)

    assert response.status_code == 200, response.text
    assert response.text == expected


def test_readonly_stands_behind_the_allow_list(store: ClickhouseStore, endpoint: SqlEndpoint) -> None:
    """The second wall: a write that got past the statement check is still refused by the engine."""
    queries = endpoint._queries  # the engine behind the check, on purpose
    for write in ("INSERT INTO readings VALUES ('z', 9)", "SELECT 1 SETTINGS max_result_rows = 0"):
        with pytest.raises(ClickhouseError) as refused:
            queries.run(write, fmt="TSV", database=store.settings.database, settings={}, parameters={})
        assert (refused.value.code, refused.value.name) == (164, "READONLY")


def test_no_setting_of_a_request_reads_or_writes_a_file(endpoint: SqlEndpoint, tmp_path: Path) -> None:
    """A format's template or schema is a file the engine opens in the pipeline's process: naming
    one would show a file's text in the error (a `.env` with the signing key) or overwrite one."""
    secret = tmp_path / "secret.env"
    secret.write_text("SPENDPIPE_SIGNING__PRIVATE_KEY=not-for-analysts\n")
    victim = tmp_path / "victim.txt"
    victim.write_text("kept\n")

    reads = [
        post(endpoint, "SELECT 1 AS x FORMAT Template", format_template_row=str(secret)),
        post(endpoint, "SELECT 1 AS x FORMAT Template", format_template_resultset=str(secret)),
        post(endpoint, "SELECT 1 AS x FORMAT Protobuf", format_schema=f"{secret}:Row"),
    ]
    write = post(endpoint, "SELECT 1 AS `written` FORMAT Protobuf", output_format_schema=str(victim))
    registry = post(endpoint, "SELECT 1", format_avro_schema_registry_url="http://127.0.0.1:1/")

    for response in [*reads, write, registry]:
        assert_clickhouse_error(response, 403, 164)
        assert "not-for-analysts" not in response.text
    assert victim.read_text() == "kept\n"
    assert post(endpoint, "SELECT 1 AS x FORMAT Template", format_template_row_format="<${x:Quoted}>").text == "<1>"


def test_limits_are_enforced(store: ClickhouseStore) -> None:
    with serve(
        store, max_result_rows=10_000, max_result_bytes=1 << 20, max_request_bytes=4096, max_query_bytes=2048
    ) as endpoint:
        too_many_rows = post(endpoint, "SELECT number FROM numbers(20000)")
        too_many_bytes = post(endpoint, "SELECT repeat(toString(number), 300) FROM numbers(5000)")
        too_large_request = post(endpoint, "SELECT 1 -- " + "x" * 5000)
        too_long_query = post(endpoint, "SELECT 1 -- " + "x" * 3000)
        lifted = post(endpoint, "SELECT 1", max_result_rows="0")
        raised = post(endpoint, "SELECT 1", max_result_rows="20000")
        lowered = post(endpoint, "SELECT number FROM numbers(200)", max_result_rows="100")
        within = post(endpoint, "SELECT count() FROM (SELECT number FROM numbers(10000))")

    assert_clickhouse_error(too_many_rows, 500, 396)
    assert_clickhouse_error(too_many_bytes, 500, 396)
    assert_clickhouse_error(too_large_request, 413, 229)
    assert_clickhouse_error(too_long_query, 413, 229)
    assert_clickhouse_error(lifted, 403, 164)
    assert_clickhouse_error(raised, 403, 164)
    assert_clickhouse_error(lowered, 500, 396)
    assert within.text == "10000\n"


def test_a_query_past_the_memory_limit_is_stopped(store: ClickhouseStore) -> None:
    """The result limits do not bound what a query holds on its way: one row of groupArray
    over 20 million numbers takes 160 MB and more in the pipeline's own process."""
    with serve(store, max_memory_bytes=64 << 20) as endpoint:
        hoarding = post(endpoint, "SELECT length(groupArray(number)) FROM numbers(20000000)")
        raised = post(endpoint, "SELECT 1", max_memory_usage=str(128 << 20))
        lifted = post(endpoint, "SELECT 1", max_memory_usage="0")
        lowered = post(endpoint, "SELECT length(groupArray(number)) FROM numbers(1000000)", max_memory_usage="4000000")
        within = post(endpoint, "SELECT length(groupArray(number)) FROM numbers(1000000)")

    assert_clickhouse_error(hoarding, 500, 241)
    assert_clickhouse_error(raised, 403, 164)
    assert_clickhouse_error(lifted, 403, 164)
    assert_clickhouse_error(lowered, 500, 241)
    assert within.text == "1000000\n"


def test_a_query_past_max_execution_time_is_stopped(store: ClickhouseStore) -> None:
    with serve(store, max_execution_time_s=1) as endpoint:
        # 40 blocks of one row, 0.25 s each: 10 s unless stopped at the limit
        response = post(endpoint, "SELECT sleepEachRow(0.25) FROM numbers(40)", max_block_size="1")

    assert_clickhouse_error(response, 500, 159)
    assert response.elapsed.total_seconds() < 5


def test_a_query_past_the_concurrent_limit_is_refused_at_once(store: ClickhouseStore) -> None:
    with serve(store, max_concurrent_queries=1) as endpoint, ThreadPoolExecutor(max_workers=1) as pool:
        # 50 blocks of one row, 0.1 s each: holds the only slot for about 5 s
        slow = pool.submit(post, endpoint, "SELECT sleepEachRow(0.1) FROM numbers(50)", max_block_size="1")
        eventually_sync(
            lambda: endpoint.queries_running,
            lambda running: running == 1 or slow.done(),
            within=10,
            what="the slow query holding the only slot",
        )
        refused = post(endpoint, "SELECT 1")
        finished = slow.result(timeout=30)
        after = post(endpoint, "SELECT 1")

    assert finished.status_code == 200, finished.text
    assert_clickhouse_error(refused, 500, 202)
    assert after.text == "1\n"


def test_a_foreign_host_header_is_refused(endpoint: SqlEndpoint) -> None:
    def with_host(host: str) -> httpx.Response:
        return httpx.get(f"{url(endpoint)}/", params={"query": "SELECT 1"}, headers={"Host": host})

    for host in ("rebound.example:%d", "127.0.0.1.nip.io:%d", "localhost:%d1", "localhost"):
        assert_clickhouse_error(with_host(host.replace("%d", str(endpoint.port))), 403, 497)
    for host in ("localhost:%d", "127.0.0.1:%d", "[::1]:%d"):
        assert with_host(host.replace("%d", str(endpoint.port))).text == "1\n"
    assert_clickhouse_error(httpx.get(f"{url(endpoint)}/ping", headers={"Host": "rebound.example"}), 403, 497)


def test_credentials_when_configured(store: ClickhouseStore) -> None:
    with serve(store, username="analyst", password="s3cret") as endpoint:
        anonymous = post(endpoint, "SELECT 1")
        wrong = httpx.post(f"{url(endpoint)}/", content="SELECT 1", auth=("analyst", "guess"))
        basic = httpx.post(f"{url(endpoint)}/", content="SELECT 1", auth=("analyst", "s3cret"))
        clickhouse_headers = {"X-ClickHouse-User": "analyst", "X-ClickHouse-Key": "s3cret"}
        headers = httpx.post(f"{url(endpoint)}/", content="SELECT 1", headers=clickhouse_headers)
        params = post(endpoint, "SELECT 1", user="analyst", password="s3cret")
        client = clickhouse_connect.get_client(
            host="127.0.0.1", port=endpoint.port, username="analyst", password="s3cret"
        )
        typed = client.query("SELECT toDecimal64(1.25, 2)").result_rows
        client.close()
        with pytest.raises(DatabaseError, match="AUTHENTICATION_FAILED"):
            clickhouse_connect.get_client(host="127.0.0.1", port=endpoint.port, username="analyst", password="no")

    assert_clickhouse_error(anonymous, 401, 516)
    assert_clickhouse_error(wrong, 401, 516)
    assert [basic.text, headers.text, params.text] == ["1\n"] * 3
    assert typed == [(Decimal("1.25"),)]


def test_bound_beyond_loopback_without_credentials_refuses_to_start(tmp_path: Path) -> None:
    env = {
        "SPENDPIPE_CLICKHOUSE__DSN": f"chdb://{tmp_path / 'clickhouse'}",
        "SPENDPIPE_OPS__PORT": "0",
        "SPENDPIPE_SQL_ENDPOINT__HOST": "0.0.0.0",
    }

    for result in (run_cli(env, "run", "all", "--validate"), run_cli(env, "run", "all")):
        assert result.returncode != 0
        assert "beyond loopback: set __USERNAME and __PASSWORD" in result.stderr
    assert not (tmp_path / "clickhouse").exists()
    with pytest.raises(ValueError, match="beyond loopback"):
        SqlEndpointSettings(host="192.0.2.1")
    assert SqlEndpointSettings(host="::1").password is None
