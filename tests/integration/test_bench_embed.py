"""`python -m tools.bench_embed` end to end, shrunk: a real server, alternating classify and
embed rounds over REST and over gRPC, both figures and their ratio. Figures are not checked
(tests check behaviour, not timings); that every figure is there, positive and consistent is.
"""

from __future__ import annotations

import json

import pytest

from tools import bench_embed

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_bench_embed_alternates_classify_and_embed_and_gives_their_ratio(tmp_path, capsys,
                                                                         protocol):
    output = tmp_path / "embed.json"
    args = ["--model", "efficientnet_lite0", "--rounds", "2", "--seconds", "1",
            "--clients", "2", "--batch", "4", "--json", str(output)]
    assert bench_embed.main(args + (["--grpc"] if protocol == "grpc" else [])) == 0
    figures = json.loads(output.read_text())
    assert figures["settings"]["protocol"] == protocol
    for kind in ("classify", "embed"):
        row = figures[kind]
        assert len(row["rounds_images_per_s"]) == 2 and row["errors"] == 0
        assert all(rate > 0 for rate in row["rounds_images_per_s"])
        assert row["p50_ms"] > 0
    assert figures["embed_over_classify"] == pytest.approx(
        figures["embed"]["images_per_s"] / figures["classify"]["images_per_s"], abs=2e-3)
    assert "embed / classify:" in capsys.readouterr().out
