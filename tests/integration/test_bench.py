"""`make bench` end to end, shrunk: raw sweep, a real server, REST and gRPC load, latency
pairs, ratios. Figures are not checked (tests check behaviour, not timings); that every
figure is there, positive and consistent is."""

from __future__ import annotations

import json
import os

import pytest

from tools import bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_measures_raw_and_served_and_their_ratio(tmp_path, capsys):
    output = tmp_path / "bench.json"
    home = os.environ["BENTOML_HOME"]  # the test store: lenet5 is there already
    try:
        assert bench.main(["--models", "lenet5", "--batch-sizes", "1,4", "--instances", "1,2",
                           "--seconds", "0.5",
                           "--rounds", "2", "--concurrency", "4", "--home", home,
                           "--workdir", str(tmp_path), "--json", str(output)]) == 0
    finally:
        os.environ["BENTOML_HOME"] = home
    report = json.loads(output.read_text())
    row = report["models"]["lenet5"]
    sweep = row["raw"]["images_per_s_by_instances_and_batch"]
    assert set(sweep) == {"1", "2"} and all(set(rates) == {"1", "4"} for rates in sweep.values())
    raw = row["raw"]
    assert sweep[str(raw["instances"])][str(raw["best_batch"])] == max(
        rate for rates in sweep.values() for rate in rates.values())
    assert raw["threads_per_instance"] >= 1
    assert row["failed_requests"] == 0
    for protocol in ("rest", "grpc"):
        figures = row[protocol]
        assert len(figures["rounds_images_per_s"]) == 2
        assert all(rate > 0 for rate in figures["rounds_images_per_s"])
        assert figures["ratio"] == pytest.approx(
            figures["images_per_s"] / row["raw"]["images_per_s"], abs=2e-3)
        assert 1 <= figures["mean_batch_size"] <= row["raw"]["best_batch"]
        assert figures["server_cpu_ms_per_image"] > 0
        assert figures["client_cpu_ms_per_image"] > 0
    assert row["raw"]["cpu_ms_per_image"] > 0
    single = row["single_latency"]
    assert single["served_ms"] > 0 and single["raw_ms"] > 0
    assert single["overhead_ms"] == pytest.approx(single["served_ms"] - single["raw_ms"],
                                                  abs=0.02)
    assert "lenet5: raw" in capsys.readouterr().out
