"""Loading a service's settings, with errors that name the environment variable to fix."""

from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as PydanticSettingsError

from spendpipe.contracts.topics import Topics
from spendpipe.contracts.windows import Calendar, WeekStart
from spendpipe.platform.clickhouse import ClickhouseSettings
from spendpipe.platform.kafka import KafkaSettings
from spendpipe.platform.ops_server import OpsSettings
from spendpipe.platform.signing import SigningSettings

ENV_PREFIX = "SPENDPIPE_"
NESTED_DELIMITER = "__"

S = TypeVar("S", bound=BaseSettings)


def service_config() -> SettingsConfigDict:
    """`SPENDPIPE_` prefix, `__` between a section and its field, `.env` read when present; no
    infinite or NaN number (`inf` passes a `> 0` check, and a wait of it never ends)."""
    return SettingsConfigDict(
        allow_inf_nan=False,
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED_DELIMITER,
        env_file=".env",
        extra="ignore",
    )


class CalendarFields(BaseModel):
    """`SPENDPIPE_BUDGET_TIMEZONE` and `SPENDPIPE_WEEK_START`, in every settings class of a
    process that computes windows (the pipeline's services, the CLI, the gateways)."""

    budget_timezone: str = "UTC"
    """`SPENDPIPE_BUDGET_TIMEZONE`: the IANA zone whose midnights start day, week and month
    windows (LiteLLM's `litellm_settings.timezone`). One value for the whole deployment: the store
    records it and a service configured otherwise refuses to start (docs/budgets.md)."""
    week_start: WeekStart = WeekStart.SUNDAY
    """`SPENDPIPE_WEEK_START`: sunday (the default) or monday (LiteLLM's proxy resets `7d` on Monday)."""

    @field_validator("budget_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        Calendar(value)  # raises naming the zone
        return value

    @property
    def calendar(self) -> Calendar:
        return Calendar(self.budget_timezone, self.week_start)


class PipelineSettings(CalendarFields, BaseSettings):
    """The connections every spendpipe process needs: Kafka, the topic names, ClickHouse, and
    its health and metrics endpoint. Each service's settings class adds its own fields."""

    model_config = service_config()

    kafka: KafkaSettings = KafkaSettings()
    topics: Topics = Topics()
    clickhouse: ClickhouseSettings = ClickhouseSettings()
    ops: OpsSettings = OpsSettings()
    signing: SigningSettings = SigningSettings()
    """Signatures on decisions and budgets: what this process signs with and which writers it accepts."""


class SigningOnly(BaseSettings):
    """`SPENDPIPE_SIGNING__*` alone, for the Python APIs that load their own settings."""

    model_config = service_config()

    signing: SigningSettings = SigningSettings()


class SettingsError(ValueError):
    """Settings that cannot start a service; the message lists every problem, one per line."""


def load_settings(cls: type[S]) -> S:
    """Read `cls` from the environment (and `.env`). Raises `SettingsError` naming each variable."""
    try:
        return cls()
    except ValidationError as error:
        raise SettingsError(describe_errors(error)) from None
    except PydanticSettingsError as error:
        # a section given as JSON that does not parse, e.g. SPENDPIPE_KAFKA='{"bootstrap'
        raise SettingsError(f"invalid settings:\n  {_variable_of(error)}: {error}") from None


def require_keys(signing: SigningSettings, *, writes: bool, reads: bool) -> None:
    """Raise `SettingsError` if a service that signs and/or verifies lacks its keys."""
    problems = signing.problems(writes=writes, reads=reads)
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))


def _variable_of(error: PydanticSettingsError) -> str:
    field = str(error).partition('field "')[2].partition('"')[0]
    return ENV_PREFIX + field.upper() if field else "settings"


def describe_errors(error: ValidationError) -> str:
    lines = []
    for issue in error.errors(include_url=False):
        location = [str(part) for part in issue["loc"] if not isinstance(part, int)]
        variable = ENV_PREFIX + NESTED_DELIMITER.join(location).upper() if location else "settings"
        value = issue.get("input")
        shown = "" if isinstance(value, dict) or "password" in variable.lower() else f" (got {value!r})"
        lines.append(_without_url_password(f"{variable}: {issue['msg']}{shown}", value))
    return "invalid settings:\n  " + "\n  ".join(lines)


def _without_url_password(line: str, value: object) -> str:
    """`line` with the password of a URL given as `value` (`https://user:password@host`, as the
    ClickHouse DSN and the SQL endpoint URL take it) shown as `***`, wherever the line repeats it."""
    if not isinstance(value, str) or "@" not in value:
        return line
    try:
        password = urlsplit(value).password
    except ValueError:
        password = None
    if password is None:
        # a URL that does not parse may still hold one: everything between the first `:` after
        # the scheme and the last `@`
        password = value.partition("://")[2].rpartition("@")[0].partition(":")[2] or None
    return line.replace(password, "***") if password else line
