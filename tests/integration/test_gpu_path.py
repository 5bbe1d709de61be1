"""The GPU path as a real server shows it: what each model asked for and got, in
GET /models/{name}; and a GPU configured (`device: cuda`, `decode: gpu`) where none is usable
is a start-up error."""

from __future__ import annotations

import pytest

from service.core import nvml
from service.core.config import load_config
from service.core.errors import DeviceUnavailable
from service.core.inference import InferenceCore

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
    core = InferenceCore(config)
    try:
        with pytest.raises(DeviceUnavailable, match=f"{key}: {value} is configured"):
            await core.start()
        assert not core.ready
    finally:
        await core.close()
