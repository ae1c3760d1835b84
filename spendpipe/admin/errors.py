"""How the CLI fails: one line on stderr saying what failed and which setting to check, an exit
code, and no traceback unless `spendpipe --debug ...` asks for it.

Exit 2: the settings or the command line are wrong (fix them, then run again). Exit 1: a
failure at run time (a broker that does not answer, a store another process owns). Every
command's errors come here through `main()`; this is the one mapping from an exception to
what the operator reads.
"""

import logging
import traceback
from dataclasses import dataclass

import clickhouse_connect.driver.exceptions as clickhouse_errors
from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError

# typer (pinned) vendors click and names its usage errors nowhere public
from typer._click.exceptions import UsageError

from spendpipe.admin.render import console, plain
from spendpipe.contracts.budgets import BudgetRejectedError
from spendpipe.platform.settings import SettingsError

SETTINGS = 2
RUNTIME = 1

KAFKA_SERVERS = "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS"
CLICKHOUSE_DSN = "SPENDPIPE_CLICKHOUSE__DSN"


class CliError(Exception):
    """A failure the CLI has already put into words: `message` is printed as it is."""

    def __init__(self, message: str, *, exit_code: int = RUNTIME) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Failure:
    message: str
    exit_code: int


def explain(error: BaseException, *, kafka_servers: str | None = None) -> Failure:
    """What to tell the operator about `error`; `kafka_servers` is the configured bootstrap list."""
    if isinstance(error, CliError):
        return Failure(str(error), error.exit_code)
    if isinstance(error, SettingsError):
        return Failure(str(error), SETTINGS)
    if isinstance(error, BudgetRejectedError):
        return Failure(f"{error}\nnothing was published", SETTINGS)
    if isinstance(error, UsageError):
        command = f"{error.ctx.command_path} --help" if error.ctx else "spendpipe --help"
        return Failure(f"{' '.join(error.format_message().split())} (see {command})", SETTINGS)
    return Failure(_at_run_time(error, kafka_servers), RUNTIME)


def _at_run_time(error: BaseException, kafka_servers: str | None) -> str:
    at = f" at {kafka_servers}" if kafka_servers else ""
    match error:
        case KafkaConnectionError():
            why = "" if kafka_servers else f" ({_one_line(error)})"
            return f"cannot reach Kafka{at}: check {KAFKA_SERVERS}{why}"
        case KafkaTimeoutError():
            return f"Kafka{at} did not answer in time: check {KAFKA_SERVERS}"
        case KafkaError():
            return f"Kafka{at} refused: {_one_line(error)} (check SPENDPIPE_KAFKA__* and the topic names)"
        case clickhouse_errors.Error():
            return f"ClickHouse failed: {_one_line(error)} (check {CLICKHOUSE_DSN})"
    return f"{type(error).__name__}: {_one_line(error)}"


def report(error: BaseException, *, kafka_servers: str | None, debug: bool) -> int:
    """Print `error` for the operator (with its traceback when `debug`); return the exit code."""
    failure = explain(error, kafka_servers=kafka_servers)
    errors = console(stderr=True)
    if debug:
        errors.print(plain("".join(traceback.format_exception(error)), lines=True))
    worded = isinstance(error, CliError | SettingsError | BudgetRejectedError | UsageError)  # no traceback needed
    hint = "" if debug or worded else " (spendpipe --debug ... shows the traceback)"
    errors.print(plain(f"error: {failure.message}{hint}", "red", lines=True))
    return failure.exit_code


def quiet_client_logs(*, debug: bool) -> None:
    """The Kafka and ClickHouse clients log each failed connection attempt; a command's failure
    is reported once, here, so those lines show only with `--debug`."""
    for client in ("aiokafka", "clickhouse_connect"):
        logging.getLogger(client).setLevel(logging.NOTSET if debug else logging.CRITICAL)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__
