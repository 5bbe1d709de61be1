"""`make bench-gpu` on this machine, shrunk: one model, tiny rounds. On a machine with no GPU it
must still run the CPU rows, start a real server, and say in both reports which GPU rows it
skipped and why. Figures are not checked (tests check behaviour, not timings)."""

from __future__ import annotations

import json
import os

import pytest

from service.core import nvml
from tools import bench_gpu

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_gpu_runs_what_it_can_and_says_what_it_skipped(tmp_path, capsys):
    home = os.environ["BENTOML_HOME"]  # the test store: lenet5 is there already
    try:
        assert bench_gpu.main([
            "--models", "lenet5", "--batch-sizes", "1,4", "--seconds", "0.2",
            "--served-seconds", "1", "--rounds", "1", "--load-processes", "1",
            "--concurrency", "2", "--decode-seconds", "0.2", "--home", home,
            "--out", str(tmp_path)]) == 0
    finally:
        os.environ["BENTOML_HOME"] = home
    report = json.loads((tmp_path / "bench-gpu.json").read_text())
    text = (tmp_path / "bench-gpu.md").read_text()
    env = report["environment"]
    assert "CPUExecutionProvider" in env["providers_usable"]
    raw = report["models"]["lenet5"]["raw"]
    assert set(raw["cpu-fp32"]["images_per_s"]) == {"1", "4"}
    assert all(rate > 0 for rate in raw["cpu-fp32"]["images_per_s"].values())
    served = report["models"]["lenet5"]["served"]
    assert served["failed_requests"] == 0
    for protocol in ("rest", "grpc"):
        assert served[protocol]["images_per_s"] > 0
        assert served[protocol]["ratio"] == pytest.approx(
            served[protocol]["images_per_s"] / served["raw_images_per_s"], abs=2e-3)
    assert served["execution"]["providers"]  # what the server itself reports it got
    for label in ("small 451x300", "12 MP 4000x3000"):
        assert report["decode"][label]["cpu_images_per_s"] > 0
    skipped = {row["row"]: row["reason"] for row in report["skipped"]}
    if not nvml.read_gpus():
        assert served["configuration"] == "cpu-fp32"
        for row in ("cuda-fp32", "cuda-fp16", "tensorrt-fp16"):
            assert row not in raw
            assert "device: cuda is configured" in skipped[f"lenet5 raw {row}"]
            assert f"lenet5 raw {row}" in text
        assert "decode 12 MP 4000x3000 nvJPEG" in skipped
        assert served["rest"]["gpu_utilisation"] is None
        assert "no usable GPU here" in capsys.readouterr().out
    assert report["complete"] is True and "incomplete" not in text
    assert "## Skipped" in text and "| cpu-fp32 |" in text
