"""Saving variants into BentoML's model store, with their ONNX export and metadata: the
model repository's import side (its read side, torch-free, is `model_store.repository`).

An import builds the variant, loads the state dict strictly, computes params and mult-adds,
exports ONNX with a dynamic batch axis and two outputs, `logits` then `features`
(`model_store.outputs`), and checks that ONNX Runtime and PyTorch agree on both, on real
photos, before anything is saved. The stored model holds `model.onnx`,
`weights.safetensors` and `convzoo.json` (the record every response's `weights` field is
drawn from). Random weights are only ever stored when asked for, and are then marked
`random-init` in that record.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from model_store.features import FinalLayer, with_features
from model_store.outputs import LOGITS, OUTPUTS
from model_store.profiling import profile
from model_store.repository import PRETRAINED, RANDOM_INIT, RECORD_FILE, StoreError
from model_store.specs import ModelSpec
from model_store.transforms import preprocess
from model_store.weights import sha256_of

ONNX_OPSET = 17
# fp32 ORT vs PyTorch on the same graph: differences stay far below this on logits.
PARITY_TOLERANCE = 1e-3


def parity_images(spec: ModelSpec) -> list[Image.Image]:
    """Real inputs for the ONNX-vs-PyTorch check: photos, or digits for LeNet-5."""
    if spec.labels == "digits":
        from model_store.training.lenet5 import digits_as_images

        images, _ = digits_as_images()
        return images[:4]
    from skimage import data

    return [Image.fromarray(data.chelsea()), Image.fromarray(data.coffee())]


def export_onnx(model: torch.nn.Module, spec: ModelSpec, path: Path) -> FinalLayer:
    """Export `logits` and `features` (model_store.outputs), logits first; returns the layer
    whose input the features are."""
    exportable = with_features(model, spec)
    example = torch.zeros(1, spec.input.channels, spec.input.size, spec.input.size)
    torch.onnx.export(
        exportable,
        (example,),
        str(path),
        dynamo=False,  # the TorchScript exporter handles every registry model in seconds
        input_names=["input"],
        # Serving reads output 0 by position: logits must stay first (model_store.outputs).
        output_names=list(OUTPUTS),
        dynamic_axes={"input": {0: "batch"}, **{name: {0: "batch"} for name in OUTPUTS}},
        opset_version=ONNX_OPSET,
    )
    return exportable.final


def check_parity(model: torch.nn.Module, spec: ModelSpec, onnx_path: Path) -> float:
    """ONNX Runtime against PyTorch on real inputs, on every output the graph has (a graph
    stored before the features output has logits only); the largest |diff|."""
    import onnxruntime as ort

    batch = np.stack([preprocess(img, spec.input) for img in parity_images(spec)])
    with torch.no_grad():
        expected = dict(zip(OUTPUTS, (t.numpy() for t in with_features(model, spec)(
            torch.from_numpy(batch))), strict=True))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    if names not in ([LOGITS], list(OUTPUTS)):
        raise StoreError(f"{spec.name}: {onnx_path.name} has outputs {names}, expected "
                         f"{list(OUTPUTS)}")
    largest = 0.0
    for name, got in zip(names, session.run(names, {"input": batch}), strict=True):
        wanted = expected[name]
        diff = float(np.max(np.abs(got - wanted)))
        if diff > PARITY_TOLERANCE * max(1.0, float(np.max(np.abs(wanted)))):
            raise StoreError(f"{spec.name}: ONNX Runtime and PyTorch disagree on real inputs "
                             f"(output {name}, max |diff| {diff})")
        largest = max(largest, diff)
        if name == LOGITS and not np.array_equal(got.argmax(1), wanted.argmax(1)):
            raise StoreError(f"{spec.name}: ONNX Runtime and PyTorch pick different classes")
    return largest


def save(
    spec: ModelSpec,
    state_dict: dict[str, torch.Tensor] | None,
    provenance: dict[str, Any],
    *,
    status: str | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Build, load, export, check and store one variant; returns the BentoML tag.

    `state_dict=None` stores randomly initialised weights, marked `random-init`. A user
    model (model_store.finetune) passes a spec of its own making, `status=FINE_TUNED` (from
    model_store.repository) and its model card in `extra`, merged into the record.
    """
    import bentoml
    from safetensors.torch import save_file

    model = spec.build().eval()
    if state_dict is not None:
        state_dict = {k: v for k, v in state_dict.items()
                      if not k.startswith(spec.training_only_weights or ("\0",))}
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
        if missing or unexpected:
            raise StoreError(
                f"{spec.name}: the weights do not fit the architecture: "
                f"missing {list(missing)[:5]}{'...' if len(missing) > 5 else ''}, "
                f"unexpected {list(unexpected)[:5]}{'...' if len(unexpected) > 5 else ''}"
            )
    status = status or (PRETRAINED if state_dict is not None else RANDOM_INIT)
    figures = profile(spec, model)
    exportable = with_features(model, spec)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        weights_path = Path(tmp) / "weights.safetensors"
        final = export_onnx(exportable, spec, onnx_path)
        parity = check_parity(exportable, spec, onnx_path)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights_path))
        record = {
            "name": spec.name,
            "family": spec.family,
            "weights": status,
            "provenance": provenance,
            "input": asdict(spec.input),
            "labels": spec.labels,
            "num_classes": spec.num_classes,
            "outputs": list(OUTPUTS),
            "features_dim": final.dim,
            "features_layer": final.path,
            "params_m": round(figures["params_m"], 4),
            "mult_adds_m": round(figures["mult_adds_m"], 2),
            "onnx_parity_max_abs_diff": parity,
            "onnx_opset": ONNX_OPSET,
            "files": {p.name: sha256_of(p) for p in (onnx_path, weights_path)},
            **(extra or {}),
        }
        with bentoml.models.create(
            spec.name,
            labels={"family": spec.family, "weights": status},
            metadata=_without_none(json.loads(json.dumps(record))),
            module="convzoo",
        ) as stored:
            target = Path(stored.path)
            for produced in (onnx_path, weights_path):
                shutil.copyfile(produced, target / produced.name)
            (target / RECORD_FILE).write_text(json.dumps(record, indent=2))
        return str(stored.tag)


def _without_none(value: Any) -> Any:
    """BentoML metadata takes basic types only (no None); the full record is convzoo.json."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value
