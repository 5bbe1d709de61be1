"""tools.decode_agreement's control and counting, without a model."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image

from tools import decode_agreement


def test_the_control_stretches_the_longer_side_by_one_pixel():
    landscape = Image.new("RGB", (4247, 2825))
    assert decode_agreement.stretched(landscape, 256, "bicubic").size == (386, 256)
    portrait = Image.new("RGB", (300, 451))
    assert decode_agreement.stretched(portrait, 256, "bilinear").size == (256, 386)


def _probabilities(best: int) -> np.ndarray:
    p = np.full(10, 0.05)
    p[best] = 0.55
    return p


def test_agreement_counts_fragile_cases_among_the_differing_and_among_all():
    table = decode_agreement.Agreement("m", 1)
    table.add("same, robust", _probabilities(1), _probabilities(1), _probabilities(1))
    table.add("same, fragile", _probabilities(1), _probabilities(1), _probabilities(2))
    table.add("differs, fragile", _probabilities(3), _probabilities(4), _probabilities(4))
    table.add("differs, robust", _probabilities(3), _probabilities(4), _probabilities(3))
    assert (table.cases, table.top1_same, table.fragile, table.differing_fragile) == (4, 2, 2, 1)
    assert table.differing == ["differs, fragile (gap 0.5000, scaled 0.5000, fragile)",
                               "differs, robust (gap 0.5000, scaled 0.5000)"]
    assert table.largest_differing_gap == pytest.approx(0.5)
    assert table.largest_differing_scaled_gap == pytest.approx(0.5)
    assert table.largest_top1_change == 0.5


def _two_best(first: int, second: int, gap: float) -> np.ndarray:
    p = np.full(10, 0.01)
    p[first], p[second] = 0.46 + gap / 2, 0.46 - gap / 2
    return p


def test_a_near_tie_rule_must_reach_the_widest_scaled_gap_among_the_changes():
    table = decode_agreement.Agreement("m", 1)
    assert table.near_tie_rule_cases() == 0  # nothing changed: nothing to undo
    table.add("changed, close", _two_best(0, 1, 0.01), _two_best(1, 0, 0.002),
              _two_best(0, 1, 0.01))
    table.add("changed, wider", _two_best(0, 1, 0.01), _two_best(1, 0, 0.03),
              _two_best(0, 1, 0.01))
    table.add("kept, closer than a change", _two_best(2, 3, 0.05), _two_best(2, 3, 0.02),
              _two_best(2, 3, 0.05))
    table.add("kept, firm", _two_best(2, 3, 0.4), _two_best(2, 3, 0.4), _two_best(2, 3, 0.4))
    assert table.largest_differing_scaled_gap == pytest.approx(0.03)
    # the two changes, and the kept answer whose scaled gap is within theirs
    assert table.near_tie_rule_cases() == 3
    report = {"agreement": [asdict(table)], "served_own_size_vs_12mp": []}
    assert ("at most 0.0300, would undo every change and decode 3 of 4 cases twice"
            in decode_agreement.markdown(report))
