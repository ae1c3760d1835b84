"""The Kubernetes manifests parse, kustomize sees all of them, and probes, ports and scrape
annotations match the ops endpoint every service serves."""

import re

import yaml

from spendpipe.gateway.settings import GatewaySettings
from spendpipe.platform.ops_server import OpsSettings
from tests.support.deploy import (
    GATEWAY_CONFIG,
    K8S,
    SERVICES_DOCKERFILE,
    SPENDPIPE_IMAGE,
    container_env,
    k8s_documents,
    k8s_object,
    pod_spec,
)

SERVICES = ("spendpipe-aggregator", "spendpipe-enforcer", "spendpipe-notifier")


def test_every_manifest_parses_and_kustomize_lists_each_file() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}

    assert set(kustomization["resources"]) == files
    assert all({"apiVersion", "kind", "metadata"} <= set(doc) for doc in k8s_documents())
    (image,) = kustomization["images"]
    assert image["name"] == SPENDPIPE_IMAGE


def test_services_probe_the_ops_endpoint_on_its_port() -> None:
    port = OpsSettings().port
    for name in SERVICES:
        deployment = k8s_object("Deployment", name)
        (container,) = pod_spec(deployment)["containers"]
        ports = {item["name"]: item["containerPort"] for item in container["ports"]}
        env = container_env(container)

        assert ports == {"ops": port}
        assert env["SPENDPIPE_OPS__PORT"] == str(port)
        assert env["SPENDPIPE_OPS__HOST"] == "0.0.0.0"
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "ops"}
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }


def test_deployments_select_their_own_pods() -> None:
    for doc in k8s_documents():
        if doc["kind"] == "Deployment":
            labels = doc["spec"]["template"]["metadata"]["labels"]
            assert doc["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert k8s_object("Deployment", "spendpipe-enforcer")["spec"]["replicas"] == 1


def test_several_aggregators_run_with_a_disruption_budget_over_their_own_pods() -> None:
    deployment = k8s_object("Deployment", "spendpipe-aggregator")
    budget = k8s_object("PodDisruptionBudget", "spendpipe-aggregator")
    topics_job = next(doc for doc in k8s_documents() if doc["kind"] == "Job")

    replicas = deployment["spec"]["replicas"]
    assert replicas > 1
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert budget["spec"]["maxUnavailable"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # every aggregator has a partition of spend.events to own
    args = " ".join(str(arg) for arg in pod_spec(topics_job)["containers"][0].get("args", []))
    assert int(re.search(r"--partitions[ =](\d+)", args).group(1)) >= replicas  # type: ignore[union-attr]


def test_pods_run_as_the_images_non_root_user() -> None:
    (uid,) = re.findall(r"^USER (\d+)", SERVICES_DOCKERFILE.read_text(), flags=re.MULTILINE)
    for doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            context = pod_spec(doc)["securityContext"]
            assert context["runAsNonRoot"] is True
            assert context["runAsUser"] == int(uid)


def test_gateway_config_map_is_the_gateway_image_config() -> None:
    config = k8s_object("ConfigMap", "spendpipe-gateway")["data"]["config.yaml"]

    assert config == GATEWAY_CONFIG.read_text()


def test_gateway_env_serves_ops_on_the_plugin_port() -> None:
    env = k8s_object("ConfigMap", "spendpipe-gateway-env")["data"]

    assert env["SPENDPIPE_OPS__ENABLED"] == "true"
    assert env["SPENDPIPE_OPS__HOST"] == "0.0.0.0"
    assert int(env["SPENDPIPE_OPS__PORT"]) == GatewaySettings.model_fields["ops"].default.port == 9465
    assert "SPENDPIPE_CLICKHOUSE__PASSWORD" in k8s_object("Secret", "spendpipe-credentials")["stringData"]
