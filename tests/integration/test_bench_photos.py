"""`make bench`'s photo axis end to end, shrunk: every photo size over REST and gRPC, the
ratio to the small photo, and the flood of 12 MP photos with a small one alongside.
Behaviour is checked, not timings: every figure there, positive and consistent."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tools import bench_photos

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_photos_measures_every_size_and_a_flood(tmp_path, capsys):
    output = tmp_path / "photos.json"
    home = os.environ["BENTOML_HOME"]  # the test store: efficientnet_lite0 is there
    try:
        assert bench_photos.main([
            "--photos", "small,1mp", "--seconds", "0.5", "--rounds", "2", "--concurrency", "2",
            "--single", "2", "--flood-clients", "2", "--flood-seconds", "3",
            "--dct-scale-margin", "1", "--instances", "1", "--home", home,
            "--json", str(output)]) == 0
    finally:
        os.environ["BENTOML_HOME"] = home
    report = json.loads(output.read_text())
    assert set(report["photos"]) == {"small", "1mp"}
    for row in report["photos"].values():
        assert row["failed"] == 0 and row["bytes"] > 0
        assert row["decode_full_ms"] > 0 and row["decode_scaled_ms"] > 0
        assert row["single_request_ms"] > 0 and row["server_cpu_ms_per_image"] > 0
        for protocol in ("rest", "grpc"):
            assert len(row[f"{protocol}_rounds"]) == 2
            assert all(rate > 0 for rate in row[f"{protocol}_rounds"])
            small = report["photos"]["small"][f"{protocol}_images_per_s"]
            assert row[f"{protocol}_ratio_to_small"] == pytest.approx(
                row[f"{protocol}_images_per_s"] / small, abs=0.01)
    # the layout the server runs, as it reports it: here the one asked for
    layout = report["server_layout"]
    assert layout["instances"] == 1 and layout["chosen_by"] == "configuration"
    assert layout["threads"] >= 1 and layout["batch_size"] >= 1
    flood = report["flood"]
    assert flood["clients"] == 2 and flood["small_requests"] > 0 and flood["small_failed"] == 0
    assert flood["small_p99_ms"] >= flood["small_p50_ms"] > 0
    assert flood["server_rss_peak_mb"] >= flood["server_rss_before_mb"] > 0
    assert flood["large_failed_other"] == 0
    # The server batches as `make serve` does (the shipped configuration's batching), but for
    # the layout held fixed.
    served = yaml.safe_load((bench_photos.Path(home) / "server-photos" /
                             "convzoo.yaml").read_text())
    shipped = yaml.safe_load((bench_photos.ROOT / "service" / "config.yaml").read_text())
    assert served["batching"] == {**shipped["batching"], "instances": 1}
    assert report["instances"] == 1
    # ... and decodes at the margin asked for (docs/benchmarks.md compares 1 and 2)
    assert served["dct_scale_margin"] == report["dct_scale_margin"] == 1
    printed = capsys.readouterr().out
    assert "| small |" in printed and "Flood (2 clients" in printed
    assert f"{layout['instances']} instance(s) x {layout['threads']} thread(s)" in printed
