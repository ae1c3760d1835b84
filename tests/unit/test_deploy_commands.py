"""Every `spendpipe ...` that compose and the Kubernetes manifests run exists with the flags it
passes, and every SPENDPIPE_ variable they (or .env.example, or the images) set is a real
settings field: the settings ignore unknown variables, so a misspelt one would be lost silently."""

import os
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import BaseModel
from pydantic_settings import BaseSettings
from typer.core import TyperGroup
from typer.exceptions import TyperException
from typer.testing import CliRunner

from spendpipe.admin.cli import app
from spendpipe.admin.settings import AdminSettings
from spendpipe.aggregator.settings import AggregatorSettings
from spendpipe.enforcer.settings import EnforcerSettings
from spendpipe.gateway.settings import GatewaySettings
from spendpipe.notifier.settings import NotifierSettings
from spendpipe.platform.settings import ENV_PREFIX, NESTED_DELIMITER, load_settings
from tests.support.deploy import (
    GATEWAY_DOCKERFILE,
    SERVICES_DOCKERFILE,
    SpendpipeCommand,
    compose_config,
    dockerfile_env,
    env_example,
    k8s_object,
    spendpipe_commands,
)
from tests.support.signing import with_local_keys

SETTINGS_OF: dict[tuple[str, ...], tuple[type[BaseSettings], ...]] = {
    ("run", "aggregator"): (AggregatorSettings,),
    ("run", "enforcer"): (EnforcerSettings,),
    ("run", "all"): (AggregatorSettings, EnforcerSettings),
    ("run", "notifier"): (NotifierSettings,),
    ("topics", "create"): (AdminSettings,),
    ("traffic",): (),
    ("keys", "generate"): (),
}
ALL_SETTINGS = (AggregatorSettings, EnforcerSettings, AdminSettings, GatewaySettings, NotifierSettings)

COMMANDS = spendpipe_commands(compose_config(Path("/dev/null")))


@pytest.fixture(autouse=True)
def only_the_given_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SPENDPIPE_ variable from the shell and no `.env` from the working directory."""
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def settings_of(command: SpendpipeCommand) -> tuple[type[BaseSettings], ...]:
    (found,) = [classes for prefix, classes in SETTINGS_OF.items() if command.args[: len(prefix)] == prefix]
    return found


def has_field(model: type[BaseModel], path: list[str]) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    nested = field.annotation
    return isinstance(nested, type) and issubclass(nested, BaseModel) and has_field(nested, path[1:])


def is_setting(name: str, model: type[BaseModel]) -> bool:
    path = name.removeprefix(ENV_PREFIX).lower().split(NESTED_DELIMITER)
    return has_field(model, path)


def spendpipe_variables(env: dict[str, Any]) -> list[str]:
    return [name for name in env if name.startswith(ENV_PREFIX)]


def test_compose_and_k8s_run_the_commands_expected() -> None:
    where = {command.where for command in COMMANDS}

    assert {"compose topics", "compose aggregator", "compose enforcer", "compose traffic"} <= where
    assert {"k8s Job/spendpipe-topics", "k8s Deployment/spendpipe-aggregator"} <= where
    assert {"k8s Deployment/spendpipe-enforcer", "k8s Deployment/spendpipe-notifier"} <= where


def parse(args: tuple[str, ...]) -> None:
    """Parse `spendpipe <args>` as the CLI would, without running it: an unknown command or
    option, or a value of the wrong type or range, raises typer's usage error."""
    command = typer.main.get_command(app)
    rest = list(args)
    path = ["spendpipe"]
    while isinstance(command, TyperGroup):
        name, *rest = rest
        found = command.get_command(command.context_class(command), name)
        assert found is not None, f"no command {' '.join([*path, name])}"
        command, path = found, [*path, name]
    command.make_context(" ".join(path), rest)


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_command_exists_with_its_flags(command: SpendpipeCommand) -> None:
    parse(command.args)


def test_a_wrong_command_or_flag_would_be_caught() -> None:
    with pytest.raises(AssertionError, match="no command spendpipe topics make"):
        parse(("topics", "make"))
    with pytest.raises(TyperException, match="No such option"):
        parse(("topics", "create", "--partition", "3"))
    with pytest.raises(TyperException, match="greater than or equal to 1"):
        parse(("topics", "create", "--partitions", "0"))
    with pytest.raises(TyperException, match="No such option"):
        parse(("run", "aggregator", "--validat"))


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.args[0] == "run"], ids=str)
def test_service_settings_are_valid(command: SpendpipeCommand, tmp_path: Path) -> None:
    env = {name: value for name, value in command.env.items() if name.startswith(ENV_PREFIX)}
    env = with_local_keys(env, tmp_path)  # the signing key files the container mounts, here

    result = CliRunner().invoke(app, [*command.args, "--validate"], env=env)

    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_variable_is_a_settings_field(command: SpendpipeCommand, monkeypatch: pytest.MonkeyPatch) -> None:
    classes = settings_of(command)
    for name in spendpipe_variables(command.env):
        missing = [cls.__name__ for cls in classes if not is_setting(name, cls)]
        assert not missing, f"{command}: {name} is no field of {', '.join(missing)}"
    for name in spendpipe_variables(command.env):
        monkeypatch.setenv(name, command.env[name])
    for cls in classes:
        load_settings(cls)


def test_gateway_variables_are_gateway_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    compose_env = compose_config(Path("/dev/null"))["services"]["gateway"]["environment"]
    sources = {
        "compose gateway": {name: value for name, value in compose_env.items() if value is not None},
        "k8s spendpipe-gateway-env": k8s_object("ConfigMap", "spendpipe-gateway-env")["data"],
        "services/gateway/Dockerfile": dockerfile_env(GATEWAY_DOCKERFILE),
    }
    for where, env in sources.items():
        unknown = [name for name in spendpipe_variables(env) if not is_setting(name, GatewaySettings)]
        assert not unknown, f"{where}: {unknown} are not GatewaySettings fields"
        with monkeypatch.context() as patch:
            for name in spendpipe_variables(env):
                patch.setenv(name, str(env[name]))
            settings = load_settings(GatewaySettings)
        assert settings.ops.enabled
        assert settings.ops.port == 9465


def test_services_image_variables_are_service_settings() -> None:
    env = dockerfile_env(SERVICES_DOCKERFILE)

    for cls in (AggregatorSettings, EnforcerSettings):
        assert [name for name in spendpipe_variables(env) if not is_setting(name, cls)] == []


def test_env_example_variables_are_settings_fields() -> None:
    variables = spendpipe_variables(env_example())

    assert variables
    assert [name for name in variables if not any(is_setting(name, cls) for cls in ALL_SETTINGS)] == []


def test_a_misspelt_variable_would_be_caught() -> None:
    assert is_setting("SPENDPIPE_KAFKA__SASL_MECHANISM", AggregatorSettings)
    assert not is_setting("SPENDPIPE_KAFKA__SASL_MECHANISMS", AggregatorSettings)
    assert not is_setting("SPENDPIPE_KAFKA_BOOTSTRAP_SERVERS", AggregatorSettings)
    assert not is_setting("SPENDPIPE_GROUP_ID__X", AggregatorSettings)
