"""tools.bench_costs, shrunk: both measurements run on the stored model and print their rows."""

from __future__ import annotations

import pytest

from tools import bench_costs

pytestmark = pytest.mark.integration


def test_decode_margins_and_batch_sizes_are_measured(capsys):
    costs = bench_costs.decode_costs("efficientnet_lite0", repeats=1)
    assert set(costs) == set(bench_costs.MARGINS)
    # margin 1 decodes at the smaller scale, which still covers the model's resize
    assert min(costs[1]["decoded"]) >= 256 and costs[2]["decoded"][0] > costs[1]["decoded"][0]
    assert all(c["total_ms"] > 0 for c in costs.values())
    assert bench_costs.main(["--batches", "--max-batch", "2", "--rounds", "1"]) == 0
    printed = capsys.readouterr().out
    assert "batches (2 x 1 thread, img/s): 1: " in printed and ", 2: " in printed


def test_the_jpeg_decoders_are_compared_on_identical_pixels(capsys):
    costs = bench_costs.decoder_costs("efficientnet_lite0", repeats=1)
    assert list(costs) == ["small", "3mp", "12mp"]
    # both libjpeg-turbo bindings decode the same scaled pixels: the choice is speed alone
    assert all(c["identical"] for c in costs.values())
    # the 12 MP photo decoded at 1/4, as the service does for Lite0 (2 x 256 <= 707 < 1414)
    assert 512 <= min(costs["12mp"]["decoded"]) < 1024
    assert all(c["pillow_ms"] > 0 and c["simplejpeg_ms"] > 0 for c in costs.values())
    assert bench_costs.main(["--decoders", "--rounds", "1", "--repeats", "1"]) == 0
    assert "decoders 12mp: decoded" in capsys.readouterr().out


@pytest.mark.slow
def test_a_start_reports_the_layout_and_batch_its_measurement_chose(monkeypatch, capsys):
    chose = bench_costs.start_choice("efficientnet_lite0")
    # the shipped batching measures both: every candidate timed, the chosen one among them
    assert chose["layout"] in chose["layouts_measured"]
    assert set(chose["batches_measured"]) == {1, 2, 4, 8, 16}
    assert chose["batch_size"] in chose["batches_measured"]
    assert all(speed > 0 for speed in [*chose["layouts_measured"].values(),
                                       *chose["batches_measured"].values()])
    assert chose["ready_s"] > 0
    monkeypatch.setattr(bench_costs, "start_choice", lambda model, shipped, root: chose)
    assert bench_costs.main(["--starts", "--rounds", "2"]) == 0
    printed = [line for line in capsys.readouterr().out.splitlines() if " start: " in line]
    assert [line.split()[1] for line in printed] == ["1", "2"]
    assert f"layout {chose['layout']} (img/s: " in printed[0]
    assert f"batches of up to {chose['batch_size']} (img/s: 1: " in printed[0]
