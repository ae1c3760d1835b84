"""A deployed LiteLLM proxy config that names the callback by its 0.1 path
(`spendpipe.services.gateway.proxy.handler`) still loads, through LiteLLM's own loader, to the
one handler at `spendpipe.gateway.proxy`, and says where it lives now."""

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from dev.litellm_proxy import plugin_env
from spendpipe.contracts.topics import Topics

CONFIG = """\
litellm_settings:
  callbacks: spendpipe.services.gateway.proxy.handler
"""

LOAD = """\
import json, sys, warnings

import yaml
from litellm.proxy.types_utils.utils import get_instance_fn

config_path, report_path = sys.argv[1:]
with open(config_path) as config:
    callback = yaml.safe_load(config)["litellm_settings"]["callbacks"]
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    handler = get_instance_fn(callback, config_file_path=config_path)  # what the proxy does at start-up

import spendpipe.gateway.proxy

report = {
    "same_handler": handler is spendpipe.gateway.proxy.handler,
    "deprecations": [str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)],
    "closed_in_time": handler.close(),
}
with open(report_path, "w") as out:
    json.dump(report, out)
"""


async def test_a_proxy_config_naming_the_old_callback_path_still_loads(
    kafka_broker: str, make_topics, tmp_path: Path
) -> None:
    # given a proxy config that names the callback by its old path
    topics: Topics = await make_topics(kafka_broker)
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG)
    report = tmp_path / "report.json"

    # when LiteLLM's loader resolves the callback of that config, in a process of its own (as a
    # proxy starting up: nothing of spendpipe imported before), away from the repository
    loaded = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", LOAD, str(config), str(report)],
        cwd=tmp_path,
        env=plugin_env(kafka_broker, topics, tmp_path / "spool"),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stdout + loaded.stderr

    # then it is the one handler at the new path, a DeprecationWarning names that path, and the
    # handler it started stops cleanly
    result = json.loads(report.read_text())
    assert result["same_handler"]
    assert [m for m in result["deprecations"] if "spendpipe.services.gateway.proxy" in m] == [
        "`spendpipe.services.gateway.proxy` is deprecated and goes away in spendpipe 0.3: "
        "name `spendpipe.gateway.proxy` in your config"
    ]
    assert result["closed_in_time"]
