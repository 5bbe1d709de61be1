"""fp16 against fp32: the agreement figures, computed from logits."""

from __future__ import annotations

import numpy as np
import pytest

from model_store.fp16 import compare


def test_identical_logits_agree_completely():
    logits = np.random.default_rng(0).standard_normal((6, 1000)).astype(np.float32)
    parity = compare(logits, logits.copy())
    assert parity.images == 6
    assert parity.top1_agreement == parity.top5_agreement == 1.0
    assert parity.max_probability_change == parity.max_logit_difference == 0.0


def test_a_changed_top1_and_top5_are_counted():
    fp32 = np.array([[9.0, 8, 7, 6, 5, 4, 0], [9.0, 8, 7, 6, 5, 4, 0]])
    fp16 = fp32.copy()
    fp16[0, 1] = 9.5  # first image: classes 0 and 1 swap places, the top-5 set is the same
    fp16[1, 6] = 5.5  # second image: class 6 enters the top 5, class 4 leaves
    parity = compare(fp32, fp16)
    assert parity.top1_agreement == 0.5
    assert parity.top5_agreement == 0.5
    assert parity.max_logit_difference == pytest.approx(5.5)
    assert 0 < parity.max_probability_change < 1


def test_shapes_must_match():
    with pytest.raises(ValueError, match="shapes differ"):
        compare(np.zeros((2, 10)), np.zeros((3, 10)))
