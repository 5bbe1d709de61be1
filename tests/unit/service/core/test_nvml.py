"""GPU readings through NVML, without torch: none, and a reason, where no driver is."""

from __future__ import annotations

import subprocess
import sys

import pytest

from service.core import nvml
from tests.conftest import ROOT


def test_readings_match_what_the_driver_says():
    readings = nvml.read_gpus()
    if not readings:
        assert nvml.driver_missing()  # no GPU read, and the reason is given
        return
    assert nvml.driver_missing() is None
    for reading in readings:
        assert 0 <= reading.utilisation <= 1
        assert 0 < reading.memory_used_bytes <= reading.memory_total_bytes


def test_reading_gpus_imports_no_torch():
    code = ("import sys; from service.core import metrics, nvml; nvml.read_gpus(); "
            "nvml.driver_missing(); metrics.refresh_gpu_gauges(); print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("count, expected", [(0, "the NVIDIA driver sees no GPU"), (1, None)])
def test_a_driver_with_no_gpu_is_no_gpu(monkeypatch, count, expected):
    class FakeNvml:
        @staticmethod
        def nvmlDeviceGetCount() -> int:
            return count

    monkeypatch.setattr(nvml, "_nvml", lambda: FakeNvml)
    pytest.importorskip("pynvml")
    assert nvml.driver_missing() == expected
