"""Both backends on real stored models: PyTorch agrees with ONNX Runtime (the default); ONNX
Runtime's provider choice, fallback and I/O binding on this machine's providers."""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from skimage import data

from model_store import registry, repository
from model_store.transforms import preprocess
from service.core import nvml
from service.core.backends import OnnxRuntimeBackend, TorchBackend, backend_for, create_backend
from service.core.config import TensorRTConfig, load_config
from service.core.errors import DeviceUnavailable


@pytest.mark.parametrize("name", ["efficientnet_lite0", "lenet5"])
def test_pytorch_backend_matches_onnxruntime_with_real_weights(name):
    stored = repository.find(name)
    assert stored is not None, f"{name} not in the store: run `make models`"
    spec = registry.get(name)
    image = Image.fromarray(data.chelsea()) if spec.input.channels == 3 else Image.fromarray(
        data.camera())
    batch = np.stack([preprocess(image, spec.input)] * 3)
    onnx = OnnxRuntimeBackend(stored, device="cpu").run_outputs(batch)
    torch_outputs = TorchBackend(stored, device="cpu").run_outputs(batch)
    assert onnx.logits.shape == torch_outputs.logits.shape == (3, spec.num_classes)
    np.testing.assert_allclose(torch_outputs.logits, onnx.logits, rtol=1e-3, atol=1e-3)
    assert (onnx.logits.argmax(1) == torch_outputs.logits.argmax(1)).all()
    assert onnx.features.shape == (3, stored.record["features_dim"])
    np.testing.assert_allclose(torch_outputs.features, onnx.features, rtol=1e-3, atol=1e-3)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("tensorflow", repository.find("lenet5"), "cpu", None)


def test_cpu_machine_uses_the_cpu_provider():
    backend = OnnxRuntimeBackend(repository.find("lenet5"), device="auto")
    assert backend.device in ("cpu", "cuda")
    if backend.device == "cpu":
        assert backend.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("spinning", [False, True])
def test_intra_op_spinning_follows_the_configuration(spinning):
    backend = create_backend("onnxruntime", repository.find("lenet5"), "cpu", 2, spinning)
    options = backend.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == (
        "1" if spinning else "0")
    assert options.intra_op_num_threads == 2
    assert backend.run(np.zeros((2, 1, 32, 32), np.float32)).shape == (2, 10)


def _photo_batch(name: str, copies: int) -> np.ndarray:
    spec = registry.get(name)
    photos = ([data.chelsea(), data.coffee(), data.astronaut()] if spec.input.channels == 3
              else [data.camera()])
    tensors = [preprocess(Image.fromarray(photo), spec.input) for photo in photos]
    return np.stack((tensors * copies)[:copies])


@pytest.mark.parametrize("name", ["efficientnet_lite0", "lenet5"])
def test_io_binding_gives_exactly_what_session_run_gives(name):
    stored = repository.find(name)
    bound = OnnxRuntimeBackend(stored, device="cpu", io_binding=True)
    plain = OnnxRuntimeBackend(stored, device="cpu", io_binding=False)
    assert bound.execution.io_binding and not plain.execution.io_binding
    earlier = {}
    for size in (1, 3, 5, 3, 1):  # sizes come back: their bound buffers are reused
        batch = _photo_batch(name, size)
        logits = bound.run(batch)
        expected_logits, expected_features = plain.session.run(None, {"input": batch})
        np.testing.assert_array_equal(logits, expected_logits)
        # Both outputs of one run, bound or not (what classify and embed share).
        for outputs in (bound.run_outputs(batch), plain.run_outputs(batch)):
            np.testing.assert_array_equal(outputs.logits, expected_logits)
            np.testing.assert_array_equal(outputs.features, expected_features)
        earlier.setdefault(size, (logits, logits.copy()))
    # A later batch of the same size must not overwrite results already handed out.
    for kept, copy in earlier.values():
        np.testing.assert_array_equal(kept, copy)


def test_io_binding_keeps_concurrent_instances_apart():
    """Instances run batches at the same time on one session: buffers are per thread."""
    stored = repository.find("lenet5")
    backend = OnnxRuntimeBackend(stored, device="cpu", threads=1, io_binding=True)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, 1, 32, 32)).astype(np.float32) for _ in range(8)]
    expected = [backend.session.run(None, {"input": b})[0] for b in batches]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(5):
            results = list(pool.map(backend.run, batches))
            for got, want in zip(results, expected, strict=True):
                np.testing.assert_array_equal(got, want)


def _no_gpu_here() -> bool:
    return not nvml.read_gpus()


@pytest.mark.skipif(not _no_gpu_here(), reason="checks the fallback on a machine with no GPU")
def test_auto_on_a_machine_without_gpu_falls_back_and_says_why(tmp_path):
    original = repository.find("lenet5")
    folder = tmp_path / "lenet5"  # a copy with no fp16 variant yet
    shutil.copytree(original.path, folder, ignore=shutil.ignore_patterns("model.fp16.*"))
    stored = SimpleNamespace(path=folder, record=original.record,
                             onnx_path=folder / "model.onnx")
    backend = OnnxRuntimeBackend(stored, device="auto", precision="fp16")
    info = backend.execution
    assert info.device_asked == "auto" and info.device == "cpu"
    assert info.providers == ("CPUExecutionProvider",)
    assert "CUDAExecutionProvider" in info.providers_asked
    assert info.precision_asked == "fp16" and info.precision == "fp32"
    assert info.model_file == "model.onnx"
    assert "CUDAExecutionProvider" in info.fallback and "fp16" in info.fallback
    assert not (stored.path / "model.fp16.onnx").exists()  # no variant for a GPU not there


@pytest.mark.skipif(not _no_gpu_here(), reason="checks the refusal on a machine with no GPU")
def test_device_cuda_without_gpu_is_refused():
    with pytest.raises(DeviceUnavailable, match="device: cuda is configured"):
        OnnxRuntimeBackend(repository.find("lenet5"), device="cuda")


def test_backend_for_takes_every_setting_from_the_configuration(tmp_path):
    config = load_config(tmp_path / "none.yaml", device="cpu", threads=1, io_binding=False,
                         intra_op_spinning=True)
    backend = backend_for(config, repository.find("lenet5"), "lenet5")
    assert backend.execution.io_binding is False and backend._bound is None
    options = backend.session.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert backend.execution.providers_asked == ("CPUExecutionProvider",)
    assert backend.execution.fallback is None


def test_tensorrt_gets_the_model_shape_and_max_batch_as_its_profile(tmp_path):
    """What the backend would hand the TensorRT provider (no TensorRT runs here)."""
    stored = repository.find("efficientnet_lite2")
    settings = TensorRTConfig(cache_dir=str(tmp_path / "trt"))
    name, options = OnnxRuntimeBackend._with_options(
        "TensorrtExecutionProvider", stored, True, settings, 24)
    assert name == "TensorrtExecutionProvider"
    assert options["trt_profile_min_shapes"] == "input:1x3x260x260"
    assert options["trt_profile_max_shapes"] == "input:24x3x260x260"
    assert options["trt_fp16_enable"] is True
    assert options["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert (tmp_path / "trt").is_dir()  # made ready for TensorRT to write into


def test_an_images_answer_does_not_depend_on_the_batch_it_ran_in():
    """`preferred_batch_size: auto` may run a photo alone or among others: the same answer
    either way, on every real photo (service/core/layout.py)."""
    from tools.photos import real_photos

    stored = repository.find("efficientnet_lite0")
    spec = registry.get("efficientnet_lite0")
    photos = [preprocess(image, spec.input) for image in real_photos().values()]
    backend = OnnxRuntimeBackend(stored, device="cpu", threads=1)
    together = backend.run(np.stack(photos))
    alone = np.concatenate([backend.run(photo[None]) for photo in photos])

    def softmax(logits):
        e = np.exp(logits - logits.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    np.testing.assert_allclose(softmax(alone), softmax(together), atol=1e-5)
    assert (np.argsort(-alone, 1)[:, :5] == np.argsort(-together, 1)[:, :5]).all()
