"""The fp16 variant of real stored models: made beside model.onnx, verified by its digests,
made again when it no longer matches, and its parity with fp32 on real inputs (ONNX
Runtime's CPU provider: fp16 weights, fp16-rounded activations, fp32 arithmetic).

Each test works on a copy of the stored model's folder, never on the shared store."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import onnx
import pytest

from model_store import repository
from model_store.fp16 import FP16_FILE, FP16_RECORD, fp16_variant, measure_parity


def stored_copy(name: str, tmp_path) -> SimpleNamespace:
    original = repository.find(name)
    assert original is not None, f"{name} not in the store: run `make models`"
    folder = tmp_path / name
    shutil.copytree(original.path, folder, ignore=shutil.ignore_patterns("model.fp16.*"))
    return SimpleNamespace(path=folder, record=original.record,
                           onnx_path=folder / "model.onnx")


def test_variant_keeps_float32_inputs_and_outputs_and_records_its_digests(tmp_path):
    stored = stored_copy("lenet5", tmp_path)
    path = fp16_variant(stored)
    assert path == stored.path / FP16_FILE
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    fp16_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16]
    assert fp16_weights, "no weight was converted to fp16"
    record = json.loads((stored.path / FP16_RECORD).read_text())
    assert record["source_sha256"] == stored.record["files"]["model.onnx"]
    assert record["keep_io_types"] is True and "onnxruntime" in record["converter"]


def test_a_verified_variant_is_reused_and_a_damaged_one_made_again(tmp_path):
    stored = stored_copy("lenet5", tmp_path)
    path = fp16_variant(stored)
    made = path.stat().st_mtime_ns
    assert fp16_variant(stored).stat().st_mtime_ns == made  # verified, not made again
    good = path.read_bytes()
    path.write_bytes(good[:-10] + b"0123456789")  # damaged on disk
    assert fp16_variant(stored).read_bytes() == good


def test_a_variant_of_another_model_onnx_is_made_again(tmp_path):
    stored = stored_copy("lenet5", tmp_path)
    fp16_variant(stored)
    record_path = stored.path / FP16_RECORD
    record = json.loads(record_path.read_text())
    record["source_sha256"] = "0" * 64  # as if model.onnx had been re-imported since
    record_path.write_text(json.dumps(record))
    fp16_variant(stored)
    assert json.loads(record_path.read_text())["source_sha256"] == (
        stored.record["files"]["model.onnx"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1",
                                  "efficientnet_lite2", "lenet5"])
def test_fp16_agrees_with_fp32_on_real_inputs(name, tmp_path):
    """Every real-weights model: the same top-1 and top-5 on scikit-image's photos (or all
    1797 digits); probabilities move by less than 1 point (measured: docs/gpu.md)."""
    parity = measure_parity(stored_copy(name, tmp_path))
    assert parity.images >= 4
    assert parity.top1_agreement == 1.0
    assert parity.top5_agreement == 1.0
    assert parity.max_probability_change < 0.01
    assert np.isfinite(parity.max_logit_difference)
