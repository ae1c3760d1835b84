"""A real LiteLLM proxy subprocess with the spendpipe plugin, `mock_response` models and a
`custom_auth` that maps API keys to users and teams, so no database is needed: the end-to-end
tests' proxy, and the proxy benchmark's (which starts one without the plugin beside it, otherwise
the same: `callbacks=None`)."""

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dev.local_kafka import free_port_pair
from spendpipe.contracts.topics import Topics
from spendpipe.platform.processes import terminate

PLUGIN = "spendpipe.gateway.proxy.handler"
"""The plugin's entry point, as a proxy's config.yaml names it."""

CONFIG = """\
model_list:
{models}
{litellm_settings}general_settings:
  custom_auth: custom_auth.user_api_key_auth
{router_settings}"""

MODEL = """\
  - model_name: {name}
    litellm_params:
{params}"""

CUSTOM_AUTH = """\
from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth
from litellm.proxy.utils import hash_token

KEYS = {keys!r}
KEY_FIELDS = {key_fields!r}


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    user_id, team_id = KEYS[api_key]
    key = UserAPIKeyAuth(
        api_key=hash_token(api_key), user_id=user_id, team_id=team_id, key_alias=api_key[-6:],
        **KEY_FIELDS.get(api_key, {{}}),
    )
    await on_auth(key)
    return key


async def on_auth(key: UserAPIKeyAuth) -> None:
    pass
"""


def plugin_env(bootstrap: str, topics: Topics, spool_dir: Path) -> dict[str, str]:
    """This process's environment for a proxy process whose plugin uses this broker, these topics
    and this spool (the proxy reads its settings from the environment only)."""
    return {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "SPENDPIPE_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "SPENDPIPE_TOPICS__EVENTS": topics.events,
        "SPENDPIPE_TOPICS__DECISIONS": topics.decisions,
        "SPENDPIPE_TOPICS__BUDGETS": topics.budgets,
        "SPENDPIPE_TOPICS__DECLARED_BUDGETS": topics.declared_budgets,
        "SPENDPIPE_TOPICS__SESSIONS": topics.sessions,
        "SPENDPIPE_TOPICS__LEASE_REQUESTS": topics.lease_requests,
        "SPENDPIPE_TOPICS__LEASES": topics.leases,
        "SPENDPIPE_SPOOL_DIR": str(spool_dir),
    }


def process_tree(pid: int) -> list[int]:
    """The live process `pid` (first) and its live descendants, from /proc (Linux)."""
    tree, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            children = [int(child) for task in Path(f"/proc/{current}/task").iterdir()
                        for child in (task / "children").read_text().split()]  # fmt: skip
        except (FileNotFoundError, ProcessLookupError):
            continue  # it ended meanwhile
        tree.append(current)
        pending += children
    return tree


@dataclass
class LiteLLMProxy:
    workdir: Path
    bootstrap: str
    topics: Topics
    keys: Mapping[str, tuple[str, str | None]]
    """API key -> (user id, team id or None)"""
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o")
    model_params: dict[str, dict[str, object]] = field(default_factory=dict)
    """`litellm_params` per model over the mock defaults, e.g. `{"gpt-4": {"mock_delay": 1.5}}`."""
    env: dict[str, str] = field(default_factory=dict)
    """More `SPENDPIPE_*` settings for the plugin."""
    key_fields: dict[str, dict[str, object]] = field(default_factory=dict)
    """More `UserAPIKeyAuth` fields per API key, e.g. `{"sk-a": {"max_budget": 0.002}}`."""
    router_settings: dict[str, object] = field(default_factory=dict)
    """LiteLLM's `router_settings`, e.g. `{"fallbacks": [{"broken": ["gpt-4o"]}]}`."""
    on_auth: str = ""
    """Source of an `async def on_auth(key: UserAPIKeyAuth) -> None` that `custom_auth` awaits
    on the key object it built, replacing the one that does nothing (what LiteLLM's auth does
    with its database: cache the team's row, pin its snapshot)."""
    callbacks: str | None = PLUGIN
    """`litellm_settings.callbacks`; None: no callback at all (the proxy without the plugin)."""
    num_workers: int = 1
    port: int = field(default_factory=free_port_pair)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, within: float = 120.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        models = "".join(MODEL.format(name=name, params=self._params(name)) for name in self.models)
        router = "".join(f"  {name}: {json.dumps(value)}\n" for name, value in self.router_settings.items())
        router_settings = f"router_settings:\n{router}" if router else ""
        callbacks = f"litellm_settings:\n  callbacks: {self.callbacks}\n" if self.callbacks else ""
        (self.workdir / "config.yaml").write_text(
            CONFIG.format(models=models.rstrip("\n"), litellm_settings=callbacks, router_settings=router_settings)
        )
        (self.workdir / "custom_auth.py").write_text(
            textwrap.dedent(CUSTOM_AUTH.format(keys=self.keys, key_fields=self.key_fields))
            + textwrap.dedent(self.on_auth)
        )
        env = {
            **plugin_env(self.bootstrap, self.topics, self.workdir / "spool"),
            "LITELLM_MASTER_KEY": f"sk-master-{secrets.token_hex(16)}",
            "SPENDPIPE_GATEWAY_ID": f"proxy-{self.port}",
            **self.env,
        }
        litellm = shutil.which("litellm", path=str(Path(sys.executable).parent))
        assert litellm, "the litellm CLI is installed with the dev dependencies"
        command = [litellm, "--config", "config.yaml", "--host", "127.0.0.1", "--port", str(self.port)]
        with (self.workdir / "proxy.log").open("ab") as log:  # the child's copy stays open, not ours
            self.process = subprocess.Popen(  # no descriptor of ours but the log (close_fds, no stdin)
                [*command, "--num_workers", str(self.num_workers)],
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + within
        while not self._alive():
            if time.monotonic() > deadline:
                raise AssertionError(f"LiteLLM proxy on {self.url} not alive after {within}s:\n{self.log_tail()}")
            threading.Event().wait(0.05)  # polling the liveness probe, with the deadline above

    def _params(self, name: str) -> str:
        params: dict[str, object] = {
            "model": name,
            "mock_response": f"a mocked answer from {name}",
            "api_key": "not-used",
        }
        params.update(self.model_params.get(name, {}))
        return "".join(f"      {param}: {json.dumps(value)}\n" for param, value in params.items())

    def _alive(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"LiteLLM proxy exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/health/liveliness", timeout=1) as response:  # noqa: S310 (http, built here)
                return bool(response.status == 200)
        except OSError:
            return False

    def descendants(self) -> list[str]:
        """The command lines of the proxy's live descendant processes (its workers, the plugin's
        publisher children), from /proc (Linux)."""
        assert self.process is not None
        lines = []
        for pid in process_tree(self.process.pid)[1:]:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # it ended meanwhile
                lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
        return lines

    def stop(self) -> None:
        """SIGTERM, as an orchestrator stops it: the plugin flushes what it queued."""
        terminate(self.process)

    def log_tail(self, lines: int = 60) -> str:
        path = self.workdir / "proxy.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
