"""Two servers on one model store keep their own metrics (issue 18).

`bentoml serve` empties `$BENTOML_HOME/prometheus_multiproc_dir` as it starts, where every
server on that BentoML home keeps its metrics. A second server on the same home, as a second
`make serve` in the same checkout would be, must therefore not start (it would wipe the
first one's /metrics); on a home of its own that shares the model store it runs beside the
first, and each server's counters count only its own requests.
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import LiveServer, start_server, stop_server
from tools.launch import home_sharing_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONFIG = {"default_model": "lenet5", "startup_models": ["lenet5"]}


def classified(server: LiveServer) -> float:
    """convzoo_requests_total for successful LeNet-5 /classify requests on this server."""
    text = httpx.get(server.http_url + "/metrics", timeout=30).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "convzoo_requests_total"
                    and sample.labels == {"model": "lenet5", "endpoint": "classify",
                                          "outcome": "ok"}):
                return sample.value
    return 0.0


def classify(server: LiveServer, digit_png: bytes, times: int) -> None:
    for _ in range(times):
        response = httpx.post(server.http_url + "/classify", files={"image": digit_png},
                              data={"model": "lenet5"}, timeout=60)
        assert response.status_code == 200, response.text


def convzoo_lines(server: LiveServer) -> list[str]:
    text = httpx.get(server.http_url + "/metrics", timeout=30).text
    return [line for line in text.splitlines() if line.startswith("convzoo_")]


def test_a_second_server_on_the_same_home_is_refused_and_one_of_its_own_keeps_apart(
        tmp_path, digit_pngs):
    digit = digit_pngs[0][0]
    shared_home = home_sharing_store(tmp_path / "shared-home")
    for name in ("first", "second", "third"):
        (tmp_path / name).mkdir()
    first = start_server(tmp_path / "first", CONFIG, bentoml_home=shared_home)
    second = None
    try:
        classify(first, digit, 3)
        assert classified(first) == 3
        before = convzoo_lines(first)

        with pytest.raises(RuntimeError) as refused:
            start_server(tmp_path / "second", CONFIG, bentoml_home=shared_home)
        message = str(refused.value)
        assert "server exited with 1" in message
        assert f"keeps its metrics in {shared_home / 'prometheus_multiproc_dir'}" in message
        assert "BENTOML_HOME=/tmp/convzoo-2" in message  # and says what to do instead
        # The first server's metrics are all still there, its counts unchanged.
        assert convzoo_lines(first) == before and classified(first) == 3

        second = start_server(tmp_path / "third", CONFIG)  # a home of its own, same store
        classify(second, digit, 2)
        classify(first, digit, 1)
        assert classified(first) == 4 and classified(second) == 2
    finally:
        for server in (first, second):
            if server is not None:
                stop_server(server)
