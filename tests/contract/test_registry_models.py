"""Every registry entry, built for real: output shape, published params/mult-adds, ONNX parity.

These use random weights (the figures and shapes do not depend on them), except where the
test name says otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model_store import registry
from model_store.profiling import count_mult_adds, count_params
from model_store.store import check_parity, export_onnx

ALL = sorted(registry.all_specs())


def _tolerance_ok(computed: float, published: float) -> bool:
    """Within 2%, or equal at the precision the figure was published with."""
    text = f"{published}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    return (abs(computed - published) <= 0.02 * published
            or round(computed, decimals) == round(published, decimals))


@pytest.fixture(scope="module", params=ALL)
def built(request):
    spec = registry.get(request.param)
    torch.manual_seed(0)
    return spec, spec.build().eval()


def test_random_weights_output_shape(built):
    spec, model = built
    x = torch.randn(2, spec.input.channels, spec.input.size, spec.input.size)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, spec.num_classes)


def test_params_and_mult_adds_match_published(built):
    spec, model = built
    if spec.published is None:
        pytest.skip(f"{spec.name}: nothing published (trained by this project)")
    params_m = count_params(model) / 1e6
    if spec.published.params_m is not None:
        assert _tolerance_ok(params_m, spec.published.params_m), (
            f"{spec.name}: {params_m:.3f}M params vs published {spec.published.params_m}M")
    if spec.published.mult_adds_m is not None:
        madds = count_mult_adds(model, spec.input.channels, spec.input.size) / 1e6
        assert _tolerance_ok(madds, spec.published.mult_adds_m), (
            f"{spec.name}: {madds:.1f}M mult-adds vs published {spec.published.mult_adds_m}M")


def test_random_weights_onnx_matches_pytorch(built, tmp_path):
    spec, model = built
    path = tmp_path / "model.onnx"
    export_onnx(model, spec, path)
    # check_parity raises when ORT and PyTorch differ by more than 1e-3 of the logits' scale
    # (random deep nets reach logits of 1e4-1e5) or pick different classes.
    assert check_parity(model, spec, path) >= 0.0


def test_onnx_export_has_dynamic_batch(tmp_path):
    import onnxruntime as ort

    spec = registry.get("squeezenet1_1")
    model = spec.build().eval()
    export_onnx(model, spec, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3, 7):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 224, 224)).astype(np.float32)
        assert session.run(None, {"input": x})[0].shape == (batch, 1000)
