"""docker-compose.yml and .env.example: valid Compose, every variable listed with its default,
pinned images, healthchecks and start order, and images that match the package."""

import copy
import json
import re
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.deploy import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    GATEWAY_CONFIG,
    GATEWAY_DOCKERFILE,
    REPO,
    SERVICES_DOCKERFILE,
    compose_config,
    compose_variables,
    env_example,
)

ONE_SHOT = {"topics", "keys"}


def compose_schema() -> dict[str, Any]:
    """The Compose Specification's JSON schema, as check-jsonschema (a pinned dev dependency)
    vendors it from compose-spec/compose-spec."""
    schema = files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    return dict(json.loads(schema.read_text()))


def schema_errors(document: dict[str, Any]) -> list[str]:
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    return compose_config(Path("/dev/null"))


def test_compose_file_matches_the_compose_specification() -> None:
    document = yaml.safe_load(COMPOSE_FILE.read_text())

    assert schema_errors(document) == []
    broken = copy.deepcopy(document)
    broken["services"]["aggregator"]["helthcheck"] = {}
    assert schema_errors(broken), "the schema must catch a misspelt key"


def test_docker_compose_accepts_it_with_and_without_env_example(resolved: dict[str, Any]) -> None:
    with_example = compose_config(ENV_EXAMPLE)

    assert with_example == resolved, ".env.example must list the defaults compose uses"


def test_env_example_lists_every_variable_compose_reads() -> None:
    assert compose_variables() - set(env_example()) == set()


def test_optional_kafka_security_reaches_the_services_only_when_set(resolved: dict[str, Any], tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("SPENDPIPE_KAFKA__SECURITY_PROTOCOL=SASL_SSL\nSPENDPIPE_KAFKA__SASL_MECHANISM=SCRAM-SHA-512\n")

    secured = compose_config(env_file)

    for name in ("topics", "aggregator", "enforcer", "gateway"):
        assert resolved["services"][name]["environment"]["SPENDPIPE_KAFKA__SASL_MECHANISM"] is None  # unset
        assert secured["services"][name]["environment"]["SPENDPIPE_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
        assert secured["services"][name]["environment"]["SPENDPIPE_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"


def test_third_party_images_are_pinned_to_versions(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        if "build" in service:
            continue
        tag = service["image"].partition(":")[2]
        # a version, as Docker Hub tags it (Prometheus's tags start with v)
        assert re.match(r"^v?\d+(\.\d+)+$", tag), f"{name}: {service['image']} is not pinned to a version"
    assert resolved["services"]["kafka"]["image"].startswith("apache/kafka:")
    assert resolved["services"]["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")


def test_every_long_running_service_has_a_healthcheck(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        if name in ONE_SHOT:
            continue
        check = service.get("healthcheck", {})
        assert check.get("test"), f"{name} has no healthcheck"
        assert not check.get("disable"), f"{name}'s healthcheck is disabled"


def test_services_start_after_what_they_need_is_healthy_or_done(resolved: dict[str, Any]) -> None:
    for name, service in resolved["services"].items():
        for needed, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if needed in ONE_SHOT else "service_healthy"
            assert condition["condition"] == expected, f"{name} -> {needed}"
    assert set(resolved["services"]["aggregator"]["depends_on"]) == {"topics", "clickhouse", "keys"}
    assert set(resolved["services"]["enforcer"]["depends_on"]) == {"topics", "clickhouse", "keys"}
    assert set(resolved["services"]["gateway"]["depends_on"]) == {"topics", "keys"}
    assert resolved["services"]["traffic"]["profiles"] == ["traffic"]
    assert resolved["services"]["notifier"]["profiles"] == ["notify"]


def test_state_lives_in_named_volumes(resolved: dict[str, Any]) -> None:
    mounts = {name: service.get("volumes", []) for name, service in resolved["services"].items()}

    assert all(mount["type"] == "volume" for volumes in mounts.values() for mount in volumes)
    assert {m["source"] for volumes in mounts.values() for m in volumes} == set(resolved["volumes"])
    assert {name for name, volumes in mounts.items() if volumes} == {
        "kafka",
        "clickhouse",
        "gateway",
        "keys",
        "aggregator",
        "enforcer",
        "notifier",
    }


def test_our_healthchecks_probe_the_ops_endpoint(resolved: dict[str, Any]) -> None:
    for name, port in (("aggregator", 9464), ("enforcer", 9464), ("notifier", 9464), ("gateway", 9465)):
        service = resolved["services"][name]
        assert f"http://127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
        assert service["environment"]["SPENDPIPE_OPS__PORT"] == str(port)
        assert service["environment"]["SPENDPIPE_OPS__HOST"] == "0.0.0.0"
    assert resolved["services"]["gateway"]["environment"]["SPENDPIPE_OPS__ENABLED"] == "true"


def test_services_image_is_slim_non_root_and_runs_spendpipe() -> None:
    text = SERVICES_DOCKERFILE.read_text()

    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim", text, flags=re.MULTILINE)
    assert len(re.findall(r"^FROM ", text, flags=re.MULTILINE)) == 2, "multi-stage"
    assert re.search(r"^USER 10001", text, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["spendpipe"]' in text
    assert "pip install ." in text
    assert "[dev]" not in text


def test_gateway_image_is_litellm_of_the_pinned_version() -> None:
    pinned = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    (litellm,) = [requirement for requirement in pinned if requirement.startswith("litellm==")]
    text = GATEWAY_DOCKERFILE.read_text()

    assert f"ARG LITELLM_VERSION={litellm.removeprefix('litellm==')}" in text
    # the base is a build argument whose default is the official image of that version
    assert "ARG LITELLM_IMAGE=ghcr.io/berriai/litellm:v${LITELLM_VERSION}" in text
    assert re.search(r"^FROM \$\{LITELLM_IMAGE\}$", text, flags=re.MULTILINE)
    # the proxy runs unprivileged
    assert re.findall(r"^USER (\S+)", text, flags=re.MULTILINE)[-1] == "10001:10001"
    assert "COPY services/gateway/config.yaml /app/config.yaml" in text
    assert '"--config", "/app/config.yaml"' in text
    dockerignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "!services/gateway/config.yaml" in dockerignore


def test_gateway_config_enables_the_plugin_with_priced_mock_models() -> None:
    config = yaml.safe_load(GATEWAY_CONFIG.read_text())
    prices = json.loads((files("litellm") / "model_prices_and_context_window_backup.json").read_text())

    assert config["litellm_settings"]["callbacks"] == "spendpipe.gateway.proxy.handler"
    assert config["general_settings"]["master_key"] == "os.environ/LITELLM_MASTER_KEY"
    assert config["model_list"]
    for model in config["model_list"]:
        assert model["litellm_params"]["mock_response"]
        assert model["litellm_params"]["model"] in prices, f"{model['model_name']} has no price"


def test_gateways_mount_only_public_keys(resolved: dict[str, Any]) -> None:
    def sources(name: str) -> set[str]:
        return {mount["source"] for mount in resolved["services"][name].get("volumes", [])}

    assert "signing-private" not in sources("gateway")
    assert "signing-public" in sources("gateway")
    enforcer = resolved["services"]["enforcer"]["environment"]
    assert enforcer["SPENDPIPE_SIGNING__PRIVATE_KEY_FILE"].endswith("/enforcer.key")
    assert {"signing-private", "signing-public"} <= sources("keys")
