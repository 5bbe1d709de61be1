"""tools.resample_agreement, shrunk to one photo on the stored Lite0: both crop schemes,
both orientations, every size, both decodes, and the timing table."""

from __future__ import annotations

import pytest

from tools import decode_agreement, resample_agreement

pytestmark = pytest.mark.integration


def test_one_photo_is_compared_both_ways_at_every_size(capsys):
    assert resample_agreement.main(["--models", "efficientnet_lite0", "--photos", "coffee"]) == 0
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| efficientnet_lite0 |")]
    assert [row[1] for row in rows] == ["1", "10"]
    sizes = len(decode_agreement.SIZES)
    expected = sizes * len(resample_agreement.ORIENTATIONS) * 2  # decoded in full and scaled
    for _, _, cases, _, share, largest, same, _, change in rows:
        assert int(cases) == expected
        # coffee stays an espresso, and the crops differ by rounding at most
        assert same == f"{expected}/{expected}"
        assert int(largest) <= 6 and float(share.rstrip(" %")) < 50
        assert float(change.split()[0]) < 0.05
    labels = [label for label, *_ in decode_agreement.SIZES]
    timed = [line.split("|")[1].strip() for line in out.splitlines()
             if line.startswith("| ") and line.split("|")[1].strip() in labels]
    assert timed == labels
