"""The plan line and totals that `pull` prints (sizes from the servers, counts by origin)."""

from __future__ import annotations

from model_store import registry
from model_store.acquire import FetchOptions
from model_store.operations import FROM_PACKAGE, RANDOM_INIT, TRAINED_HERE, Pulled
from model_store.pulling import (
    DOWNLOAD,
    UNAVAILABLE,
    PullTotals,
    Step,
    describe,
    human_bytes,
    plan,
)


def test_human_bytes():
    assert [human_bytes(n) for n in (512, 1_500, 44_700_000, 3_000_000_000, None)] == [
        "512 B", "1.5 kB", "44.7 MB", "3.0 GB", "size unknown"]


def test_plan_counts_each_origin_and_sums_the_known_sizes():
    spec = registry.get("resnet18")
    steps = [Step(spec, FROM_PACKAGE), Step(spec, DOWNLOAD, "u1", 2_000_000),
             Step(spec, "PyTorch hub cache"), Step(spec, UNAVAILABLE),
             Step(spec, DOWNLOAD, "u2", 3_000_000), Step(spec, DOWNLOAD, "u3", None)]
    assert describe(steps, ["lenet5"]) == (
        "pull: 7 variants: 1 already stored (--force re-imports), 1 from its registry package, "
        "1 from the PyTorch hub cache, 1 with no source here, 3 to download (5.0 MB for 2 of "
        "them)")


def test_totals_line():
    totals = PullTotals(stored=[("a", Pulled("a:1", "downloaded", 1_000_000)),
                                ("b", Pulled("b:1", "PyTorch hub cache"))],
                        skipped=["c"], failed={"d": "HTTP 404"}, seconds=2.04)
    assert totals.line() == ("pull: 2 stored, 1 skipped (already stored), 1 failed; "
                             "1 downloaded (1.0 MB), 1 from caches; 2.0 s")


def test_plan_says_where_each_variant_comes_from():
    lenet5, lite0 = registry.get("lenet5"), registry.get("efficientnet_lite0")
    quiet = FetchOptions(progress=False)
    assert [s.origin for s in plan([lenet5, lite0], False, None, quiet)] == [
        TRAINED_HERE, FROM_PACKAGE]
    assert [s.origin for s in plan([lenet5], True, None, quiet)] == [RANDOM_INIT]
    # LeNet-5 has no Hub file: said in the plan, and by pull itself when it gets there.
    assert [s.origin for s in plan([lenet5], False, "timm", quiet)] == [UNAVAILABLE]
