"""Both backends on real stored models: PyTorch agrees with ONNX Runtime (the default)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from model_store import registry, store
from model_store.transforms import preprocess
from service.core.backends import OnnxRuntimeBackend, TorchBackend, create_backend


@pytest.mark.parametrize("name", ["efficientnet_lite0", "lenet5"])
def test_pytorch_backend_matches_onnxruntime_with_real_weights(name):
    stored = store.find(name)
    assert stored is not None, f"{name} not in the store: run `make models`"
    spec = registry.get(name)
    image = Image.fromarray(data.chelsea()) if spec.input.channels == 3 else Image.fromarray(
        data.camera())
    batch = np.stack([preprocess(image, spec.input)] * 3)
    onnx = OnnxRuntimeBackend(stored, device="cpu").run(batch)
    torch_logits = TorchBackend(stored, device="cpu").run(batch)
    assert onnx.shape == torch_logits.shape == (3, spec.num_classes)
    np.testing.assert_allclose(torch_logits, onnx, rtol=1e-3, atol=1e-3)
    assert (onnx.argmax(1) == torch_logits.argmax(1)).all()


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("tensorflow", store.find("lenet5"), "cpu", None)


def test_cpu_machine_uses_the_cpu_provider():
    backend = OnnxRuntimeBackend(store.find("lenet5"), device="auto")
    assert backend.device in ("cpu", "cuda")
    if backend.device == "cpu":
        assert backend.providers == ["CPUExecutionProvider"]


@pytest.mark.parametrize("spinning", [False, True])
def test_intra_op_spinning_follows_the_configuration(spinning):
    backend = create_backend("onnxruntime", store.find("lenet5"), "cpu", 2, spinning)
    options = backend.session.get_session_options()
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == (
        "1" if spinning else "0")
    assert options.intra_op_num_threads == 2
    assert backend.run(np.zeros((2, 1, 32, 32), np.float32)).shape == (2, 10)
