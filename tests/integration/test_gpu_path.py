"""The GPU path as a real server shows it: what each model asked for and got, in
GET /models/{name}; and a GPU configured (`device: cuda`, `decode: gpu`) where none is usable
is a start-up error."""

from __future__ import annotations

import pytest

from service.core import nvml
from service.core.config import load_config
from service.core.dataplane import DataPlane
from service.core.errors import DeviceUnavailable
from service.core.requests import ClassifyRequest

pytestmark = pytest.mark.integration


def test_model_info_shows_what_was_asked_and_what_was_got(http):
    info = http.get("/models/lenet5").json()
    execution = info["execution"]
    assert execution["providers"] == info["providers"]
    assert execution["device_asked"] == "auto"
    assert execution["providers_asked"][-1] == "CPUExecutionProvider"
    assert execution["precision_asked"] == "fp32" and execution["precision"] == "fp32"
    assert execution["io_binding"] is True and execution["model_file"] == "model.onnx"
    if not nvml.read_gpus():
        assert execution["device"] == "cpu"
        assert execution["providers"] == ["CPUExecutionProvider"]
        assert "CUDAExecutionProvider" in execution["fallback"]  # auto fell back, and says why
    assert http.get("/models/alexnet").json()["execution"] is None  # not loaded


@pytest.mark.skipif(bool(nvml.read_gpus()), reason="checks the refusal where no GPU is usable")
@pytest.mark.parametrize("key, value", [("device", "cuda"), ("decode", "gpu")])
async def test_a_configured_gpu_that_is_not_usable_fails_start_up(tmp_path, key, value):
    """The core's start-up raises (BentoML then logs "Application startup failed" and never
    turns ready), where a model that merely failed to load would be logged and served on."""
    config = load_config(tmp_path / "none.yaml", default_model="lenet5",
                         startup_models=("lenet5",), **{key: value})
    plane = DataPlane(config)
    try:
        with pytest.raises(DeviceUnavailable, match=f"{key}: {value} is configured"):
            await plane.start()
        assert not plane.ready
    finally:
        await plane.close()


async def test_requests_go_through_the_gpu_preprocessor_when_there_is_one(tmp_path, cat_jpeg,
                                                                          coffee_jpeg):
    """The core's request path with the GPU preprocessor in place (run on torchvision's CPU
    device here): the same classes as the CPU path, and the same refusals."""
    from service.core.errors import InvalidImage
    from service.core.gpu_decode import GpuJpegPreprocessor

    config = load_config(tmp_path / "none.yaml", default_model="efficientnet_lite0",
                         startup_models=("efficientnet_lite0",))
    plane = DataPlane(config)
    photos = ClassifyRequest(images=(cat_jpeg, coffee_jpeg), top_k=3)
    try:
        await plane.start()
        assert plane.runner.gpu_jpeg is None  # decode auto, no model on a GPU here
        on_cpu = await plane.classify(photos)
        plane.runner.gpu_jpeg = GpuJpegPreprocessor("cpu", min_pixels=0)
        on_gpu_path = await plane.classify(photos)
        for cpu_result, gpu_result in zip(on_cpu, on_gpu_path, strict=True):
            assert ([p.index for p in gpu_result.predictions]
                    == [p.index for p in cpu_result.predictions])
            assert gpu_result.timing_ms["decode"] > 0
        with pytest.raises(InvalidImage, match=r"images\[1\]: not an image file"):
            await plane.classify(ClassifyRequest(images=(cat_jpeg, b"definitely not a JPEG")))
    finally:
        await plane.close()
