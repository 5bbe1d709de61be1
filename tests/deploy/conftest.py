"""Shared by the deployment tests: the files they read, a live server, and PromQL parsing.

The live server is package-scoped: it starts for the first test of tests/deploy that needs
it and stops when the run leaves the package, so it never runs beside the integration
tests' session server on this small machine. Its metric names are what the dashboard and
the autoscaler's adapter rules are checked against.
"""

from __future__ import annotations

import base64
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import DEFAULT_TEST_CONFIG, LiveServer, start_server, stop_server

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
K8S_DIR = ROOT / "deploy" / "k8s"


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def load_compose() -> dict:
    return load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> LiveServer:
    live = start_server(tmp_path_factory.mktemp("deploy-server"), DEFAULT_TEST_CONFIG)
    yield live
    stop_server(live)


@dataclass(frozen=True)
class LiveMetrics:
    """Sample names a live server exports, with the label names seen on each."""

    labels: dict[str, set[str]]

    @property
    def names(self) -> set[str]:
        return set(self.labels)


def scrape(url: str) -> LiveMetrics:
    labels: dict[str, set[str]] = {}
    text = httpx.get(f"{url}/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
    return LiveMetrics(labels)


@pytest.fixture(scope="package")
def live_metrics(server: LiveServer, cat_jpeg: bytes) -> LiveMetrics:
    """/metrics after one request to each endpoint whose metrics the dashboard shows."""
    image = base64.b64encode(cat_jpeg).decode()
    requests = {
        "/classify": {"image": image},
        "/classify_batch": {"images": [image, image]},
        "/multicrop": {"image": image, "crops": 5},
        "/ensemble": {"image": image, "ensemble": "lite-pair"},
        "/select": {"image": image, "family": "efficientnet_lite", "latency_budget_ms": 5000},
    }
    with httpx.Client(base_url=server.http_url, timeout=120) as client:
        for path, body in requests.items():
            response = client.post(path, json=body)
            if response.status_code == 404 and response.text.strip() == "Not Found":
                pytest.fail(f"{path} is not routed on the server (404): the dashboard's "
                            "panels for it cannot be checked")
            assert response.status_code == 200, f"{path}: {response.text}"
    return scrape(server.http_url)


# --- PromQL -----------------------------------------------------------------------------

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
             "or", "unless", "offset", "inf", "nan"}
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def without_templating(expr: str) -> str:
    """Grafana's $__rate_interval and friends, and the adapter's <<.X>> made plain PromQL."""
    expr = re.sub(r"\$__\w+", "1m", expr)
    return expr.replace("<<.LabelMatchers>>", 'namespace="convzoo"').replace(
        "<<.GroupBy>>", "pod")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, keywords or label names)."""
    expr = without_templating(expr)
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = _GROUPING.sub("", expr)
    return {name for name in _IDENTIFIER.findall(expr)
            if name.lower() not in _KEYWORDS and not re.fullmatch(r"[0-9.e+-]+", name)}


def label_names(expr: str) -> set[str]:
    """Label names an expression matches on or groups by ("le" included)."""
    expr = without_templating(expr)
    names = {key for _, matchers in _SELECTOR.findall(expr)
             for key in _MATCHER.findall(matchers)}
    for grouping in _GROUPING.findall(expr):
        names.update(part.strip() for part in grouping.split(",") if part.strip())
    return names


def promtool_check(expressions: list[str], folder: Path, promtool: str
                   ) -> subprocess.CompletedProcess:
    """`promtool check rules` on the expressions, each made a recording rule: it parses them
    as PromQL (a rule file is checked without a running Prometheus)."""
    path = folder / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "checked", "rules": [
        {"record": f"convzoo:checked:{i}", "expr": expr}
        for i, expr in enumerate(expressions)]}]}))
    return subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                          text=True, timeout=60)
