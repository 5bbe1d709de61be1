"""Provider choice from what ONNX Runtime offers and grants, and the options passed to it.

The TensorRT options are tested as what we would pass: no TensorRT runs on a CPU machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.core import nvml, providers
from service.core.config import TensorRTConfig
from service.core.errors import DeviceUnavailable, NotReady, http_status
from service.core.providers import judge_granted, plan_providers, tensorrt_options

TRT, CUDA, CPU = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                  "CPUExecutionProvider")
GPU_BUILD = [TRT, CUDA, CPU]


@pytest.mark.parametrize("device, order, available, expected", [
    ("cpu", ("tensorrt", "cuda", "cpu"), GPU_BUILD, [CPU]),
    ("auto", ("tensorrt", "cuda", "cpu"), GPU_BUILD, [TRT, CUDA, CPU]),
    ("cuda", ("cuda", "tensorrt"), GPU_BUILD, [CUDA, TRT, CPU]),  # the order is the config's
    ("auto", ("cuda", "cpu"), GPU_BUILD, [CUDA, CPU]),  # TensorRT left out
    ("auto", ("tensorrt", "cuda", "cpu"), [CPU], [CPU]),  # a CPU-only onnxruntime build
    ("auto", ("tensorrt", "cuda", "cpu"), [CUDA, CPU], [CUDA, CPU]),
])
def test_plan_asks_for_the_configured_order_among_what_onnxruntime_offers(
        device, order, available, expected):
    assert plan_providers(device, order, available) == expected


def test_cuda_with_no_gpu_provider_offered_is_refused_before_any_session():
    with pytest.raises(DeviceUnavailable, match="offers no GPU provider.*onnxruntime-gpu"):
        plan_providers("cuda", ("tensorrt", "cuda", "cpu"), [CPU])
    with pytest.raises(DeviceUnavailable, match="include no GPU provider"):
        plan_providers("cuda", ("cpu",), GPU_BUILD)


def test_unknown_provider_is_refused():
    with pytest.raises(ValueError, match="unknown providers"):
        plan_providers("auto", ("rocm", "cpu"), GPU_BUILD)


def test_granted_first_choice_is_no_fallback():
    assert judge_granted("cuda", [CUDA, CPU], [CUDA, CPU]) is None


def test_auto_falls_back_with_the_reason():
    reason = judge_granted("auto", [TRT, CUDA, CPU], [CPU], "no NVIDIA driver (NVML: x)")
    assert "got ['CPUExecutionProvider']" in reason
    assert "TensorrtExecutionProvider, CUDAExecutionProvider" in reason
    assert "no NVIDIA driver" in reason


def test_cuda_without_any_gpu_provider_granted_is_a_device_error():
    with pytest.raises(DeviceUnavailable, match="device: cuda is configured") as caught:
        judge_granted("cuda", [TRT, CUDA, CPU], [CPU])
    assert isinstance(caught.value, NotReady) and http_status(caught.value) == 503
    assert caught.value.code == "device_unavailable"


def test_cuda_that_lost_only_tensorrt_runs_with_a_reason():
    reason = judge_granted("cuda", [TRT, CUDA, CPU], [CUDA, CPU])
    assert reason is not None and "TensorrtExecutionProvider" in reason


def test_no_driver_means_no_gpu_provider_is_even_tried(monkeypatch):
    providers.usable_providers.cache_clear()
    monkeypatch.setattr(nvml, "driver_missing", lambda: "no NVIDIA driver (NVML: test)")
    try:
        usable, why = providers.usable_providers((CUDA, CPU))
    finally:
        providers.usable_providers.cache_clear()
    assert usable == (CPU,) and why == "no NVIDIA driver (NVML: test)"


def test_listed_is_not_usable_the_probe_asks_onnxruntime_for_real(monkeypatch):
    """onnxruntime-gpu lists CUDA on this machine; opening a session with it tells the truth."""
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        pytest.skip("this onnxruntime build offers no CUDA provider to probe")
    providers.usable_providers.cache_clear()
    monkeypatch.setattr(nvml, "driver_missing", lambda: None)  # as if a driver might be there
    try:
        usable, why = providers.usable_providers((CUDA, CPU))
    finally:
        providers.usable_providers.cache_clear()
    if nvml.read_gpus():  # a real GPU: the probe must find it
        assert usable == (CUDA, CPU) and why is None
    else:
        assert usable == (CPU,) and "could not create" in why


def test_tensorrt_options_cache_in_the_model_folder_with_a_batch_profile(tmp_path):
    options = tensorrt_options(TensorRTConfig(), tmp_path / "model", fp16=True,
                               input_name="input", item_shape=(3, 224, 224), max_batch=32)
    assert options["trt_engine_cache_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path / "model" / "tensorrt")
    assert options["trt_timing_cache_path"] == str(tmp_path / "model" / "tensorrt")
    assert options["trt_fp16_enable"] is True
    assert options["trt_profile_min_shapes"] == "input:1x3x224x224"
    assert options["trt_profile_opt_shapes"] == "input:32x3x224x224"
    assert options["trt_profile_max_shapes"] == "input:32x3x224x224"


def test_tensorrt_options_follow_the_configuration(tmp_path):
    settings = TensorRTConfig(engine_cache=False, timing_cache=True,
                              cache_dir=str(tmp_path / "engines"))
    options = tensorrt_options(settings, Path("/store/lenet5"), fp16=False, input_name="input",
                               item_shape=(1, 32, 32), max_batch=64)
    assert options["trt_engine_cache_enable"] is False
    assert "trt_engine_cache_path" not in options
    assert options["trt_timing_cache_path"] == str(tmp_path / "engines")
    assert options["trt_fp16_enable"] is False
    assert options["trt_profile_max_shapes"] == "input:64x1x32x32"
