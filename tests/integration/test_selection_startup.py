"""Selection without a cold surprise (issue 18): with `profile_families_at_startup` the data plane
loads and profiles the start-up models' families before it turns ready, so the first /select
waits for no profile; without it, the first /select waits and its response says so, with no
latency promised. In-process data planes on the real offline EfficientNet-Lite ladder.
"""

from __future__ import annotations

import logging

import pytest

from service.core.config import load_config
from service.core.dataplane import DataPlane
from service.core.requests import SelectRequest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LITE = "efficientnet_lite"
LADDER = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
GENEROUS_MS = 60_000
OVERHEAD_UNKNOWN = ("no efficientnet_lite request had been served yet: decode, preprocessing "
                    "and postprocessing time is unknown and counted as 0")


def plane_with(tmp_path, startup_models: tuple[str, ...], profile: bool) -> DataPlane:
    return DataPlane(load_config(tmp_path / "none.yaml", default_model=startup_models[0],
                                 startup_models=startup_models,
                                 profile_families_at_startup=profile))


async def select(plane: DataPlane, image: bytes) -> dict:
    """The REST answer of one /select within a generous budget."""
    (result,) = await plane.select(SelectRequest(images=(image,), family=LITE,
                                                 latency_budget_ms=GENEROUS_MS))
    return result.to_dict()


async def test_start_up_profiles_the_family_so_the_first_select_waits_for_nothing(
        tmp_path, cat_jpeg, caplog):
    plane = plane_with(tmp_path, ("efficientnet_lite0", "lenet5"), profile=True)
    try:
        with caplog.at_level(logging.INFO, logger="convzoo.core"):
            await plane.start()
        assert plane.ready
        # The whole ladder, not only the start-up model, is loaded and profiled ...
        assert set(LADDER) <= set(plane.engines.loaded)
        for name in LADDER:
            profile = plane.selection.selector.service_time(name).profiled_ms
            assert sorted(profile) == [1, plane.engines.get(name).batcher.max_batch_size], name
        # ... and LeNet-5's family, with no published top-1 to rank by, is left alone.
        assert not plane.selection.selector.service_time("lenet5").profiled_ms
        assert any(r.getMessage().startswith(f"profiled {LITE} for /select in ")
                   for r in caplog.records)

        first = (await select(plane, cat_jpeg))["selection"]
        assert not any(c["profiled_for_request"] for c in first["candidates"])
        # Only the request overhead is still unknown: the response says so, promising nothing.
        assert first["unmeasured"] == [OVERHEAD_UNKNOWN]
        assert first["latency_measured"] is False and first["expected_latency_ms"] is None

        second = (await select(plane, cat_jpeg))["selection"]
        assert second["latency_measured"] is True and second["unmeasured"] == []
        chosen = {c["name"]: c for c in second["candidates"]}[second["chosen"]]
        assert second["expected_latency_ms"] == chosen["expected_latency_ms"] > 0
        assert chosen["overhead_observed"] is True and chosen["overhead_ms"] > 0
    finally:
        await plane.close()


async def test_without_start_up_profiling_the_first_select_says_it_waited(tmp_path, cat_jpeg):
    plane = plane_with(tmp_path, ("efficientnet_lite0",), profile=False)
    try:
        await plane.start()
        assert set(plane.engines.loaded) == {"efficientnet_lite0"}
        assert not plane.selection.selector.service_time("efficientnet_lite0").profiled_ms

        first = await select(plane, cat_jpeg)
        selection = first["selection"]
        assert {c["name"]: c["profiled_for_request"] for c in selection["candidates"]} == {
            name: True for name in LADDER}
        assert selection["latency_measured"] is False
        assert selection["expected_latency_ms"] is None
        assert selection["unmeasured"] == [
            f"{selection['chosen']} was not loaded and profiled when this request arrived: "
            "the request waited for that (timing_ms.selection)", OVERHEAD_UNKNOWN]
        assert "not a measured promise" in selection["reason"]
        # The wait is where the flag says: in the selection step, not in the model's run.
        assert first["timing_ms"]["selection"] > first["timing_ms"]["infer"]

        second = (await select(plane, cat_jpeg))["selection"]
        assert not any(c["profiled_for_request"] for c in second["candidates"])
        assert second["latency_measured"] is True
    finally:
        await plane.close()
