"""fp16 variants of stored ONNX models, for the GPU providers, and their parity with fp32.

The variant is ONNX Runtime's float16 conversion of `model.onnx` (`onnxruntime.transformers.
float16`, shipped with onnxruntime-gpu; onnxconverter-common's copy of the same converter
leaves the float Casts of EfficientNet-Lite's "same" padding arithmetic typed float and makes
a graph ONNX Runtime refuses to load). Inputs and outputs stay float32, so callers see no
difference.

It is made lazily, beside `model.onnx`, the first time a model loads with `precision: fp16`,
and not at import: every store imported before this existed keeps working without a
re-import, CPU-only deployments never pay for it, and the variant is a pure function of
`model.onnx`. Its record (`model.fp16.json`) holds the digest of the `model.onnx` it was
made from and its own digest; both are checked at every load, and a variant that no longer
matches is made again. `python -m model_store.fp16 [NAME ...]` makes them ahead of time
(e.g. in an image build) and prints their parity with fp32 on real photos.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the store module imports torch; serving an fp16 variant must not
    from model_store.repository import StoredModel

log = logging.getLogger("convzoo.fp16")

FP16_FILE = "model.fp16.onnx"
FP16_RECORD = "model.fp16.json"
# scikit-image's colour photos (shipped with the package, no download) for the parity check.
PARITY_PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")


def convert(source: Path, target: Path) -> None:
    """Write the fp16 conversion of the ONNX model `source` (float32 inputs and outputs)."""
    import onnx
    from onnxruntime.transformers import float16

    converted = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(converted, str(target))


def _sha256_of(path: Path) -> str:
    from model_store.weights import sha256_of as digest  # torch-free once weights.py is

    return digest(path)


def _converter_name() -> str:
    import onnxruntime

    return f"onnxruntime.transformers.float16 (onnxruntime {onnxruntime.__version__})"


def _variant_problem(stored: StoredModel) -> str | None:
    """Why the stored fp16 variant cannot be used as it is (None: it can)."""
    path, record_path = stored.path / FP16_FILE, stored.path / FP16_RECORD
    if not path.exists() or not record_path.exists():
        return "no fp16 variant yet"
    try:
        record = json.loads(record_path.read_text())
        source, digest = record["source_sha256"], record["sha256"]
    except (ValueError, KeyError) as exc:
        return f"unreadable {FP16_RECORD}: {exc}"
    if source != stored.record["files"]["model.onnx"]:
        return "model.onnx changed since the fp16 variant was made"
    if _sha256_of(path) != digest:
        return f"{FP16_FILE} does not match its recorded digest"
    return None


def fp16_variant(stored: StoredModel) -> Path:
    """The path of the stored model's verified fp16 variant, made (again) where needed."""
    problem = _variant_problem(stored)
    if problem is None:
        return stored.path / FP16_FILE
    name = stored.record["name"]
    log.info("%s: making the fp16 variant (%s)", name, problem)
    # Written under temporary names and renamed: a reader, or a second process making the
    # same variant, never sees half a file.
    with tempfile.TemporaryDirectory(dir=stored.path, prefix=".fp16-") as tmp:
        model_tmp, record_tmp = Path(tmp) / FP16_FILE, Path(tmp) / FP16_RECORD
        convert(stored.onnx_path, model_tmp)
        record = {"source": "model.onnx", "source_sha256": _sha256_of(stored.onnx_path),
                  "sha256": _sha256_of(model_tmp), "converter": _converter_name(),
                  "keep_io_types": True}
        record_tmp.write_text(json.dumps(record, indent=2))
        os.replace(model_tmp, stored.path / FP16_FILE)
        os.replace(record_tmp, stored.path / FP16_RECORD)
    problem = _variant_problem(stored)
    if problem is not None:  # model.onnx itself differs from its import record
        raise RuntimeError(f"{name}: fp16 variant unusable after conversion: {problem}")
    return stored.path / FP16_FILE


@dataclass(frozen=True)
class Fp16Parity:
    """fp16 against fp32 on the same inputs."""
    images: int
    top1_agreement: float  # share of inputs whose top-1 class is the same
    top5_agreement: float  # share of inputs whose top-5 classes are the same set
    max_probability_change: float  # largest |p16 - p32| over every input and class
    max_logit_difference: float

    def to_dict(self) -> dict:
        return asdict(self)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def compare(fp32_logits: np.ndarray, fp16_logits: np.ndarray) -> Fp16Parity:
    """Agreement of two (n, classes) logit arrays for the same inputs."""
    if fp32_logits.shape != fp16_logits.shape:
        raise ValueError(f"shapes differ: {fp32_logits.shape} and {fp16_logits.shape}")
    a, b = fp32_logits.astype(np.float64), fp16_logits.astype(np.float64)
    k = min(5, a.shape[1])
    top5_a = np.sort(np.argsort(-a, axis=1)[:, :k], axis=1)
    top5_b = np.sort(np.argsort(-b, axis=1)[:, :k], axis=1)
    return Fp16Parity(
        images=len(a),
        top1_agreement=float(np.mean(a.argmax(1) == b.argmax(1))),
        top5_agreement=float(np.mean((top5_a == top5_b).all(axis=1))),
        max_probability_change=float(np.abs(_softmax(a) - _softmax(b)).max()),
        max_logit_difference=float(np.abs(a - b).max()),
    )


def parity_batch(stored: StoredModel) -> tuple[np.ndarray, str]:
    """Real preprocessed inputs for the model, and what they are: scikit-image's colour
    photos, or every scikit-learn digit for a digits model."""
    from PIL import Image

    from model_store import registry
    from model_store.transforms import preprocess

    spec = registry.get(stored.record["name"])
    if spec.labels == "digits":
        from model_store.training.lenet5 import digits_as_images

        images, _ = digits_as_images()
        what = f"all {len(images)} scikit-learn digits"
    else:
        from skimage import data

        images = [Image.fromarray(getattr(data, name)()) for name in PARITY_PHOTOS]
        what = "scikit-image photos " + ", ".join(PARITY_PHOTOS)
    return np.stack([preprocess(image, spec.input) for image in images]), what


def measure_parity(stored: StoredModel, providers: list | None = None,
                   batch: np.ndarray | None = None) -> Fp16Parity:
    """fp16 variant against model.onnx on real inputs, on `providers` (default: the CPU,
    where ONNX Runtime keeps fp16 weights and rounds activations to fp16 between ops but
    computes in fp32: see docs/gpu.md)."""
    import onnxruntime as ort

    providers = providers or ["CPUExecutionProvider"]
    if batch is None:
        batch, _ = parity_batch(stored)
    fp32 = ort.InferenceSession(str(stored.onnx_path), providers=providers)
    fp16 = ort.InferenceSession(str(fp16_variant(stored)), providers=providers)
    name = fp32.get_inputs()[0].name
    return compare(fp32.run(None, {name: batch})[0], fp16.run(None, {name: batch})[0])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_store.fp16",
        description="Make (or verify) the fp16 variant of stored models and print their "
                    "parity with fp32 on real inputs, on ONNX Runtime's CPU provider.")
    parser.add_argument("names", nargs="*", help="default: every model with real weights")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    from model_store import repository

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = args.names or sorted(name for name, status in repository.stored_status().items()
                                 if status == repository.PRETRAINED)
    rows = {}
    print("| model | inputs | top-1 agreement | top-5 agreement | largest probability "
          "change | largest logit difference |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in names:
        stored = repository.find(name)
        if stored is None:
            print(f"{name}: not in the model store", file=sys.stderr)
            return 1
        batch, what = parity_batch(stored)
        parity = measure_parity(stored, batch=batch)
        rows[name] = {"inputs": what, **parity.to_dict()}
        print(f"| {name} | {what} | {parity.top1_agreement:.1%} | {parity.top5_agreement:.1%}"
              f" | {parity.max_probability_change:.2e} | {parity.max_logit_difference:.3f} |",
              flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
