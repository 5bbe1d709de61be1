"""tools.resample_agreement's two ways of cutting crops and its counting, without a model."""

from __future__ import annotations

import numpy as np
from PIL import Image
from skimage import data

from model_store import registry
from model_store.transforms import PICTURE_BOX
from tools import resample_agreement


def test_both_ways_give_the_models_crop_from_the_same_picture_box():
    spec = registry.get("efficientnet_lite0").input
    image = Image.fromarray(data.coffee()).resize((1062, 707))
    image.info[PICTURE_BOX] = (0.0, 0.0, 1061.75, 706.25)  # as a 1/4 DCT decode records
    for scheme, count in ((1, 1), (10, 10)):
        before = resample_agreement.former_crops(image, spec, scheme)
        after = resample_agreement.served_crops(image, spec, scheme)
        assert len(before) == len(after) == count
        assert {crop.size for crop in before + after} == {(spec.size, spec.size)}
        difference = np.abs(np.stack([np.asarray(c, np.int16) for c in before])
                            - np.stack([np.asarray(c, np.int16) for c in after]))
        # a landscape photo: Pillow ran the horizontal pass first as well
        assert difference.max() <= 1 and np.mean(difference > 0) < 0.001


def _probabilities(best: int, top: float = 0.55) -> np.ndarray:
    p = np.full(10, (1 - top) / 9)
    p[best] = top
    return p


def test_agreement_counts_pixels_top1_top5_and_the_largest_change():
    table = resample_agreement.Agreement("m", 1)
    same = Image.new("L", (10, 10), 100)
    one_off = same.copy()
    one_off.putpixel((0, 0), 101)
    table.add("identical", [same], [same], np.stack([_probabilities(1), _probabilities(1)]))
    table.add("one value off", [same], [one_off],
              np.stack([_probabilities(2), _probabilities(3, 0.6)]))
    assert (table.cases, table.cases_with_pixels_differing, table.top1_same) == (2, 1, 1)
    assert table.largest_share_of_values_differing == 0.01
    assert table.largest_value_difference == 1
    # the old top-1 (2) fell from 0.55 to 0.4/9
    assert abs(table.largest_top1_change - (0.55 - 0.4 / 9)) < 1e-9
    assert table.worst_case == "one value off"
