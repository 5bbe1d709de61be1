"""Training LeNet-5 on scikit-learn's bundled digits, and scoring it on the held-out split.

Owns the dataset as images (`digits_as_images`), the fixed stratified 80/20 split
(`held_out_split`, `held_out_set`), the training run that gives the same bits on any x86-64
machine (`train_lenet5`) and the held-out evaluation of a state dict (`evaluate`). Every
input goes through `model_store.transforms.preprocess` with `LENET5_INPUT`, the function the
serving path uses, so the accuracy measured here is the accuracy of the served model on
these images. The digits ship inside scikit-learn, so training needs no network.

`python -m model_store.training.lenet5 --out DIR` is the training process itself (what
`train_lenet5` starts); it writes `weights.safetensors` and `report.json` into DIR.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn
from tqdm import tqdm

from model_store.architectures.lenet5 import LENET5_INPUT, LeNet5
from model_store.transforms import preprocess

DATASET = "sklearn.datasets.load_digits"
HELD_OUT_FRACTION = 0.2
SPLIT_RANDOM_STATE = 0
DEFAULT_EPOCHS = 30
BATCH_SIZE = 32
LEARNING_RATE = 2e-3
# Up to 2 of 32 pixels, half a pixel of the 8x8 original, without pushing strokes out of the
# frame. 1437 training images are few: without the shifts held-out accuracy was ~97.3% (seeds
# 0-4), with them ~99%.
MAX_SHIFT = 2

# Read once, when torch and MKL start, so they are set for a process of their own: without
# them the same seed gave four different sets of weights on one AMD EPYC (torch's AVX-512
# kernels, its AVX2 ones, oneDNN limited to AVX2, MKL's CNR mode; held-out accuracy 0.98611
# to 0.98889), and a machine with other vector units picks other kernels by itself.
REPRODUCIBLE_ENVIRONMENT = {
    # torch's own kernels (Adam, pooling, softmax): the plain C++ build, not the AVX2 or
    # AVX-512 variant the CPU would select.
    "ATEN_CPU_CAPABILITY": "default",
    # MKL's matrix products (the convolutions and linear layers): Conditional Numerical
    # Reproducibility, one code path on every x86 CPU, and results independent of alignment.
    "MKL_CBWR": "COMPATIBLE,STRICT",
    # One thread: the order of a parallel reduction, and so its rounding, follows the count.
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
TRAINING_THREADS = 1
# The libraries whose versions decide the weights: the preprocessing (Pillow's resize, numpy),
# the split (scikit-learn), the training (torch).
RECORDED_VERSIONS = ("torch", "numpy", "scikit-learn", "pillow")


def digits_as_images() -> tuple[list[Image.Image], np.ndarray]:
    """The 1797 8x8 digits as 8-bit grayscale images, white ink on black, and their labels."""
    digits = load_digits()
    # load_digits stores ink as 0..16 counts; 16 -> 255 keeps the full 8-bit range.
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    images = [Image.fromarray(p) for p in pixels]  # 2-D uint8 -> mode "L"
    return images, digits.target.astype(np.int64)


def held_out_split() -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices into `digits_as_images()`, stratified 80/20, always the same."""
    _, labels = digits_as_images()
    train_idx, held_out_idx = train_test_split(
        np.arange(len(labels)),
        test_size=HELD_OUT_FRACTION,
        stratify=labels,
        random_state=SPLIT_RANDOM_STATE,
    )
    return train_idx, held_out_idx


def held_out_set() -> tuple[list[Image.Image], np.ndarray]:
    """The held-out images and labels, for tools that score a served model on them."""
    images, labels = digits_as_images()
    _, held_out_idx = held_out_split()
    return [images[i] for i in held_out_idx], labels[held_out_idx]


def _model_inputs(images: list[Image.Image]) -> torch.Tensor:
    return torch.from_numpy(np.stack([preprocess(image, LENET5_INPUT) for image in images]))


def _background_value() -> float:
    """The normalised value of a black pixel, which shifted-in borders must take."""
    return (0.0 - LENET5_INPUT.mean[0]) / LENET5_INPUT.std[0]


def _random_shift(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by up to MAX_SHIFT pixels in x and y, filling with background."""
    n, _, h, w = batch.shape
    padded = F.pad(batch, (MAX_SHIFT,) * 4, value=_background_value())
    offsets = torch.randint(0, 2 * MAX_SHIFT + 1, (n, 2), generator=generator)
    return torch.stack(
        [padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets.tolist())]
    )


def _accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        predictions = model(inputs).argmax(dim=1)
    # Counted in integers so the figure is exactly correct/total, not a float32 mean.
    return int((predictions == labels).sum()) / len(labels)


def _held_out_tensors() -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = held_out_set()
    return _model_inputs(images), torch.from_numpy(labels)


def evaluate(state_dict: dict[str, torch.Tensor]) -> float:
    """Held-out accuracy (0..1) of LeNet-5 weights, inputs preprocessed as when served."""
    model = LeNet5()
    model.load_state_dict(state_dict)
    inputs, labels = _held_out_tensors()
    return _accuracy(model, inputs, labels)


@contextlib.contextmanager
def reproducible_torch() -> Iterator[None]:
    """One thread, deterministic algorithms, and neither oneDNN nor NNPACK for convolutions
    (both pick kernels, blockings and thread splits by CPU); restored on exit."""
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
             torch.backends.mkldnn.enabled)
    torch.set_num_threads(TRAINING_THREADS)
    torch.use_deterministic_algorithms(True)
    torch.backends.mkldnn.enabled = False
    try:
        with torch.backends.nnpack.flags(enabled=False):
            yield
    finally:
        threads, deterministic, mkldnn = saved
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        torch.backends.mkldnn.enabled = mkldnn


def _fit(seed: int, epochs: int, progress: bool) -> tuple[dict[str, torch.Tensor], dict]:
    """The training run itself, in this process (see `train_lenet5` for the one to call)."""
    images, labels = digits_as_images()
    train_idx, held_out_idx = held_out_split()
    train_inputs = _model_inputs([images[i] for i in train_idx])
    train_labels = torch.from_numpy(labels[train_idx])

    with reproducible_torch():
        torch.manual_seed(seed)
        generator = torch.Generator().manual_seed(seed)
        model = LeNet5()
        optimiser = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        steps_per_epoch = -(-len(train_idx) // BATCH_SIZE)
        # Cosine decay to zero: the last epochs settle the weights instead of bouncing at a
        # fixed step size, so the final epoch is a good one without peeking at held-out data.
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            optimiser, T_max=epochs * steps_per_epoch
        )
        bar = tqdm(range(epochs), desc="lenet5", unit="epoch", disable=not progress)
        for _ in bar:
            model.train()
            order = torch.randperm(len(train_idx), generator=generator)
            total_loss = 0.0
            for start in range(0, len(order), BATCH_SIZE):
                batch = order[start : start + BATCH_SIZE]
                inputs = _random_shift(train_inputs[batch], generator)
                loss = F.cross_entropy(model(inputs), train_labels[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total_loss += loss.item() * len(batch)
            bar.set_postfix(loss=f"{total_loss / len(order):.4f}")

        held_out_images = [images[i] for i in held_out_idx]
        accuracy = _accuracy(
            model, _model_inputs(held_out_images), torch.from_numpy(labels[held_out_idx])
        )

    state_dict = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
    report = {
        "held_out_accuracy": accuracy,
        "held_out_size": len(held_out_idx),
        "train_size": len(train_idx),
        "epochs": epochs,
        "seed": seed,
        "dataset": DATASET,
        "split": f"stratified 80/20, random_state={SPLIT_RANDOM_STATE}",
        "data_order": "torch.randperm each epoch and the shifts, from torch.Generator(seed)",
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "max_shift": MAX_SHIFT,
        "threads": TRAINING_THREADS,
        "deterministic_algorithms": True,
        "convolutions": "ATen with MKL matrix products (oneDNN and NNPACK off)",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "environment": {name: os.environ.get(name) for name in REPRODUCIBLE_ENVIRONMENT},
        "machine": platform.machine(),
        "versions": {"python": platform.python_version()}
        | {name: metadata.version(name) for name in RECORDED_VERSIONS},
    }
    return state_dict, report


def train_lenet5(
    seed: int = 0, epochs: int = DEFAULT_EPOCHS, progress: bool = False
) -> tuple[dict[str, torch.Tensor], dict]:
    """Train LeNet-5 on the 80% split; return its state dict and a report on the held-out 20%.

    The same seed gives bit-identical weights on any x86-64 machine with the same library
    versions (the report records them): initialisation, shuffling and shifts draw from seeded
    generators, and the run happens in a process of its own started with
    `REPRODUCIBLE_ENVIRONMENT`, under `reproducible_torch`. The held-out set is only scored
    at the end, never used to pick an epoch.
    """
    from safetensors.torch import load_file

    # The child imports this very code, wherever this process found it.
    project_root = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(p for p in (project_root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, **REPRODUCIBLE_ENVIRONMENT, "PYTHONPATH": python_path}
    with tempfile.TemporaryDirectory(prefix="lenet5-training-") as folder:
        command = [sys.executable, "-m", __name__, "--seed", str(seed), "--epochs", str(epochs),
                   "--out", folder] + (["--progress"] if progress else [])
        finished = subprocess.run(command, env=env, stdout=subprocess.PIPE,
                                  stderr=None if progress else subprocess.PIPE, text=True)
        if finished.returncode != 0:
            raise RuntimeError(f"LeNet-5 training failed (exit {finished.returncode}):\n"
                               f"{finished.stderr or ''}{finished.stdout}")
        state_dict = load_file(str(Path(folder) / "weights.safetensors"))
        report = json.loads((Path(folder) / "report.json").read_text())
    return state_dict, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m model_store.training.lenet5",
        description="Train LeNet-5 on the digits in this process (train_lenet5 starts it).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS)
    parser.add_argument("--out", type=Path, required=True, help="folder for the two files")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    unset = {name: value for name, value in REPRODUCIBLE_ENVIRONMENT.items()
             if os.environ.get(name) != value}
    if unset:
        parser.error(f"start with this environment (train_lenet5 does): {unset}")
    # ATEN_CPU_CAPABILITY is honoured only when the CPU has the capability asked for or more;
    # the plain build runs everywhere, so anything else here means the variable was ignored.
    if torch.backends.cpu.get_cpu_capability() != "DEFAULT":
        parser.error(f"torch runs its {torch.backends.cpu.get_cpu_capability()} kernels, "
                     "not the plain ones ATEN_CPU_CAPABILITY=default asks for")
    from safetensors.torch import save_file

    state_dict, report = _fit(args.seed, args.epochs, args.progress)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in state_dict.items()},
              str(args.out / "weights.safetensors"))
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
