"""Engines with a fake repository and a fake backend (tests/fixtures/fake_models.py): loading
once, warming up, the digest check, what a missing, broken or random-init model gets, lazy
loading, eviction under the memory budget. No model store, no ONNX Runtime."""

from __future__ import annotations

import asyncio

import pytest

from service.core import engines as engines_module
from service.core import layout
from service.core.config import load_config
from service.core.engines import Engines
from service.core.errors import ModelNotFound, NotReady
from service.core.stored import StoreIndex
from tests.fixtures.fake_models import FakeBackends, FolderRepository


def engines_for(tmp_path, backends=None, **overrides) -> tuple[Engines, FolderRepository]:
    repository = FolderRepository(tmp_path / "store")
    config = load_config(tmp_path / "none.yaml", **{
        "default_model": "lenet5", "startup_models": ("lenet5",),
        "batching": {"max_batch_size": 4, "instances": 1}, **overrides})
    return Engines(config, repository, StoreIndex(repository), backends or FakeBackends()), \
        repository


async def test_a_model_loads_once_however_many_ask_and_is_warmed_up(tmp_path):
    backends = FakeBackends()
    engines, repository = engines_for(tmp_path, backends)
    repository.add("lenet5")
    try:
        loaded = await asyncio.gather(*(engines.engine("lenet5") for _ in range(5)))
        assert all(engine is loaded[0] for engine in loaded)
        (backend,) = backends.made["lenet5"]
        assert backend.batches == [1, 4]  # warm-up at batch 1 and at the max batch
        assert loaded[0].layout.reason == "configured" and loaded[0].weights_status == "pretrained"
        assert engines.get("lenet5") is loaded[0] and engines.devices() == ["cpu"]
    finally:
        await engines.close()


async def test_an_auto_layout_is_measured_for_onnx_runtime_on_cpu_only(tmp_path):
    engines, repository = engines_for(tmp_path, batching={"max_batch_size": 4,
                                                          "instances": "auto"})
    repository.add("lenet5")
    try:
        engine = await engines.engine("lenet5")
        assert engine.layout.instances == 1
        assert "not fake on cpu" in engine.layout.reason
    finally:
        await engines.close()


async def test_the_batches_formed_are_configured_or_measured(tmp_path):
    engines, repository = engines_for(tmp_path, batching={
        "max_batch_size": 4, "instances": 1, "preferred_batch_size": 2})
    repository.add("lenet5")
    try:
        engine = await engines.engine("lenet5")
        assert engine.batcher.max_batch_size == 2
        assert engine.layout.to_dict()["preferred_batch"]["chosen_by"] == "configuration"
    finally:
        await engines.close()
    backends = FakeBackends()
    engines, repository = engines_for(tmp_path, backends, batching={
        "max_batch_size": 4, "instances": 1, "preferred_batch_size": "auto"})
    try:
        engine = await engines.engine("lenet5")
        (backend,) = backends.made["lenet5"]
        assert {1, 2, 4} <= set(backend.batches)  # each candidate size was run
        measured = engine.layout.to_dict()["preferred_batch"]
        assert measured["chosen_by"] == "measurement"
        assert [m["batch_size"] for m in measured["measured"]] == [1, 2, 4]
        assert engine.batcher.max_batch_size == engine.layout.preferred_batch_size
    finally:
        await engines.close()


class OnnxRuntimeLikeBackends(FakeBackends):
    """Fake backends that call themselves ONNX Runtime on the CPU, so that `instances: auto`
    measures their layouts."""

    def __call__(self, config, stored, model, threads=None):
        backend = super().__call__(config, stored, model, threads)
        backend.name = "onnxruntime"
        return backend


@pytest.mark.parametrize("instances, preferred, warm_ups", [
    (1, None, [1, 4]),  # nothing measured
    (1, 2, [1, 4]),  # a configured batch size is not measured either
    (1, "auto", []),  # the batch-size search ran 1, 2 and 4 through the backend
    ("auto", None, [1]),  # the layouts ran batches of 4 only
    ("auto", "auto", []),
])
async def test_the_warm_up_runs_only_the_sizes_no_measurement_ran(tmp_path, monkeypatch,
                                                                  instances, preferred,
                                                                  warm_ups):
    monkeypatch.setattr(engines_module, "usable_cores", lambda: 2)  # two candidate layouts
    monkeypatch.setattr(layout, "MIN_SECONDS", 0.01)
    batching = {"max_batch_size": 4, "instances": instances}
    if preferred is not None:
        batching["preferred_batch_size"] = preferred
    backends = OnnxRuntimeLikeBackends()
    engines, repository = engines_for(tmp_path, backends, batching=batching)
    repository.add("lenet5")
    try:
        engine = await engines.engine("lenet5")
        assert bool(engine.layout.measured) == (instances == "auto")
        assert len(backends.made["lenet5"]) == (2 if instances == "auto" else 1)
        assert engine.backend.warm_ups == warm_ups
        assert {1, 4} <= set(engine.backend.batches)  # warm either way before any request
    finally:
        await engines.close()


@pytest.mark.parametrize("instances, warmed", [(1, set()), ("auto", {4})])
async def test_the_batch_size_search_does_not_warm_up_what_the_layouts_ran(
        tmp_path, monkeypatch, instances, warmed):
    monkeypatch.setattr(engines_module, "usable_cores", lambda: 2)
    monkeypatch.setattr(layout, "MIN_SECONDS", 0.01)
    searched: list = []

    def search(*args, warmed=()):
        searched.append(set(warmed))
        return layout.choose_batch_size(*args, warmed=warmed)
    monkeypatch.setattr(engines_module, "choose_batch_size", search)
    engines, repository = engines_for(tmp_path, OnnxRuntimeLikeBackends(), batching={
        "max_batch_size": 4, "instances": instances, "preferred_batch_size": "auto"})
    repository.add("lenet5")
    try:
        await engines.engine("lenet5")
        assert searched == [warmed]  # the layouts' batch of 4 ran on the same backend
    finally:
        await engines.close()


async def test_a_model_with_no_weights_names_what_is_served(tmp_path):
    engines, repository = engines_for(tmp_path)
    repository.add("efficientnet_lite0")
    with pytest.raises(ModelNotFound, match="no weights in the model store") as caught:
        await engines.engine("lenet5")
    assert caught.value.details["served_models"] == ["efficientnet_lite0"]
    with pytest.raises(ModelNotFound, match="unknown model 'nope'"):
        await engines.engine("nope")


async def test_a_corrupt_or_broken_store_entry_is_not_ready(tmp_path):
    engines, repository = engines_for(tmp_path)
    repository.add("lenet5", corrupt=True)
    with pytest.raises(NotReady, match="stored model.onnx is corrupt"):
        await engines.engine("lenet5")
    assert "corrupt" in engines.load_errors["lenet5"]
    (repository.root / "lenet5" / "convzoo.json").write_text("{not json")
    with pytest.raises(NotReady, match="convzoo.json is not valid JSON"):
        await engines.engine("lenet5")


async def test_random_init_weights_are_refused_when_configured_so(tmp_path):
    engines, repository = engines_for(tmp_path, allow_random_init=False)
    repository.add("lenet5", weights="random-init")
    with pytest.raises(ModelNotFound, match="only has random-init weights"):
        await engines.engine("lenet5")


async def test_a_backend_that_fails_to_load_says_so_without_details(tmp_path):
    def broken(*args):
        raise OSError("/secret/path/model.onnx: no such file")

    engines, repository = engines_for(tmp_path, broken)
    repository.add("lenet5")
    with pytest.raises(NotReady) as caught:
        await engines.engine("lenet5")
    assert "failed to load (OSError)" in caught.value.message
    assert "/secret" not in caught.value.message


async def test_with_lazy_loading_off_only_start_up_models_load_after_start(tmp_path):
    engines, repository = engines_for(tmp_path, lazy_load=False)
    repository.add("lenet5")
    repository.add("efficientnet_lite0")
    try:
        await engines.engine("lenet5")
        engines.started = True
        with pytest.raises(NotReady, match="lazy loading is off"):
            await engines.engine("efficientnet_lite0")
    finally:
        await engines.close()


async def test_the_least_recently_used_idle_engine_is_evicted_but_never_the_default(tmp_path):
    # Each fake graph counts 32 MB in the estimate: a 70 MB budget holds two.
    engines, repository = engines_for(tmp_path, memory_budget_mb=70)
    for name in ("lenet5", "efficientnet_lite0", "efficientnet_lite1"):
        repository.add(name)
    try:
        await engines.engine("lenet5")  # the default model
        await engines.engine("efficientnet_lite0")
        await engines.engine("efficientnet_lite1")
        assert set(engines.loaded) == {"lenet5", "efficientnet_lite1"}
    finally:
        await engines.close()
