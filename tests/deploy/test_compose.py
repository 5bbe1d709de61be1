"""docker-compose.yml, the Dockerfile, Prometheus' configuration and the Grafana dashboard.

The compose file is validated by the Docker CLI (`docker compose config`, or the standalone
`docker-compose`; neither needs a Docker engine for `config`), once per profile, and promtool
checks the Prometheus configuration and the dashboard's PromQL. `.ci/run` installs both from
the Debian packages (`docker-compose`, `prometheus`); where one is missing those tests skip
and say so, and the structural checks still run. The dashboard's PromQL is also checked
against the metric names a live server really exports.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from service.core import metrics
from tests.deploy.conftest import (
    COMPOSE_FILE,
    ROOT,
    LiveMetrics,
    label_names,
    load_compose,
    load_yaml,
    metric_names,
    promtool_check,
    without_templating,
)
from tests.fixtures.system_tools import missing_tool_reason, tool_or_skip

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "convzoo.json"
SERVICE_COMMAND = ["bentoml", "serve", "service.service:ConvZoo", "--host", "0.0.0.0",
                   "--port", "3000"]
# Sampled through NVML where an NVIDIA driver is, so never exported on a CPU-only test machine.
GPU_METRICS = {"convzoo_gpu_memory_used_bytes", "convzoo_gpu_utilization_ratio"}


def compose_cli() -> list[str] | None:
    """`docker compose` where the Docker CLI has the plugin, else `docker-compose`, else None."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True,
                               timeout=30)
        if probe.returncode == 0:
            return ["docker", "compose"]
    return ["docker-compose"] if shutil.which("docker-compose") else None


def services() -> dict[str, dict]:
    return load_compose()["services"]


def container_port(mapping: str | dict) -> int:
    if isinstance(mapping, dict):
        return int(mapping["target"])
    return int(str(mapping).rsplit(":", 1)[-1].split("/")[0])


def mounts(service: dict) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (named volumes left out)."""
    result = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            result[target] = (ROOT / source).resolve()
    return result


# --- the compose file --------------------------------------------------------------------

@pytest.mark.parametrize("profiles", [["gpu"], ["cpu"], ["cpu", "loadtest"],
                                      ["gpu", "loadtest"]])
def test_compose_config_validates_with_the_docker_cli(profiles, tmp_path):
    cli = compose_cli()
    if cli is None:
        pytest.skip(missing_tool_reason("neither `docker compose` nor `docker-compose`",
                                        "docker-compose"))
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    result = subprocess.run([*cli, "-f", str(COMPOSE_FILE), *args, "config", "-q"],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr


def test_the_docker_cli_refuses_an_invalid_compose_file(tmp_path):
    """The validation above can fail: a misspelt service key is refused."""
    cli = compose_cli()
    if cli is None:
        pytest.skip(missing_tool_reason("neither `docker compose` nor `docker-compose`",
                                        "docker-compose"))
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump({"services": {"convzoo": {"image": "convzoo",
                                                               "command_": ["serve"]}}}))
    result = subprocess.run([*cli, "-f", str(broken), "config", "-q"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode != 0 and "command_" in result.stdout + result.stderr


def test_compose_gpu_and_cpu_variants_serve_the_same_way():
    gpu, cpu = services()["convzoo-gpu"], services()["convzoo-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    for variant in (gpu, cpu):
        assert variant["command"] == SERVICE_COMMAND
        assert variant["build"]["target"] == "service"
        assert {container_port(p) for p in variant["ports"]} == {3000, 3001}
        assert "/readyz" in " ".join(variant["healthcheck"]["test"])
        # Prometheus and Locust reach whichever variant runs by this one name.
        assert "convzoo" in variant["networks"]["default"]["aliases"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] and d.get("driver") == "nvidia" for d in devices)
    assert "deploy" not in cpu


def test_compose_monitoring_runs_with_either_profile_and_mounts_existing_files():
    for name in ("prometheus", "grafana"):
        service = services()[name]
        assert "profiles" not in service, f"{name} should start with --profile gpu or cpu"
        for host_path in mounts(service).values():
            assert host_path.exists(), f"{name} mounts {host_path}, which does not exist"
    prometheus = services()["prometheus"]
    config_flag = next(a for a in prometheus["command"] if a.startswith("--config.file="))
    assert mounts(prometheus)[config_flag.split("=", 1)[1]] == PROMETHEUS_CONFIG


def test_compose_locust_master_and_workers_run_the_locustfile():
    master, worker = services()["locust-master"], services()["locust-worker"]
    for service in (master, worker):
        assert service["profiles"] == ["loadtest"]
        assert service["build"]["target"] == "loadtest"
        command = service["command"]
        assert command[command.index("-f") + 1] == "loadtest/locustfile.py"
    assert "--master" in master["command"]
    assert master["command"][master["command"].index("--host") + 1] == "http://convzoo:3000"
    assert master["command"][master["command"].index("--grpc-target") + 1] == "convzoo:3001"
    assert "--worker" in worker["command"]
    assert worker["command"][worker["command"].index("--master-host") + 1] == "locust-master"
    assert (ROOT / "loadtest" / "locustfile.py").is_file()


# --- the Dockerfile ----------------------------------------------------------------------

def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined), in file order."""
    lines = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text()).splitlines()
    stages: dict[str, list[str]] = {}
    current: list[str] = []
    for line in (line.strip() for line in lines):
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = stages.setdefault(match.group(2) or match.group(1), [])
        current.append(line)
    return stages


def test_dockerfile_builds_the_targets_compose_asks_for():
    stages = dockerfile_stages()
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in (ROOT / "Dockerfile").read_text()
    targets = {s["build"]["target"] for s in services().values() if "build" in s}
    assert targets <= set(stages)
    # The last stage is what a plain `docker build .` gives: the service.
    assert list(stages)[-1] == "service"


def test_dockerfile_imports_the_default_models_at_build_time_and_serves_them():
    stages = dockerfile_stages()
    service, app, models = (" ".join(stages[name]) for name in ("service", "app", "models"))
    assert "BENTOML_HOME=" in app
    assert "RUN python -m model_store pull" in models
    assert "COPY --from=models --chown=10001:10001 /opt/convzoo/bentoml/models " in service
    assert "BENTOML_HOME=/opt/convzoo/bentoml " in app
    assert json.loads(service.split("CMD ")[-1]) == SERVICE_COMMAND


def test_the_service_image_has_the_serving_only_install():
    # The service stage builds on `app`, which installs pyproject.toml's dependencies (no
    # torch); the `import` extra is installed in the `models` build stage only.
    stages = dockerfile_stages()
    service, app, models = (" ".join(stages[name]) for name in ("service", "app", "models"))
    assert stages["service"][0].startswith("FROM app AS service")
    assert "['project']['dependencies']" in app and "optional-dependencies" not in app
    assert "['optional-dependencies']['import']" in models
    assert "pip install" not in service and "model_store pull" not in service
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    serving = " ".join(project["dependencies"]).lower()
    assert "torch" not in serving and "timm" not in serving
    assert any(r.startswith("torch==") for r in project["optional-dependencies"]["import"])


def test_dockerignore_keeps_out_local_state_but_not_what_the_dockerfile_copies():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for local in (".venv", ".bentoml", ".git", "loadtest/reports"):
        assert local in patterns
    copied = [part for stage in dockerfile_stages().values() for line in stage
              if line.startswith("COPY ") and "--from=" not in line
              for part in line.split()[1:-1] if not part.startswith("--")]
    assert copied, "the Dockerfile copies nothing"
    for source in copied:
        assert (ROOT / source).exists(), f"the Dockerfile copies {source}, which is missing"
        assert not any(fnmatch.fnmatch(source, p) for p in patterns), (
            f"{source} is copied but .dockerignore leaves it out of the context")


# --- Prometheus --------------------------------------------------------------------------

def test_prometheus_scrapes_the_service_by_its_compose_name_and_port():
    config = load_yaml(PROMETHEUS_CONFIG)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "convzoo")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert targets == ["convzoo:3000"]
    host, port = targets[0].split(":")
    answering = [name for name, s in services().items()
                 if host == name or host in s.get("networks", {}).get("default", {}).get(
                     "aliases", [])]
    assert set(answering) == {"convzoo-gpu", "convzoo-cpu"}
    for name in answering:
        assert int(port) in {container_port(p) for p in services()[name]["ports"]}


def test_prometheus_config_passes_promtool():
    promtool = tool_or_skip("promtool", "prometheus")
    result = subprocess.run([promtool, "check", "config", str(PROMETHEUS_CONFIG)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana -----------------------------------------------------------------------------

def dashboard_targets() -> list[tuple[str, str]]:
    """(panel title, expr) of every query of every panel, rows' nested panels included."""
    def walk(panels: list[dict]):
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    return [(panel["title"], target["expr"])
            for panel in walk(json.loads(DASHBOARD.read_text())["panels"])
            for target in panel.get("targets", [])]


def test_grafana_provisioning_matches_compose_and_the_dashboard():
    grafana = services()["grafana"]
    grafana_mounts = mounts(grafana)
    assert grafana_mounts["/etc/grafana/provisioning"] == GRAFANA / "provisioning"
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    source = next(d for d in datasources["datasources"] if d["type"] == "prometheus")
    assert source["url"] == "http://prometheus:9090"
    assert 9090 in {container_port(p) for p in services()["prometheus"]["ports"]}
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "convzoo.yml")["providers"][0]
    assert grafana_mounts[provider["options"]["path"]] == DASHBOARD.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"

    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for item in (panel, *panel.get("targets", [])):
            if "datasource" in item:
                assert item["datasource"]["uid"] == source["uid"], panel["title"]


def test_grafana_dashboard_has_the_operators_panels():
    exprs = " ".join(expr for _, expr in dashboard_targets())
    for needed in ("convzoo_requests_total", "convzoo_images_total", "convzoo_batch_size",
                   "convzoo_queue_depth", "convzoo_selection_choices_total",
                   'convzoo_stage_latency_seconds_bucket{stage="queue"}', *GPU_METRICS):
        assert needed in exprs, f"no panel shows {needed}"
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (le) (rate(" \
               "convzoo_request_latency_seconds_bucket" in exprs


def test_grafana_queries_parse_as_promql(tmp_path):
    """Each query, Grafana's variables made plain, as a recording rule for promtool."""
    promtool = tool_or_skip("promtool", "prometheus")
    result = promtool_check([without_templating(expr) for _, expr in dashboard_targets()],
                            tmp_path, promtool)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_refuses_a_malformed_query(tmp_path):
    """The PromQL checks above can fail."""
    promtool = tool_or_skip("promtool", "prometheus")
    result = promtool_check(["sum(rate(convzoo_requests_total[1m])"], tmp_path, promtool)
    assert result.returncode != 0 and "parse error" in result.stdout + result.stderr


def defined_metrics() -> dict[str, set[str]]:
    """Sample names service/core/metrics.py defines, with their label names."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"),
                "gauge": ("",)}
    defined = {}
    for metric in vars(metrics).values():
        if hasattr(metric, "_labelnames") and hasattr(metric, "_type"):
            base = metric._name
            for suffix in suffixes[metric._type]:
                defined[base + suffix] = set(metric._labelnames) | (
                    {"le"} if suffix == "_bucket" else set())
    return defined


@pytest.mark.integration
def test_grafana_queries_use_only_metrics_a_live_server_exports(live_metrics: LiveMetrics):
    """Every metric of every query is among the live server's samples after real requests,
    with the labels the query uses. The GPU gauges are only sampled where a GPU exists, so
    those are checked against their definitions in service/core/metrics.py instead."""
    defined = defined_metrics()
    assert set(defined) >= GPU_METRICS
    for title, expr in dashboard_targets():
        names = metric_names(expr)
        assert names, f"{title}: no metric found in {expr!r}"
        labels: set[str] = set()
        for name in names:
            if name in GPU_METRICS:
                labels |= defined[name]
                continue
            assert name in live_metrics.names, (
                f"panel {title!r} queries {name}, which the live server does not export")
            labels |= live_metrics.labels[name]
        missing = label_names(expr) - labels
        assert not missing, f"panel {title!r} uses labels {missing} that {names} lack"
