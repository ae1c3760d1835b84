"""ClickHouse settings: a server DSN, credentials and TLS turned into clickhouse-connect's
arguments, errors that name the variable, and the order a server connection is opened in."""

import os
from typing import Any

import clickhouse_connect
import pytest

from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.platform.clickhouse import READ_ONLY, ClickhouseSettings, Cluster, client_args, connect_clickhouse
from spendpipe.platform.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("SPENDPIPE_"):
            monkeypatch.delenv(name)
    monkeypatch.setitem(AggregatorSettings.model_config, "env_file", None)


def settings_error(monkeypatch: pytest.MonkeyPatch, **variables: str) -> str:
    for name, value in variables.items():
        monkeypatch.setenv(f"SPENDPIPE_CLICKHOUSE__{name}", value)
    with pytest.raises(SettingsError) as raised:
        load_settings(AggregatorSettings)
    return str(raised.value)


def test_an_http_server_with_the_default_user() -> None:
    args = client_args(ClickhouseSettings(dsn="http://clickhouse.internal"))

    assert args == {
        "interface": "http",
        "host": "clickhouse.internal",
        "port": 8123,
        "username": "default",
        "password": "",
    }


def test_https_verifies_the_server_by_default() -> None:
    args = client_args(ClickhouseSettings(dsn="https://clickhouse.internal", username="writer", password="s3cret"))

    assert args == {
        "interface": "https",
        "host": "clickhouse.internal",
        "port": 8443,
        "username": "writer",
        "password": "s3cret",
        "verify": True,
    }


def test_tls_files_and_verify_pass_through_under_clickhouse_connects_names(monkeypatch: pytest.MonkeyPatch) -> None:
    example = {
        "DSN": "https://ch-1.internal:9440",
        "USERNAME": "writer",
        "PASSWORD": "ch-secret",
        "VERIFY": "false",
        "CA_CERT": "/etc/spendpipe/ca.pem",
        "CLIENT_CERT": "/etc/spendpipe/client.pem",
        "CLIENT_CERT_KEY": "/etc/spendpipe/client.key",
    }
    for name, value in example.items():
        monkeypatch.setenv(f"SPENDPIPE_CLICKHOUSE__{name}", value)

    settings = load_settings(AggregatorSettings).clickhouse

    assert client_args(settings) == {
        "interface": "https",
        "host": "ch-1.internal",
        "port": 9440,
        "username": "writer",
        "password": "ch-secret",
        "verify": False,
        "ca_cert": "/etc/spendpipe/ca.pem",
        "client_cert": "/etc/spendpipe/client.pem",
        "client_cert_key": "/etc/spendpipe/client.key",
    }
    assert "ch-secret" not in repr(settings)


def test_credentials_in_the_dsn_move_out_of_it() -> None:
    settings = ClickhouseSettings(dsn="https://writer:p%40ss%3Aword@ch.internal:8443/")

    assert settings.dsn == "https://ch.internal:8443/"
    assert settings.username == "writer"
    assert settings.password is not None
    assert settings.password.get_secret_value() == "p@ss:word"
    assert client_args(settings)["password"] == "p@ss:word"
    assert "p@ss" not in repr(settings)


def test_the_embedded_engine_gets_an_absolute_directory(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    assert client_args(ClickhouseSettings(dsn="chdb://data/ch")) == {
        "interface": "chdb",
        "path": str(tmp_path.resolve() / "data" / "ch"),
        "chdb_options": {"os_threads_nice_value_merge_mutate": 19},
    }


def test_the_embedded_engines_merge_priority_is_a_setting() -> None:
    args = client_args(ClickhouseSettings(dsn="chdb://data/ch", merge_nice=0))

    assert args["chdb_options"] == {"os_threads_nice_value_merge_mutate": 0}


def test_a_merge_priority_for_a_server_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(monkeypatch, DSN="https://ch.internal", MERGE_NICE="19")

    assert "__MERGE_NICE applies to chdb://; a server sets it in its own configuration" in message


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("https://ch.internal:8443/spend", "the database is SPENDPIPE_CLICKHOUSE__DATABASE"),
        ("https://ch.internal:8443?compress=lz4", "takes scheme, host and port only"),
        ("http://:8123", "needs a host"),
        ("http://ch.internal:port", "the port must be a number"),
    ],
)
def test_a_bad_server_dsn_names_the_dsn_variable(monkeypatch: pytest.MonkeyPatch, dsn: str, problem: str) -> None:
    message = settings_error(monkeypatch, DSN=dsn)

    (line,) = [line for line in message.splitlines() if line.lstrip().startswith("SPENDPIPE_CLICKHOUSE__DSN: ")]
    assert problem in line


def test_tls_settings_need_an_https_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(monkeypatch, DSN="http://ch.internal:8123", CA_CERT="/ca.pem", VERIFY="false")

    assert "SPENDPIPE_CLICKHOUSE: Value error, __CA_CERT, __VERIFY need an https:// DSN" in message


def test_server_settings_with_the_embedded_engine_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(monkeypatch, DSN="chdb:///var/lib/spendpipe", USERNAME="writer", PASSWORD="hunter2")

    assert "SPENDPIPE_CLICKHOUSE: Value error, __USERNAME, __PASSWORD apply to a server" in message
    assert "hunter2" not in message


def test_a_client_key_needs_its_certificate(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(monkeypatch, DSN="https://ch.internal", CLIENT_CERT_KEY="/client.key")

    assert "__CLIENT_CERT_KEY needs __CLIENT_CERT" in message


def test_credentials_in_both_places_are_refused_without_echoing_them(monkeypatch: pytest.MonkeyPatch) -> None:
    message = settings_error(monkeypatch, DSN="https://writer:hunter2@ch.internal", USERNAME="reader")

    assert "SPENDPIPE_CLICKHOUSE: Value error, credentials are both in __DSN and in __USERNAME/__PASSWORD" in message
    assert "hunter2" not in message


class RecordingClient:
    def __init__(self, calls: list[tuple[str, Any]], args: dict[str, Any]) -> None:
        self._calls = calls
        calls.append(("connect", args))

    def command(self, sql: str, parameters: Any = None) -> None:
        self._calls.append(("command", sql))

    def close(self) -> None:
        self._calls.append(("close", None))


@pytest.fixture
def client_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    calls: list[tuple[str, Any]] = []
    monkeypatch.setattr(clickhouse_connect, "get_client", lambda **args: RecordingClient(calls, args))
    return calls


def test_a_missing_database_is_created_from_the_default_one_first(client_calls: list[tuple[str, Any]]) -> None:
    settings = ClickhouseSettings(dsn="https://ch.internal", database="spend_prod", password="s3cret")

    connect_clickhouse(settings).close()

    server = client_args(settings)
    assert client_calls == [
        ("connect", server),
        ("command", "CREATE DATABASE IF NOT EXISTS spend_prod"),
        ("close", None),
        ("connect", {**server, "database": "spend_prod", "settings": None}),
        ("close", None),
    ]


def test_a_read_only_client_creates_nothing(client_calls: list[tuple[str, Any]]) -> None:
    settings = ClickhouseSettings(dsn="http://ch.internal", database="spend_prod")

    connect_clickhouse(settings, read_only=True).close()

    assert client_calls == [
        ("connect", {**client_args(settings), "database": "spend_prod", "settings": READ_ONLY}),
        ("close", None),
    ]


def test_on_a_cluster_the_database_is_created_on_every_server(client_calls: list[tuple[str, Any]]) -> None:
    settings = ClickhouseSettings(dsn="http://ch.internal", database="spend_prod", cluster="spendpipe")

    connect_clickhouse(settings).close()

    assert ("command", "CREATE DATABASE IF NOT EXISTS spend_prod ON CLUSTER 'spendpipe'") in client_calls


def test_a_cluster_with_its_replica_path_and_name() -> None:
    settings = ClickhouseSettings(
        dsn="http://ch.internal", cluster="prod_ch", replica_path="/ch/{shard}/{uuid}", replica_name="{host}"
    )

    assert settings.replication == Cluster("prod_ch", "/ch/{shard}/{uuid}", "{host}")
    assert ClickhouseSettings(dsn="http://ch.internal").replication is None


@pytest.mark.parametrize(
    ("variables", "problem"),
    [
        ({"CLUSTER": "spendpipe"}, "SPENDPIPE_CLICKHOUSE: Value error, __CLUSTER applies to a server"),
        ({"DSN": "http://ch", "REPLICA_NAME": "r1"}, "__REPLICA_NAME need __CLUSTER"),
        ({"DSN": "http://ch", "CLUSTER": "c", "REPLICA_PATH": "/ch/{shard}"}, "must contain {table} or {uuid}"),
        ({"DSN": "http://ch", "CLUSTER": "c", "REPLICA_PATH": "/ch/'{table}"}, "SPENDPIPE_CLICKHOUSE__REPLICA_PATH"),
        ({"DSN": "http://ch", "CLUSTER": "c'; DROP"}, "SPENDPIPE_CLICKHOUSE__CLUSTER"),
    ],
)
def test_cluster_settings_that_cannot_work_are_refused(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], problem: str
) -> None:
    assert problem in settings_error(monkeypatch, **variables)
