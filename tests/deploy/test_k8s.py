"""The Kubernetes manifests in deploy/k8s and the Prometheus adapter's rules.

Every document is parsed and its kind and apiVersion checked; `kubectl kustomize` builds the
kustomization where kubectl is installed. The Deployment, Service and HPA are checked
against each other, against docker-compose.yml and the Dockerfile, and against a live
server: its probe paths answer, and the series the adapter rules read are exported.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import httpx
import pytest
import yaml

from service.core.config import DEFAULT_CONFIG_PATH, ServingConfig, load_config
from tests.deploy.conftest import (
    K8S_DIR,
    LiveMetrics,
    load_compose,
    load_yaml,
    metric_names,
    without_templating,
)
from tests.integration.conftest import LiveServer

API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Deployment": "apps/v1",
    "Service": "v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}
NOT_MANIFESTS = {"kustomization.yaml", "prometheus-adapter-values.yaml"}


def manifests() -> dict[str, dict]:
    """kind -> the one document of that kind, from every manifest file."""
    documents = [doc for path in sorted(K8S_DIR.glob("*.yaml")) if path.name not in NOT_MANIFESTS
                 for doc in yaml.safe_load_all(path.read_text()) if doc]
    kinds = [doc["kind"] for doc in documents]
    assert len(kinds) == len(set(kinds)), f"one document per kind expected, got {kinds}"
    return {doc["kind"]: doc for doc in documents}


def container() -> dict:
    return manifests()["Deployment"]["spec"]["template"]["spec"]["containers"][0]


def adapter_rules() -> list[dict]:
    return load_yaml(K8S_DIR / "prometheus-adapter-values.yaml")["rules"]["custom"]


def test_every_document_has_a_known_kind_and_api_version():
    found = manifests()
    assert set(found) == set(API_VERSIONS)
    for kind, doc in found.items():
        assert doc["apiVersion"] == API_VERSIONS[kind], kind
        assert doc["metadata"]["name"]


def test_kustomization_lists_every_manifest():
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - NOT_MANIFESTS
    assert listed == on_disk
    assert kustomization["namespace"] == manifests()["Namespace"]["metadata"]["name"]
    assert {i["name"] for i in kustomization["images"]} == {container()["image"].split(":")[0]}


def test_kustomization_builds_with_kubectl():
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed: the structural checks of this module ran")
    result = subprocess.run(["kubectl", "kustomize", str(K8S_DIR)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted(doc["kind"] for doc in built) == sorted(API_VERSIONS)
    for doc in built:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "convzoo", doc["kind"]


def test_deployment_reserves_a_gpu_and_runs_the_image_like_compose():
    spec = manifests()["Deployment"]["spec"]
    assert spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"][
        "labels"].items()
    assert int(container()["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert container()["command"] == load_compose()["services"]["convzoo-gpu"]["command"]
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports == {"http": 3000, "grpc": ServingConfig().grpc_port}


def test_probes_use_the_health_paths_on_a_named_port():
    ports = {p["name"] for p in container()["ports"]}
    assert container()["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container()["livenessProbe"]["httpGet"]["path"] == "/livez"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container()[probe]["httpGet"]["port"] in ports, probe


@pytest.mark.integration
def test_probe_paths_answer_on_a_live_server(server: LiveServer):
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        path = container()[probe]["httpGet"]["path"]
        assert httpx.get(server.http_url + path, timeout=10).status_code == 200, path


def test_service_exposes_rest_and_grpc_on_the_compose_ports():
    service = manifests()["Service"]["spec"]
    pod_labels = manifests()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    ports = {p["name"]: p for p in service["ports"]}
    assert ports["http"]["port"] == 3000 and ports["http"]["targetPort"] == "http"
    assert ports["grpc"]["port"] == 3001 and ports["grpc"]["targetPort"] == "grpc"
    assert ports["grpc"]["appProtocol"] == "grpc"
    compose_ports = {str(p) for p in load_compose()["services"]["convzoo-gpu"]["ports"]}
    assert compose_ports == {"3000:3000", "3001:3001"}


def test_configmap_is_service_config_yaml_and_is_what_the_pod_reads():
    data = manifests()["ConfigMap"]["data"]["config.yaml"]
    assert yaml.safe_load(data) == load_yaml(DEFAULT_CONFIG_PATH), (
        "deploy/k8s/configmap.yaml differs from service/config.yaml: keep them in step")
    env = {e["name"]: e["value"] for e in container()["env"]}
    mount = next(m for m in container()["volumeMounts"]
                 if env["CONVZOO_CONFIG"].startswith(m["mountPath"] + "/"))
    volume = next(v for v in manifests()["Deployment"]["spec"]["template"]["spec"]["volumes"]
                  if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == manifests()["ConfigMap"]["metadata"]["name"]
    assert env["CONVZOO_CONFIG"] == f"{mount['mountPath']}/config.yaml"


def test_configmap_config_loads(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(manifests()["ConfigMap"]["data"]["config.yaml"])
    config = load_config(path)
    assert config.default_model in config.startup_models


def test_hpa_scales_the_deployment_on_pod_metrics_the_adapter_serves():
    hpa = manifests()["HorizontalPodAutoscaler"]["spec"]
    target = hpa["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment",
                                                manifests()["Deployment"]["metadata"]["name"])
    assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"]
    served = {rule["name"]["as"] for rule in adapter_rules()}
    names = [m["pods"]["metric"]["name"] for m in hpa["metrics"] if m["type"] == "Pods"]
    assert names and len(names) == len(hpa["metrics"])
    assert "convzoo_queue_depth" in names
    assert set(names) <= served, f"HPA metrics {set(names) - served} have no adapter rule"


def test_adapter_rules_are_per_pod_and_name_what_they_select():
    for rule in adapter_rules():
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"]).group(0)
        assert re.fullmatch(rule["name"]["matches"], series)
        overrides = rule["resources"]["overrides"]
        assert overrides["pod"] == {"resource": "pod"}
        assert overrides["namespace"] == {"resource": "namespace"}
        query = rule["metricsQuery"].replace("<<.Series>>", series)
        assert metric_names(query) == {series}


@pytest.mark.integration
def test_adapter_rules_read_series_a_live_server_exports(live_metrics: LiveMetrics):
    for rule in adapter_rules():
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"]).group(0)
        assert series in live_metrics.names, f"{rule['name']['as']}: {series} is not exported"


def test_adapter_queries_parse_as_promql(tmp_path):
    if not shutil.which("promtool"):
        pytest.skip("promtool is not installed (Debian package `prometheus`): the rules' "
                    "structure above was checked instead")
    queries = []
    for rule in adapter_rules():
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"]).group(0)
        queries += [rule["seriesQuery"],
                    without_templating(rule["metricsQuery"].replace("<<.Series>>", series))]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "adapter", "rules": [
        {"record": f"convzoo:adapter:{i}", "expr": q} for i, q in enumerate(queries)]}]}))
    result = subprocess.run(["promtool", "check", "rules", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
