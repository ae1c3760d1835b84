"""docker-compose.yml's services as processes on this machine: each one's command and environment
exactly as the real compose binary resolves them (`docker compose config` with .env.example, see
tests/support/deploy.py) on top of its image's ENTRYPOINT, CMD and ENV, with only the values a
test names replaced. Every replacement is recorded, so a test can show that nothing else differs."""

import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from spendpipe.platform.processes import terminate
from tests.support.deploy import GATEWAY_DOCKERFILE, SERVICES_DOCKERFILE, SPENDPIPE_IMAGE

VENV_BIN = Path(sys.executable).parent
"""The project's virtualenv: what the images' /opt/spendpipe (services) and site-packages
(gateway) hold, installed from the same checkout."""

LITELLM_ENTRYPOINT = ("litellm",)
"""The official LiteLLM image's ENTRYPOINT is docker/prod_entrypoint.sh, which ends in
`exec litellm "$@"` (no supervisord or ddtrace unless asked for); the gateway image keeps it."""


@dataclass(frozen=True)
class Image:
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: dict[str, str]


def _final_stage(dockerfile: Path) -> list[str]:
    """The instructions of the last stage, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", dockerfile.read_text())
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(n for n, line in enumerate(lines) if line.startswith("FROM "))
    return lines[last_from + 1 :]


def image(dockerfile: Path) -> Image:
    """ENTRYPOINT, CMD (exec form) and ENV of a Dockerfile's final stage."""
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: dict[str, str] = {}
    for line in _final_stage(dockerfile):
        instruction, _, rest = line.partition(" ")
        if instruction == "ENTRYPOINT":
            entrypoint = tuple(json.loads(rest))
        elif instruction == "CMD":
            cmd = tuple(json.loads(rest))
        elif instruction == "ENV":
            env |= dict(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", rest))
    return Image(entrypoint, cmd, env)


def image_of(service: dict[str, Any]) -> Image:
    """The image a compose service runs, from the Dockerfile it is built from."""
    dockerfile = Path(service["build"]["context"]) / service["build"]["dockerfile"]
    built = image(dockerfile)
    if dockerfile.resolve() == GATEWAY_DOCKERFILE.resolve():
        assert not built.entrypoint, "the gateway image keeps the LiteLLM image's entrypoint"
        return replace(built, entrypoint=LITELLM_ENTRYPOINT)
    assert dockerfile.resolve() == SERVICES_DOCKERFILE.resolve()
    assert service["image"].partition(":")[0] == SPENDPIPE_IMAGE
    return built


@dataclass(frozen=True)
class Substitution:
    what: str
    """a variable name, `argv[<i>]` or `command`"""
    compose: str | None
    """what compose (or the image) gives; None: not set there"""
    local: str | None
    """what the process gets here; None: not set"""

    def __str__(self) -> str:
        return f"{self.what}: {self.compose!r} -> {self.local!r}"


@dataclass(frozen=True)
class LocalService:
    name: str
    compose_argv: tuple[str, ...]
    """entrypoint + command, as the container runs it"""
    compose_env: dict[str, str]
    """the image's ENV under compose's `environment` (variables compose leaves unset left out)"""
    argv: tuple[str, ...]
    env: dict[str, str]
    substitutions: tuple[Substitution, ...]
    healthcheck: tuple[str, ...] | None = None
    """compose's healthcheck `test` (CMD form), with the same replacements"""

    @property
    def substituted(self) -> set[str]:
        return {s.what for s in self.substitutions}


def _replace_text(token: str, text: Mapping[str, str]) -> str:
    for old, new in text.items():
        token = token.replace(old, new)
    return token


def local_service(
    compose: dict[str, Any],
    name: str,
    *,
    env: Mapping[str, str | None],
    args: Mapping[str, str],
    text: Mapping[str, str] = {},
) -> LocalService:
    """Service `name` of the resolved compose file, with variables `env` set (None: removed) and
    argument tokens equal to a key of `args` replaced; `text` replaces substrings inside the
    healthcheck command (ports and paths in its script). `PATH` always gets this venv first, then
    the test's own `PATH`: the only thing taken from the test's environment."""
    service = compose["services"][name]
    built = image_of(service)
    command = tuple(service.get("command") or built.cmd)
    entrypoint = tuple(service.get("entrypoint") or built.entrypoint)
    compose_argv = (*entrypoint, *command)
    environment = service.get("environment") or {}
    compose_env = built.env | {key: value for key, value in environment.items() if value is not None}

    substitutions = []
    argv = []
    for index, token in enumerate(compose_argv):
        local = str(VENV_BIN / token) if index == 0 else args.get(token, token)
        argv.append(local)
        if local != token:
            substitutions.append(Substitution(f"argv[{index}]", token, local))
    local_env = dict(compose_env)
    host_path = os.environ.get("PATH", "")
    for key, value in {**env, "PATH": f"{VENV_BIN}:{host_path}"}.items():
        if compose_env.get(key) == value:
            continue  # what compose gives already
        substitutions.append(Substitution(key, compose_env.get(key), value))
        if value is None:
            local_env.pop(key, None)
        else:
            local_env[key] = value

    healthcheck = None
    test = (service.get("healthcheck") or {}).get("test")
    if test:
        assert test[0] == "CMD", f"{name}: healthcheck in exec form"
        program, *rest = test[1:]
        healthcheck = (str(VENV_BIN / program), *(_replace_text(token, text) for token in rest))
    return LocalService(
        name, compose_argv, compose_env, tuple(argv), local_env, tuple(substitutions), healthcheck=healthcheck
    )


def one_process(name: str, services: list[LocalService], command: tuple[str, ...]) -> LocalService:
    """Several compose services as one process running `command` (e.g. `run all`), with the
    union of their environments; a variable two of them set must have the same value in both."""
    compose_env: dict[str, str] = {}
    env: dict[str, str] = {}
    for service in services:
        for key, value in service.compose_env.items():
            assert compose_env.setdefault(key, value) == value, f"{key} differs between the services"
        for key, value in service.env.items():
            assert env.setdefault(key, value) == value, f"{key} differs between the local services"
    first = services[0]
    assert all(s.argv[0] == first.argv[0] for s in services), "one image, one entrypoint"
    compose_commands = " + ".join(" ".join(s.compose_argv[1:]) for s in services)
    substitutions = {
        s.what: s
        for service in services
        for s in service.substitutions
        if not s.what.startswith("argv[") or s.what == "argv[0]"
    }
    return LocalService(
        name,
        first.compose_argv,
        compose_env,
        (first.argv[0], *command),
        env,
        (Substitution("command", compose_commands, " ".join(command)), *substitutions.values()),
        healthcheck=first.healthcheck,
    )


@dataclass
class ServiceRun:
    """A local service as a process: exactly `argv` and `env`, in a working directory of its
    own (as a container's, and so no `.env` from the checkout is read)."""

    service: LocalService
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.service.name}.log"

    def start(self) -> "ServiceRun":
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.service.argv, env=self.service.env, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    def running(self) -> bool:
        """True while it runs; an AssertionError with its log if it exited."""
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"{self.service.name} exited with {self.process.returncode}:\n{self.log_tail()}")
        return True

    def healthy(self) -> bool:
        """compose's healthcheck for the service passes (run with the service's environment)."""
        assert self.service.healthcheck is not None
        result = subprocess.run(
            self.service.healthcheck,
            env=self.service.env,
            cwd=self.workdir,
            capture_output=True,
            timeout=5,
            check=False,
        )
        return result.returncode == 0

    def stop(self) -> int | None:
        terminate(self.process)
        return None if self.process is None else self.process.returncode

    def log_tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def run_once(
    service: LocalService, workdir: Path, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the service's command (with `extra` arguments) to completion, output captured."""
    workdir.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [*service.argv, *extra],
        env=service.env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def exec_in(service: LocalService, *args: str, env: Mapping[str, str] = {}) -> LocalService:
    """`docker compose exec <service> <args...>`: another command in the service's container,
    with its environment (plus `env`, recorded as substitutions)."""
    substitutions = [*service.substitutions, *(Substitution(k, service.compose_env.get(k), v) for k, v in env.items())]
    return replace(
        service,
        name=f"{service.name} exec {args[0]}",
        compose_argv=tuple(args),
        argv=(str(VENV_BIN / args[0]), *args[1:]),
        env={**service.env, **env},
        substitutions=tuple(substitutions),
        healthcheck=None,
    )
