"""The data plane end to end with a fake repository and a fake backend: real photos decoded
and preprocessed by the real pipeline, batched by the real batcher, and answered as typed
results, for every kind of request; the checks on what a request means; the metric-label
rule; deadlines. No model store, no ONNX Runtime."""

from __future__ import annotations

import time

import numpy as np
import pytest

from service.core import metrics
from service.core.config import load_config
from service.core.dataplane import DataPlane
from service.core.errors import (
    DeadlineExceeded,
    FeaturesUnavailable,
    InvalidArgument,
    ModelNotFound,
)
from service.core.requests import (
    ClassifyRequest,
    EmbedRequest,
    EnsembleRequest,
    FrontierRequest,
    MulticropRequest,
    PixelsRequest,
    SelectRequest,
    deadline_for,
)
from service.core.results import (
    EnsembleResult,
    MulticropResult,
    SelectResult,
    embeddings_to_dict,
)
from tests.fixtures.fake_models import FAKE_FEATURES_DIM, FakeBackends, FolderRepository
from tools import photos

LITE = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@pytest.fixture
def backends() -> FakeBackends:
    return FakeBackends()


@pytest.fixture
async def plane(tmp_path, backends):
    repository = FolderRepository(tmp_path / "store")
    for name in ("lenet5", *LITE):
        repository.add(name)
    repository.add("resnet18", features=False)  # stored before the features output existed
    config = load_config(tmp_path / "none.yaml", default_model="efficientnet_lite0",
                         startup_models=("efficientnet_lite0", "lenet5"),
                         batching={"max_batch_size": 16, "instances": 1, "max_delay_ms": 0},
                         ensembles={"lite-pair": {"models": list(LITE[:2])}})
    data_plane = DataPlane(config, repository, backends)
    await data_plane.start()
    yield data_plane
    await data_plane.close()


CAT, COFFEE = photos.jpeg("chelsea"), photos.jpeg("coffee")


async def test_classify_answers_each_image_from_one_batch(plane, backends):
    results = await plane.classify(ClassifyRequest(images=(CAT, COFFEE), top_k=3))
    assert [r.model for r in results] == ["efficientnet_lite0"] * 2
    assert all(len(r.predictions) == 3 and r.weights == "pretrained" for r in results)
    # The fake backend scores the colour channels' means: the photos differ in them.
    assert results[0].predictions[0].score != results[1].predictions[0].score
    assert backends.made["efficientnet_lite0"][0].batches[-1] == 2
    stages = set(results[0].timing_ms)
    assert {"decode", "preprocess", "queue", "infer", "postprocess", "total"} <= stages
    body = results[0].to_dict()
    assert body["predictions"][0] == {"index": results[0].predictions[0].index,
                                      "label": results[0].predictions[0].label,
                                      "score": results[0].predictions[0].score}


async def test_what_a_request_means_is_checked(plane):
    with pytest.raises(InvalidArgument, match="top_k must be between 1 and 1000, got 0"):
        await plane.classify(ClassifyRequest(images=(CAT,), top_k=0))
    with pytest.raises(InvalidArgument, match="no image given"):
        await plane.classify(ClassifyRequest(images=()))
    with pytest.raises(InvalidArgument, match="65 images in one request; the limit is 64"):
        await plane.classify(ClassifyRequest(images=(CAT,) * 65))
    with pytest.raises(ModelNotFound):
        await plane.classify(ClassifyRequest(images=(CAT,), model="resnet50"))


async def test_embed_gives_the_batch_features_normalised_or_not(plane, backends):
    raw = await plane.embed(EmbedRequest(images=(CAT, COFFEE), normalize=False))
    assert [r.model for r in raw] == ["efficientnet_lite0"] * 2
    assert raw[0].weights == "pretrained" and raw[0].dim == FAKE_FEATURES_DIM
    assert backends.made["efficientnet_lite0"][0].batches[-1] == 2  # one batch for both
    raw_vectors = np.stack([r.vector for r in raw])
    unit = await plane.embed(EmbedRequest(images=(CAT, COFFEE)))
    unit_vectors = np.stack([r.vector for r in unit])
    np.testing.assert_allclose(np.linalg.norm(unit_vectors, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(unit_vectors, raw_vectors / np.linalg.norm(
        raw_vectors, axis=1, keepdims=True), rtol=1e-6)
    assert not np.allclose(np.linalg.norm(raw_vectors, axis=1), 1.0)
    body = embeddings_to_dict(unit)
    assert body["dim"] == FAKE_FEATURES_DIM and body["normalized"] is True
    assert body["embeddings"] == unit_vectors.tolist() and "postprocess" in body["timing_ms"]
    with pytest.raises(InvalidArgument, match="no image given"):
        await plane.embed(EmbedRequest(images=()))
    (answered,) = await plane.answer(EmbedRequest(images=(CAT,), normalize=False))
    np.testing.assert_array_equal(answered.vector, raw_vectors[0])


async def test_embed_refuses_a_model_stored_without_features(plane, backends):
    with pytest.raises(FeaturesUnavailable,
                       match=r"re-import it with `python -m model_store pull resnet18 --force`"):
        await plane.embed(EmbedRequest(images=(CAT,), model="resnet18"))
    assert backends.made["resnet18"][0].batches == [1, 16]  # the warm-up's: refused before


async def test_embed_refuses_a_graph_that_lacks_the_features_its_record_claims(plane, backends):
    backends.made["efficientnet_lite0"][0].features_dim = None  # the run gives logits only
    with pytest.raises(FeaturesUnavailable, match="efficientnet_lite0 was stored before"):
        await plane.embed(EmbedRequest(images=(CAT,)))
    assert backends.made["efficientnet_lite0"][0].batches[-1] == 1  # refused after the run


async def test_pixels_skip_decoding_and_must_fit_the_input(plane):
    pixels = np.zeros((2, 1, 32, 32), np.float32)
    results = await plane.classify_pixels(PixelsRequest(pixels=pixels, model="lenet5"))
    assert len(results) == 2 and results[0].model == "lenet5"
    with pytest.raises(InvalidArgument, match=r"must have shape \[-1, 1, 32, 32\]"):
        await plane.classify_pixels(PixelsRequest(pixels=pixels[:, :, :8], model="lenet5"))
    pixels[0, 0, 0, 0] = np.nan
    with pytest.raises(InvalidArgument, match="NaN or infinite"):
        await plane.classify_pixels(PixelsRequest(pixels=pixels, model="lenet5"))


async def test_multicrop_runs_the_crops_as_one_batch(plane, backends):
    (result,) = await plane.multicrop(MulticropRequest(images=(CAT,), crops=10))
    assert isinstance(result, MulticropResult) and result.crops == 10
    assert backends.made["efficientnet_lite0"][0].batches[-1] == 10
    assert result.to_dict()["crops"] == 10
    with pytest.raises(InvalidArgument, match="crops must be one of 1, 5, 10, 144"):
        await plane.multicrop(MulticropRequest(images=(CAT,), crops=3))


async def test_an_ensemble_is_named_by_its_configured_name_or_ensemble(plane):
    (named,) = await plane.ensemble(EnsembleRequest(images=(CAT,), ensemble="lite-pair"))
    assert isinstance(named, EnsembleResult)
    assert named.model == named.ensemble == "lite-pair" and named.models == LITE[:2]
    assert [m.model for m in named.members] == list(LITE[:2])
    (given,) = await plane.ensemble(EnsembleRequest(images=(CAT, COFFEE)[:1], models=LITE,
                                                    weights=(1.0, 1.0, 2.0)))
    assert given.model == "ensemble" and given.ensemble is None
    assert given.member_weights == (0.25, 0.25, 0.5)
    assert given.to_dict()["members"][2]["model"] == "efficientnet_lite2"


def test_a_broken_configured_ensemble_stops_the_start(tmp_path, backends):
    config = load_config(tmp_path / "none.yaml", ensembles={
        "mixed": {"models": ["lenet5", "efficientnet_lite0"]}})
    with pytest.raises(ValueError, match="configured ensemble 'mixed': ensemble members must "
                                         "share one label set"):
        DataPlane(config, FolderRepository(tmp_path / "store"), backends)


async def test_select_answers_with_the_chosen_variant(plane):
    (result,) = await plane.select(SelectRequest(images=(CAT,), family="efficientnet_lite",
                                                 latency_budget_ms=60_000))
    assert isinstance(result, SelectResult)
    assert result.model == result.selection.chosen.name == "efficientnet_lite2"
    selection = result.to_dict()["selection"]
    assert selection["chosen"] == "efficientnet_lite2" and "actual_latency_ms" in selection
    with pytest.raises(InvalidArgument, match="give latency_budget_ms"):
        await plane.select(SelectRequest(images=(CAT,), family="efficientnet_lite"))
    with pytest.raises(InvalidArgument, match="unknown family 'nope'"):
        await plane.select(SelectRequest(images=(CAT,), family="nope", min_top1=50))
    frontier = await plane.frontier(FrontierRequest("efficientnet_lite"))
    assert frontier["frontier"] and frontier["last_selection"]["chosen"] == "efficientnet_lite2"


async def test_answer_dispatches_on_the_kind_of_request(plane):
    for request, kind in ((ClassifyRequest(images=(CAT,)), "Classification"),
                          (MulticropRequest(images=(CAT,), crops=5), "MulticropResult"),
                          (EnsembleRequest(images=(CAT,), ensemble="lite-pair"),
                           "EnsembleResult")):
        (result,) = await plane.answer(request)
        assert type(result).__name__ == kind


async def test_work_past_its_deadline_is_dropped(plane):
    with pytest.raises(DeadlineExceeded):
        await plane.classify(ClassifyRequest(images=(CAT,), deadline=time.monotonic() - 1))
    assert deadline_for(None, None) is None
    assert deadline_for(5.0, 0.5) - time.monotonic() <= 0.5


def requests_counted(label: str, endpoint: str, outcome: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "convzoo_requests_total", {"model": label, "endpoint": endpoint, "outcome": outcome}
    ) or 0.0


async def test_the_metric_label_is_the_model_that_ran(plane):
    before = requests_counted("efficientnet_lite2", "unit", "ok")
    async with plane.observe("unit", "select") as observation:
        observation.ran(await plane.select(SelectRequest(
            images=(CAT,), family="efficientnet_lite", latency_budget_ms=60_000)))
    assert requests_counted("efficientnet_lite2", "unit", "ok") == before + 1
    assert plane.metric_label("lite-pair") == "lite-pair"
    assert plane.metric_label(None) == "efficientnet_lite0"
    assert plane.metric_label("made-up-by-a-client") == "unknown"
    before = requests_counted("unknown", "unit", "model_not_found")
    with pytest.raises(ModelNotFound):
        async with plane.observe("unit", "nope"):
            await plane.classify(ClassifyRequest(images=(CAT,), model="nope"))
    assert requests_counted("unknown", "unit", "model_not_found") == before + 1


async def test_the_catalogue_describes_and_indexes_the_models(plane):
    assert plane.ready and plane.model_ready("lenet5") and not plane.model_ready("resnet50")
    index = {entry.name: entry for entry in plane.repository_index()}
    assert index["lenet5"].state == "READY"
    assert index["resnet50"].reason == "no weights in the model store"
    assert index["efficientnet_lite2"].reason == "not loaded; loads on first request"
    signature = plane.signature(None)
    assert signature.name == "efficientnet_lite0" and signature.platform == "fake"
    info = plane.model_status("lenet5").to_dict()
    assert info["loaded"] and info["backend"] == "fake" and info["weights"] == "pretrained"


async def test_user_models_are_listed_served_with_their_classes_and_found_after_start(
        tmp_path, backends):
    repository = FolderRepository(tmp_path / "store")
    repository.add("efficientnet_lite0")
    repository.add_user_model("pets", "efficientnet_lite0", ("cat", "dog", "fish"))
    config = load_config(tmp_path / "none.yaml", default_model="efficientnet_lite0",
                         startup_models=("efficientnet_lite0",),
                         batching={"max_batch_size": 4, "instances": 1, "max_delay_ms": 0})
    plane = DataPlane(config, repository, backends)
    await plane.start()
    try:
        listed = {status.name: status.to_dict() for status in plane.models()}
        assert listed["pets"]["weights"] == "fine-tuned"
        assert listed["pets"]["classes"] == ["cat", "dog", "fish"]
        assert listed["pets"]["family"] == "efficientnet_lite"
        assert listed["pets"]["input"]["size"] == 224 and not listed["pets"]["loaded"]
        assert listed["efficientnet_lite0"]["classes"] is None
        index = {entry.name: entry for entry in plane.repository_index()}
        assert index["pets"].reason == "not loaded; loads on first request"
        (result,) = await plane.classify(ClassifyRequest(images=(CAT,), model="pets", top_k=3))
        assert result.weights == "fine-tuned"
        assert sorted(p.label for p in result.predictions) == ["cat", "dog", "fish"]
        assert plane.metric_label("pets") == "pets"
        (cropped,) = await plane.multicrop(MulticropRequest(images=(CAT,), model="pets",
                                                            crops=5))
        assert {p.label for p in cropped.predictions} <= {"cat", "dog", "fish"}
        assert plane.signature("pets").weights == "fine-tuned"
        # Stored after the start: unknown to the table, found in the store on first request.
        assert plane.metric_label("birds") == "unknown"
        repository.add_user_model("birds", "efficientnet_lite0", ("owl", "tit"))
        (result,) = await plane.classify(ClassifyRequest(images=(CAT,), model="birds"))
        assert {p.label for p in result.predictions} == {"owl", "tit"}
        assert "birds" in [status.name for status in plane.models()]
        # Ensembles of user models need the same classes, as registry members need one label
        # set.
        repository.add_user_model("pets2", "efficientnet_lite0", ("cat", "dog", "fish"))
        (combined,) = await plane.ensemble(EnsembleRequest(images=(CAT,),
                                                            models=("pets", "pets2")))
        assert {p.label for p in combined.predictions} <= {"cat", "dog", "fish"}
        with pytest.raises(InvalidArgument):
            await plane.ensemble(EnsembleRequest(images=(CAT,), models=("pets", "birds")))
        with pytest.raises(ModelNotFound):
            await plane.classify(ClassifyRequest(images=(CAT,), model="nobody"))
    finally:
        await plane.close()


async def test_a_store_that_cannot_be_listed_does_not_stop_the_start(tmp_path, backends):
    """BentoML's listing fails on one damaged model.yaml: the service still starts, and
    user models are still found one by one on their first request."""
    from model_store.repository import BrokenStoreEntry

    class Unlistable(FolderRepository):
        def user_models(self):
            raise BrokenStoreEntry("the store's user models cannot be listed: model.yaml ...")

    repository = Unlistable(tmp_path / "store")
    repository.add("efficientnet_lite0")
    repository.add_user_model("pets", "efficientnet_lite0", ("cat", "dog"))
    config = load_config(tmp_path / "none.yaml", default_model="efficientnet_lite0",
                         startup_models=("efficientnet_lite0",),
                         batching={"max_batch_size": 4, "instances": 1, "max_delay_ms": 0})
    plane = DataPlane(config, repository, backends)
    await plane.start()
    try:
        assert plane.ready and "pets" not in [s.name for s in plane.models()]
        (result,) = await plane.classify(ClassifyRequest(images=(CAT,), model="pets"))
        assert {p.label for p in result.predictions} == {"cat", "dog"}
    finally:
        await plane.close()
