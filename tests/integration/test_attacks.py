"""The hostile-client catalogue of issue 14 (`tools.attack`) against a real server on
127.0.0.1, with limits small enough for the suite. Each attack must be refused as it should
be, nothing may answer 500 or INTERNAL, /readyz and gRPC ServerLive must keep answering (a
generous 2 s bound: a behaviour check, not a benchmark; `python -m tools.attack` measures the
p99 on a quiet machine), and memory and /metrics must stay bounded by the configuration."""

from __future__ import annotations

import re

import httpx
import pytest

from service.core.config import load_config
from tests.integration.conftest import start_server, stop_server
from tools import attack
from tools.attack import Outcome, Target
from tools.soak import worker_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MiB = 1 << 20
CONFIG = {"default_model": "lenet5", "startup_models": ["lenet5"],
          "header_timeout_s": 2, "body_timeout_s": 3,
          "max_body_bytes": 8 * MiB, "max_body_bytes_in_flight": 32 * MiB}
PROBE_BOUND_MS = 2000


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attacks")
    server = start_server(folder, CONFIG)
    worker = worker_process(server.process.pid)
    yield Target(server.http_url, server.grpc_target, load_config(folder / "convzoo.yaml"),
                 worker.pid if worker else None)
    stop_server(server)


def check(outcome: Outcome) -> None:
    assert not outcome.server_errors, outcome.statuses
    assert outcome.refused, outcome.answer
    assert outcome.readyz_ms and outcome.live_ms
    assert attack.percentile(outcome.readyz_ms, 99) < PROBE_BOUND_MS, outcome.readyz_ms
    assert attack.percentile(outcome.live_ms, 99) < PROBE_BOUND_MS, outcome.live_ms


def test_an_endless_header_is_refused_431_after_the_limit(target):
    outcome = attack.run(target, attack.header_bomb)
    check(outcome)
    # Refused within the first pieces (before: 120 MiB read, 8-11 s of stalled /readyz).
    assert outcome.figures["sent_mib"] < 16


def test_a_huge_request_line_is_refused_431(target):
    check(attack.run(target, attack.url_bomb))


def test_idle_and_half_sent_connections_are_closed(target):
    idle = attack.run(target, lambda t: attack.idle_connections(t, count=40))
    check(idle)
    half = attack.run(target, lambda t: attack.half_heads(t, count=40))
    check(half)
    assert half.statuses == [408] * 40
    for outcome in (idle, half):  # within header_timeout_s, with a margin for a busy machine
        assert outcome.figures["closed_after_s"] < CONFIG["header_timeout_s"] + 4


def test_a_stalled_body_gets_408(target):
    check(attack.run(target, attack.slow_body))


def test_bodies_in_flight_are_bounded(target, digit_pngs):
    outcome = attack.run(target, lambda t: attack.bodies_in_flight(t, connections=20))
    check(outcome)
    # 7 MiB declared each: 4 fit in 32 MiB; the 16 others were refused before being read.
    assert outcome.figures["fits"] == 4 and outcome.figures["refused"] >= 16
    if outcome.rss_growth_mb is not None:  # 20 x 7 MiB = 140 MiB without the bound
        assert outcome.rss_growth_mb < 32 + 48, outcome.rss_growth_mb
    metrics = httpx.get(target.http_url + "/metrics", timeout=30).text
    refused = re.search(r'convzoo_request_bodies_refused_total\{reason="budget"\} (\S+)', metrics)
    assert refused and float(refused.group(1)) >= 16
    # Once the stalled ones are gone, the budget is free again.
    response = httpx.post(target.http_url + "/classify", content=digit_pngs[0][0],
                          headers={"content-type": "image/png"}, timeout=30)
    assert response.status_code == 200


def test_invented_paths_do_not_grow_metrics(target):
    outcome = attack.run(target, lambda t: attack.metric_flood(t, paths=1200))
    check(outcome)
    metrics = httpx.get(target.http_url + "/metrics", timeout=30).text
    endpoints = set(re.findall(r'bentoml_service_request_total\{endpoint="([^"]*)"', metrics))
    assert {"__unmatched__", "/models/{name}"} <= endpoints, endpoints
    assert not [e for e in endpoints if e.startswith("/x") or e.startswith("/models/")
                and e != "/models/{name}"], endpoints
    # A second flood adds nothing at all: the series exist already.
    again = attack.metric_flood(target, paths=600)
    assert abs(again.figures["metrics_after"] - again.figures["metrics_before"]) < 2000


def test_no_client_input_gets_500_or_internal(target):
    outcome = attack.run(target, attack.client_inputs)
    check(outcome)
    answers = outcome.figures["answers"]
    assert set(answers.values()) == {400, "INVALID_ARGUMENT"}, answers
    assert len([n for n in answers if n.startswith("100,000-deep")]) == 7


def test_a_long_error_reaches_the_client_cut_short(target):
    outcome = attack.run(target, attack.long_error)
    check(outcome)
    assert outcome.figures["grpc_message_bytes"] < 1100


def test_long_thin_images_are_refused_from_their_header(target):
    outcome = attack.run(target, attack.thin_images)
    check(outcome)
    assert outcome.rss_growth_mb is None or outcome.rss_growth_mb < 100


def test_decoders_we_do_not_run_are_refused_and_exif_floods_served(target):
    check(attack.run(target, attack.image_formats))
