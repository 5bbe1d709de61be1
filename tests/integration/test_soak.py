"""A short soak (`tools.soak`): a server of its own under a steady REST + gRPC mix for
about half a minute loses no request, keeps its worker, and holds its memory flat (the
median RSS of the last third of the samples within 10% of the middle third's). The longer run
that docs/reliability.md reports is `python -m tools.soak --minutes 3`.
"""

from __future__ import annotations

import pytest

from tools.soak import run_soak

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RSS_TOLERANCE = 0.10


def test_a_short_soak_loses_nothing_and_holds_memory_flat(tmp_path):
    result = run_soak(minutes=0.5, concurrency=4, sample_s=2.0, workdir=tmp_path)
    summary = result.summary(RSS_TOLERANCE)
    assert result.requests > 100, summary
    assert result.failures == 0, summary
    assert result.worker_restarts == 0, summary
    assert len(result.rss_mb) >= 9, summary
    assert result.flat(RSS_TOLERANCE), summary
