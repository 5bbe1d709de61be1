"""tools.decode_agreement, shrunk to one photo on the stored Lite0: every size, both crop
schemes and the control run, and the report prints them."""

from __future__ import annotations

import pytest

from tools import decode_agreement

pytestmark = pytest.mark.integration


def test_one_photo_is_compared_at_every_size_with_the_control(capsys):
    assert decode_agreement.main(["--models", "efficientnet_lite0", "--photos", "coffee"]) == 0
    rows = [[cell.strip() for cell in line.strip("|").split("|")]
            for line in capsys.readouterr().out.splitlines()
            if line.startswith("| efficientnet_lite0 |")]
    sizes = len(decode_agreement.SIZES)
    agreement, served = rows[:2], rows[2]
    assert [row[1] for row in agreement] == ["1", "10"]
    for _, _, same, fragile_differing, gaps, twice, fragile_all, *_ in agreement:
        differing = sizes - int(same.split("/")[0])
        assert same.endswith(f"/{sizes}") and fragile_all.endswith(f"/{sizes}")
        assert fragile_differing.endswith(f"/{differing}")
        # the gaps and the near-tie rule's cost are given where the top-1 changed
        assert (gaps == twice == "-") if differing == 0 else twice.endswith(f"/{sizes}")
    # coffee is an espresso however it is decoded, at any size (docs/accuracy.md)
    assert agreement[0][2] == f"{sizes}/{sizes}"
    assert served[1:] == ["1", "1/1", "1/1"]
