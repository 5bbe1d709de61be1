"""The Kubernetes manifests in deploy/k8s and the Prometheus adapter's rules.

Every manifest, the HPA included, is validated against the Kubernetes API's own schemas
(`kubernetes-validate`, which bundles them, so this runs offline) in strict mode, for the
oldest and the newest Kubernetes release the package knows; `kubectl kustomize` builds the
kustomization, and its output is validated the same way. The adapter's values file is checked
against the Helm chart's values and the adapter's rule format, and its queries parse as PromQL
(promtool). The Deployment, Service and HPA are checked against each other, against
docker-compose.yml and the Dockerfile, and against a live server: its probe paths answer, and
the series the adapter rules read are exported.
"""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml

from service.core.config import DEFAULT_CONFIG_PATH, ServingConfig, load_config
from tests.deploy.conftest import (
    K8S_DIR,
    LiveMetrics,
    load_compose,
    load_yaml,
    metric_names,
    promtool_check,
    without_templating,
)
from tests.fixtures.system_tools import tool_or_skip
from tests.integration.conftest import LiveServer

API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Deployment": "apps/v1",
    "Service": "v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
}
NOT_MANIFESTS = {"kustomization.yaml", "prometheus-adapter-values.yaml"}
# The oldest and the newest Kubernetes release whose schemas kubernetes-validate bundles.
KUBERNETES_VERSIONS = sorted({min(kubernetes_validate.utils.all_versions(),
                                  key=lambda v: tuple(map(int, v.split(".")))),
                              kubernetes_validate.latest_version()})


def manifest_files() -> list[Path]:
    return [p for p in sorted(K8S_DIR.glob("*.yaml")) if p.name not in NOT_MANIFESTS]


def manifests() -> dict[str, dict]:
    """kind -> the one document of that kind, from every manifest file."""
    documents = [doc for path in manifest_files()
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


def schema_errors(document: dict, version: str) -> str | None:
    """None when the document is valid for that Kubernetes release (strict: no unknown
    fields), else the validator's message."""
    try:
        kubernetes_validate.validate(document, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{'.'.join(map(str, error.path))}: {error.message}"
    return None


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifests_validate_against_the_kubernetes_schemas(path, version):
    for document in (doc for doc in yaml.safe_load_all(path.read_text()) if doc):
        assert schema_errors(document, version) is None, (
            f"{path.name} ({document['kind']}) against Kubernetes {version}: "
            f"{schema_errors(document, version)}")


def test_schema_validation_refuses_a_misspelt_field():
    """The validation above can fail: a misspelt field and a wrong type are refused."""
    hpa = copy.deepcopy(manifests()["HorizontalPodAutoscaler"])
    hpa["spec"]["maxReplica"] = hpa["spec"].pop("maxReplicas")
    assert "maxReplica" in schema_errors(hpa, KUBERNETES_VERSIONS[-1])
    deployment = copy.deepcopy(manifests()["Deployment"])
    deployment["spec"]["replicas"] = "two"
    assert schema_errors(deployment, KUBERNETES_VERSIONS[-1]) is not None


def test_kustomization_builds_with_kubectl_into_valid_manifests():
    kubectl = tool_or_skip("kubectl", "kubernetes-client")
    result = subprocess.run([kubectl, "kustomize", str(K8S_DIR)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert sorted(doc["kind"] for doc in built) == sorted(API_VERSIONS)
    for doc in built:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "convzoo", doc["kind"]
        for version in KUBERNETES_VERSIONS:
            assert schema_errors(doc, version) is None, (doc["kind"], version)


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


# The prometheus-adapter Helm chart's top-level values and `rules` keys
# (prometheus-community/helm-charts, charts/prometheus-adapter/values.yaml), and the adapter's
# discovery rule as its config types define it (kubernetes-sigs/prometheus-adapter,
# pkg/config/config.go: DiscoveryRule, ResourceMapping, GroupResource, NameMapping,
# RegexFilter), as a JSON schema that refuses unknown keys.
CHART_RULES_KEYS = {"default", "custom", "existing", "external", "resource"}
CHART_PROMETHEUS_KEYS = {"url", "port", "path"}
_STRING = {"type": "string"}
DISCOVERY_RULE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["seriesQuery", "resources", "name", "metricsQuery"],
    "properties": {
        "seriesQuery": _STRING,
        "seriesFilters": {"type": "array", "items": {
            "type": "object", "additionalProperties": False, "minProperties": 1,
            "maxProperties": 1, "properties": {"is": _STRING, "isNot": _STRING}}},
        "resources": {"type": "object", "additionalProperties": False, "properties": {
            "template": _STRING,
            "overrides": {"type": "object", "additionalProperties": {
                "type": "object", "additionalProperties": False, "required": ["resource"],
                "properties": {"group": _STRING, "resource": _STRING}}}}},
        "name": {"type": "object", "additionalProperties": False,
                 "properties": {"matches": _STRING, "as": _STRING}},
        "metricsQuery": _STRING,
        "labelValueReplacements": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "properties": {"find": _STRING, "replace": _STRING}}},
    },
}
# The fields the adapter's query templates are given (pkg/naming/metrics_query.go,
# queryTemplateArgs), and a resource template's (ResourceMapping.Template).
METRICS_QUERY_FIELDS = {"Series", "LabelMatchers", "LabelValuesByName", "GroupBy",
                        "GroupBySlice"}
RESOURCE_TEMPLATE_FIELDS = {"Group", "Resource"}


def template_fields(template: str) -> set[str]:
    return set(re.findall(r"<<\s*\.(\w+)\s*>>", template))


def test_adapter_values_fit_the_chart_and_the_adapters_rule_format():
    values = load_yaml(K8S_DIR / "prometheus-adapter-values.yaml")
    assert set(values) <= {"prometheus", "rules"}, set(values)
    assert set(values["prometheus"]) <= CHART_PROMETHEUS_KEYS
    assert set(values["rules"]) <= CHART_RULES_KEYS
    # Off, so that the HPA's names are served by these rules alone.
    assert values["rules"]["default"] is False
    for rule in adapter_rules():
        jsonschema.validate(rule, DISCOVERY_RULE)
        assert template_fields(rule["metricsQuery"]) <= METRICS_QUERY_FIELDS
        assert template_fields(rule["resources"].get("template", "")) <= (
            RESOURCE_TEMPLATE_FIELDS)
        assert "<<" not in rule["seriesQuery"], "the series query is not a template"
        re.compile(rule["name"]["matches"])


def test_the_rule_format_check_refuses_an_unknown_key():
    rule = copy.deepcopy(adapter_rules()[0])
    rule["metricsQueries"] = rule.pop("metricsQuery")  # an older fork's spelling
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(rule, DISCOVERY_RULE)


def test_adapter_queries_parse_as_promql(tmp_path):
    promtool = tool_or_skip("promtool", "prometheus")
    queries = []
    for rule in adapter_rules():
        series = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", rule["seriesQuery"]).group(0)
        queries += [rule["seriesQuery"],
                    without_templating(rule["metricsQuery"].replace("<<.Series>>", series))]
    result = promtool_check(queries, tmp_path, promtool)
    assert result.returncode == 0, result.stdout + result.stderr
