"""The SQL endpoint's reading of a request, without a server: statements, formats, parameters,
settings, credentials, and errors in ClickHouse's shape."""

import base64

import pytest

from spendpipe.store.sql_endpoint.errors import ClickhouseError
from spendpipe.store.sql_endpoint.protocol import credentials, parse_request
from spendpipe.store.sql_endpoint.statements import check_read_only, output_format

LIMITS = {"max_execution_time": 30, "max_result_rows": 1000, "max_result_bytes": 1 << 20, "max_memory_usage": 1 << 30}


@pytest.mark.parametrize(
    ("sql", "fmt"),
    [
        ("SELECT 1", None),
        ("SELECT 1 FORMAT JSONEachRow", "JSONEachRow"),
        ("SELECT 1 FORMAT `CSV` ;", "CSV"),
        ("SELECT format FROM t", None),
        ("SELECT formatReadableSize(1) FORMAT TSV SETTINGS extremes = 1", "TSV"),
        ("SELECT * FROM (SELECT 1 FORMAT JSON) FORMAT Native", "Native"),
    ],
)
def test_the_output_format_comes_from_a_trailing_clause(sql: str, fmt: str | None) -> None:
    assert output_format(check_read_only(sql)) == fmt


@pytest.mark.parametrize(
    "sql",
    [
        "(SELECT 1) UNION ALL (SELECT 2)",
        'select \'it\'\'s\' AS "a ""b"""',
        "SELECT x -> x + 1, [1, 2][1], {'a': 1}, 1e-3, 0x1F, {p:String}",
        "# a comment\nSELECT 1",
        "DESC readings",
    ],
)
def test_reads_pass(sql: str) -> None:
    assert check_read_only(sql)


@pytest.mark.parametrize(
    "sql",
    [
        "",
        ";",
        "SELECT $$heredoc$$",
        "SELECT 1 #no space",
        "SELECT 'unclosed",
        "kill query where 1",
        "SELECT * FROM S3('x')",
        "SELECT * FROM icebergS3('x')",
        "SELECT * FROM \"url\"('x')",
        "SELECT 1 INTO OUTFILE 'x'",
        "SELECT 1;;SELECT 2",
        # chDB's own: Python objects of the process the engine runs in, and files by other names
        "SELECT * FROM Python(settings)",
        "SELECT * FROM python(df)",
        "SELECT * FROM arrowstream('x')",
        "SELECT * FROM filesystem('/etc')",
        "SELECT * FROM paimonLocal('/data')",
        "SELECT * FROM paimonS3('x')",
        "SELECT * FROM bigquery('x')",
        "SELECT * FROM eval('SELECT 1')",
    ],
)
def test_anything_else_is_refused(sql: str) -> None:
    with pytest.raises(ClickhouseError) as refused:
        check_read_only(sql)

    assert refused.value.code in (62, 164)
    assert refused.value.status in (400, 403)


def test_a_request_names_its_query_parameters_settings_and_database() -> None:
    items = [
        ("query", "SELECT {n:UInt8}"),
        ("param_n", "7"),
        ("database", "system"),
        ("default_format", "JSON"),
        ("session_id", "ignored"),
        ("max_result_rows", "10"),
        ("output_format_json_quote_64bit_integers", "0"),
        ("readonly", "1"),
    ]

    request = parse_request(items, "FROM numbers(1)", limits=LIMITS)

    assert request.query == "SELECT {n:UInt8}\nFROM numbers(1)"
    assert request.parameters == {"n": "7"}
    assert request.database == "system"
    assert request.default_format == "JSON"
    assert request.settings == {"max_result_rows": "10", "output_format_json_quote_64bit_integers": "0"}


@pytest.mark.parametrize(
    ("name", "value"),
    [("max_result_rows", "0"), ("max_result_rows", "1001"), ("max_execution_time", "x"), ("readonly", "0"),
     ("allow_ddl", "1"), ("result_overflow_mode", "break"), ("max_memory_usage", "0"),
     ("max_memory_usage", str((1 << 30) + 1)), ("max_memory_usage", "1GiB")],
)  # fmt: skip
def test_a_setting_that_lifts_a_limit_or_does_more_is_refused(name: str, value: str) -> None:
    with pytest.raises(ClickhouseError) as refused:
        parse_request([(name, value)], "SELECT 1", limits=LIMITS)

    assert refused.value.text().startswith("Code: 164. DB::Exception: ")
    assert refused.value.status == 403


def test_credentials_in_every_form_clickhouse_takes() -> None:
    basic = "Basic " + base64.b64encode(b"analyst:pa:ss").decode()

    assert credentials({"authorization": basic}, []) == credentials({}, [("user", "analyst"), ("password", "pa:ss")])
    assert credentials({"x-clickhouse-user": "analyst", "x-clickhouse-key": "pa:ss"}, []).password == "pa:ss"
    assert credentials({}, []).user is None
    with pytest.raises(ClickhouseError, match="Malformed"):
        credentials({"authorization": "Basic !!"}, [])


def test_engine_errors_keep_their_code_and_name() -> None:
    nested = (
        "Code: 164. DB::Exception: Code: 164. DB::Exception: Cannot modify 'x'. (READONLY) (version 26.9). (READONLY)"
    )

    error = ClickhouseError.from_engine(RuntimeError(nested))

    assert (error.code, error.name, error.status) == (164, "READONLY", 403)
    assert error.text() == "Code: 164. DB::Exception: Cannot modify 'x'. (READONLY)\n"
    assert ClickhouseError.from_engine(RuntimeError("odd")).status == 500
