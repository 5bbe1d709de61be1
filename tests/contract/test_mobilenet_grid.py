"""The MobileNet v1 alpha x rho grid against the MobileNet paper's own tables (the seeds)."""

from __future__ import annotations

import pytest

from model_store import registry
from model_store.profiling import count_mult_adds, count_params
from model_store.registry import MOBILENET_V1_PAPER_TABLES


def _within(computed: float, published: float, decimals: int) -> bool:
    # 2% as the issue asks, or equal at the table's printed precision (0.5M params for
    # alpha 0.25 is 0.47M rounded to one decimal).
    return abs(computed - published) <= 0.02 * published or round(computed, decimals) == published


@pytest.mark.parametrize(("alpha", "resolution"), sorted(MOBILENET_V1_PAPER_TABLES))
def test_paper_tables_6_and_7(alpha, resolution):
    _accuracy, madds_m, params_m = MOBILENET_V1_PAPER_TABLES[(alpha, resolution)]
    spec = registry.get(f"mobilenet_v1_{alpha}_{resolution}")
    model = spec.build()
    computed_params = count_params(model) / 1e6
    computed_madds = count_mult_adds(model, 3, resolution) / 1e6
    assert _within(computed_params, params_m, 1), (spec.name, computed_params, params_m)
    assert _within(computed_madds, madds_m, 0), (spec.name, computed_madds, madds_m)


def test_grid_is_complete_and_ordered():
    grid = registry.family("mobilenet_v1")
    assert len(grid) == 16
    assert {(s.ladder["alpha"], s.input.size) for s in grid} == {
        (a, r) for a in (0.25, 0.5, 0.75, 1.0) for r in (128, 160, 192, 224)}
    # rho is the resolution multiplier relative to 224
    for spec in grid:
        assert spec.ladder["rho"] == pytest.approx(spec.input.size / 224)
