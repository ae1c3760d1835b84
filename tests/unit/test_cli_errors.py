"""The one mapping from an exception to what the operator reads, and the exit code."""

from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError, TopicAuthorizationFailedError
from clickhouse_connect.driver.exceptions import ProgrammingError
from typer.testing import CliRunner

from spendpipe.admin.cli import app
from spendpipe.admin.errors import RUNTIME, SETTINGS, CliError, Failure, explain
from spendpipe.contracts.budgets import BudgetRejectedError
from spendpipe.platform.settings import SettingsError

SERVERS = "kafka-1:9092,kafka-2:9092"


def test_unreachable_kafka_names_the_servers_and_the_variable() -> None:
    assert explain(KafkaConnectionError("Unable to bootstrap from [...]"), kafka_servers=SERVERS) == Failure(
        f"cannot reach Kafka at {SERVERS}: check SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS", RUNTIME
    )
    assert explain(KafkaTimeoutError(), kafka_servers=SERVERS).message == (
        f"Kafka at {SERVERS} did not answer in time: check SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS"
    )


def test_without_the_servers_the_client_says_which() -> None:
    failure = explain(KafkaConnectionError("Unable to bootstrap from [('10.0.0.1', 9092)]"))

    assert failure.message == (
        "cannot reach Kafka: check SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS "
        "(KafkaConnectionError: Unable to bootstrap from [('10.0.0.1', 9092)])"
    )


def test_other_failures_are_one_line_with_their_exit_code() -> None:
    assert explain(CliError("SPENDPIPE_X: bad", exit_code=SETTINGS)) == Failure("SPENDPIPE_X: bad", SETTINGS)
    assert explain(SettingsError("invalid settings:\n  SPENDPIPE_X: bad")).exit_code == SETTINGS
    assert explain(BudgetRejectedError(["max_budget: bad"])) == Failure(
        "budget refused:\n  max_budget: bad\nnothing was published", SETTINGS
    )
    assert "refused" in explain(TopicAuthorizationFailedError(), kafka_servers=SERVERS).message
    assert explain(ProgrammingError("Unable to open\n the chdb engine")) == Failure(
        "ClickHouse failed: Unable to open the chdb engine (check SPENDPIPE_CLICKHOUSE__DSN)", RUNTIME
    )
    assert explain(ValueError("a\nb")) == Failure("ValueError: a b", RUNTIME)


def test_a_watch_interval_that_is_not_a_finite_number_of_seconds_is_a_usage_error() -> None:
    """`nan` passes a `> 0` check and `inf` overflows the clock: both were taken, then failed."""
    for interval in ("nan", "inf", "-1"):
        result = CliRunner().invoke(app, ["spend", "global", "--watch", interval, "--format", "json"])

        assert result.exit_code == 2, result.output
        assert "--watch" in result.output
