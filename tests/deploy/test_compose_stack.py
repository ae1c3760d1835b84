"""The compose stack for real: every image built (`make images`' script, local bases, no image
registry), then docker-compose.yml with deploy/local/compose.yml brought up by the real Docker
Compose binary against podman's Docker API, exercised from outside as an operator would, and
brought down with nothing left behind.

Up with `--wait`, with the traffic, notify and observability profiles: compose itself waits on
every healthcheck (Kafka's broker-api-versions, the pipeline's, the gateway's and the
notifier's /readyz, the traffic's heartbeat, Prometheus's /-/ready) and on the topics and keys
jobs completing, so an image that does not start fails here. Compose's own traffic service sends
mock completions through the gateway container. Then: every long-running container runs as a
non-root user; Prometheus (the local image) has loaded every rule of deploy/prometheus/alerts.yml
and reports each target of deploy/prometheus/prometheus.yml up; `spendpipe budgets set` in the
aggregator container gives the traffic's first end customer a budget below one call; the
gateway refuses that customer with LiteLLM's budget error on its published port and still
serves another; the notifier delivers the block to the stack's webhook sink; Prometheus has
scraped the block decision; the traffic reaches every customer (`spendpipe spend` in the
container); once it stops, the gateway's counters, the pipeline's and the events in the
embedded store agree. `down --volumes` then leaves no container, network or volume of the
project in the engine."""

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import yaml

from dev.local_kafka import free_port_pair
from tests.support.containers import ComposeProject, build_images, docker_api, healthchecks_run
from tests.support.deploy import REPO, env_example
from tests.support.ops import get, metric, readiness
from tests.support.proxy_client import post_completion
from tests.support.waiting import eventually_sync

pytestmark = pytest.mark.timeout(3600)  # a fresh machine builds every base image first

CUSTOMER = "customer-0"
"""The end customer of the traffic's first request (`spendpipe traffic` cycles customer-0..4)."""
BLOCKED = f"end_user:{CUSTOMER}"
"""The scope the budget caps, as `budgets set --scope` takes it and a decision names it."""
BUDGET = "0.000001"
"""Below the price of any one mock completion: the first request of CUSTOMER crosses it."""
LONG_RUNNING = ("kafka", "aggregator", "gateway", "traffic", "notifier", "webhook-sink", "prometheus")
PROFILES = ("--profile", "traffic", "--profile", "notify", "--profile", "observability")
"""The local stack with mock traffic, the notifier and its sink, and Prometheus (grafana is left out)."""
SCRAPED = {("spendpipe", "aggregator:9464"), ("spendpipe", "enforcer:9464"), ("spendpipe-gateway", "gateway:9465")}
"""deploy/prometheus/prometheus.yml's targets; enforcer:9464 is the aggregator container (`run all`)."""
BLOCKS_PUBLISHED = 'spendpipe_enforcer_decisions_published_total{action="block"}'


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> None:
    log = tmp_path_factory.mktemp("images") / "images.log"
    result = build_images(log)
    assert result.returncode == 0, f"deploy/local/images.sh failed:\n{log.read_text()[-6000:]}"


@pytest.fixture
def stack(images: None, tmp_path: Path) -> Iterator[ComposeProject]:
    ports = {
        name: str(free_port_pair())
        for name in (
            *("GATEWAY_HOST_PORT", "KAFKA_HOST_PORT", "PIPELINE_OPS_HOST_PORT", "GATEWAY_OPS_HOST_PORT"),
            "PROMETHEUS_HOST_PORT",
        )
    }
    with docker_api(tmp_path) as docker_host:
        project = ComposeProject(docker_host, ports)
        try:
            with healthchecks_run(project.name, tmp_path):
                yield project
        finally:
            down = project("--profile", "*", "down", "--volumes", "--remove-orphans", "--timeout", "30")
            assert down.returncode == 0, down.stderr
            assert project.leftovers() == {"containers": [], "networks": [], "volumes": []}


def test_compose_stack_runs_under_podman_and_enforces_a_budget(stack: ComposeProject) -> None:
    gateway = f"http://127.0.0.1:{stack.variables['GATEWAY_HOST_PORT']}"
    gateway_ops = f"http://127.0.0.1:{stack.variables['GATEWAY_OPS_HOST_PORT']}"
    pipeline_ops = f"http://127.0.0.1:{stack.variables['PIPELINE_OPS_HOST_PORT']}"
    prometheus = f"http://127.0.0.1:{stack.variables['PROMETHEUS_HOST_PORT']}"
    key = env_example()["LITELLM_MASTER_KEY"]

    up = stack(*PROFILES, "up", "--detach", "--wait", "--wait-timeout", "600")
    assert up.returncode == 0, f"{up.stderr}\n{stack.logs()}"
    jobs = stack("ps", "--all", "--format", "{{.Service}} {{.State}} {{.ExitCode}}")
    states = dict(line.split(" ", 1) for line in jobs.stdout.splitlines())
    assert states["topics"] == states["keys"] == "exited 0", jobs.stdout
    for ops in (pipeline_ops, gateway_ops):
        status, body = readiness(ops)
        assert status == 200, body

    budget = stack.exec(
        "aggregator",
        *("spendpipe", "budgets", "set", "--scope", BLOCKED, "--max-budget", BUDGET),
        *("--budget-duration", "1h"),
    )
    assert budget.returncode == 0, budget.stdout + budget.stderr

    for service in LONG_RUNNING:
        uid = stack.exec(service, "id", "-u")
        assert uid.returncode == 0, uid.stderr
        assert uid.stdout.strip() not in ("", "0"), f"{service} runs as root"

    rules = prometheus_api(prometheus, "rules")
    loaded = {rule["name"] for group in rules["groups"] for rule in group["rules"]}
    assert loaded == alert_names(), rules
    eventually_sync(
        lambda: targets(prometheus),
        lambda found: found == dict.fromkeys(SCRAPED, "up"),
        within=90,
        what="Prometheus reporting every spendpipe target up",
    )

    status, refusal = eventually_sync(
        lambda: post_completion(gateway, key, CUSTOMER),
        lambda answer: answer[0] != 200,
        within=90,
        what=f"the gateway container refusing {CUSTOMER}",
    )
    assert refusal["error"]["type"] == "budget_exceeded", refusal
    assert str(status) == str(refusal["error"]["code"])
    assert post_completion(gateway, key, "customer-1")[0] == 200

    # the notifier delivers the block to the webhook the local stack gives it
    notified = eventually_sync(
        lambda: sink_received(stack),
        lambda found: any(note["kind"] == "block" and note["record"]["scope"] == BLOCKED for note in found),
        within=90,
        what=f"the webhook sink receiving the notifier's block of {CUSTOMER}",
    )
    assert all(note["type"] == "spendpipe.notification.v1" for note in notified), notified
    # and Prometheus has scraped the decision from the pipeline
    eventually_sync(
        lambda: prometheus_api(prometheus, "query?" + urlencode({"query": BLOCKS_PUBLISHED})),
        lambda data: any(float(sample["value"][1]) >= 1 for sample in data["result"]),
        within=60,
        what="Prometheus's scrape of the enforcer's block decision",
    )

    # the traffic reaches every end customer before it stops
    def customers() -> set[str]:
        spend = stack.exec(
            "aggregator", *("spendpipe", "spend", "--scope", "end_user", "--window", "day", "--format", "csv")
        )
        assert spend.returncode == 0, spend.stdout + spend.stderr
        return set(re.findall(r"customer-\d", spend.stdout))

    eventually_sync(
        customers,
        lambda found: found == {f"customer-{n}" for n in range(5)},
        within=90,
        what="`spendpipe spend` in the aggregator container listing all 5 customers",
    )
    stopped = stack(*PROFILES, "stop", "traffic")
    assert stopped.returncode == 0, stopped.stderr
    exited = stack(*PROFILES, "ps", "--all", "--format", "{{.ExitCode}}", "traffic")
    assert exited.stdout.split() == ["0"], f"traffic not ended by compose's SIGTERM: {exited.stdout}"

    def events_in_store() -> int:
        result = stack.exec("aggregator", "spendpipe", "sql", "SELECT count() AS n FROM events", "--format", "csv")
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.split()[0] == "n", result.stdout
        return int(result.stdout.split()[1])

    def counters() -> tuple[float, float, float, int]:
        return (
            metric(gateway_ops, "spendpipe_gateway_events_recorded_total"),
            metric(gateway_ops, "spendpipe_gateway_events_published_total"),
            metric(pipeline_ops, "spendpipe_aggregator_events_counted_total"),
            events_in_store(),
        )

    recorded, _, _, _ = eventually_sync(
        counters,
        lambda found: found[0] == found[1] == found[2] == found[3] > 0,
        within=90,
        what="every event the gateway recorded published, counted and in the store",
    )
    assert metric(pipeline_ops, "spendpipe_aggregator_dead_letters_total") == 0
    assert metric(pipeline_ops, "spendpipe_enforcer_decisions_published_total", action="block") >= 1
    assert metric(gateway_ops, "spendpipe_gateway_events_lost_total") == 0
    assert metric(gateway_ops, "spendpipe_gateway_blocks_in_force") >= 1
    assert recorded >= 5


def prometheus_api(base_url: str, path: str) -> Any:
    """The `data` of Prometheus's /api/v1/`path` (it answers status "success")."""
    status, body = get(f"{base_url}/api/v1/{path}")
    answer = json.loads(body)
    assert status == 200, body
    assert answer["status"] == "success", body
    return answer["data"]


def targets(base_url: str) -> dict[tuple[str, str], str]:
    """(job, instance) -> health ("up", "down", "unknown") of Prometheus's active targets."""
    return {
        (target["labels"]["job"], target["labels"]["instance"]): target["health"]
        for target in prometheus_api(base_url, "targets")["activeTargets"]
    }


def alert_names() -> set[str]:
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    return {rule["alert"] for group in rules["groups"] for rule in group["rules"]}


def sink_received(stack: ComposeProject) -> list[dict[str, Any]]:
    """The bodies the webhook sink printed, one JSON line each (deploy/local/webhook-sink.py)."""
    logs = stack("--profile", "notify", "logs", "--no-color", "--no-log-prefix", "webhook-sink")
    assert logs.returncode == 0, logs.stderr
    return [json.loads(line)["body"] for line in logs.stdout.splitlines() if line.startswith("{")]
