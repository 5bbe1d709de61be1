"""`python -m model_store finetune` for real, in subprocesses with a model store of their own.

The store gets EfficientNet-Lite0's real weights (from its registry package, offline) and a
random-init LeNet-5 (the cheap backbone for refusals). The photo folder is crops of three
scikit-image photos, one photo per class, plus files that are not images. Each stored model
is then opened with ONNX Runtime here and checked against what its card says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model_store.finetune.dataset import digest, scan, split
from model_store.finetune.images import load_image
from model_store.transforms import preprocess
from tests.integration.test_model_store_cli import ROOT, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PHOTOS = {"cat": "chelsea", "coffee": "coffee", "rocket": "rocket"}
PER_CLASS = 8
HOLDOUT = "0.25"  # two of each class's eight held out


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("finetune") / "bentoml"
    run_cli("pull", "efficientnet_lite0", "--no-progress", home=home)
    run_cli("pull", "lenet5", "--random-init", "--no-progress", home=home)
    return home


def write_photos(root: Path) -> Path:
    """PER_CLASS random square crops of each class's photo, and two files that are not
    images (a text file, a JPEG cut short)."""
    from skimage import data

    rng = np.random.default_rng(0)
    for label, name in PHOTOS.items():
        photo = getattr(data, name)()
        height, width = photo.shape[:2]
        (root / label).mkdir(parents=True)
        for i in range(PER_CLASS):
            side = int(rng.integers(min(height, width) // 2, min(height, width)))
            top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
            crop = Image.fromarray(photo[top:top + side, left:left + side]).resize((160, 160))
            crop.save(root / label / f"{i:02d}.jpg", quality=90)
    (root / "cat" / "notes.txt").write_text("not an image")
    (root / "coffee" / "cut-short.jpg").write_bytes((root / "coffee" / "00.jpg").read_bytes()[:300])
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return write_photos(tmp_path_factory.mktemp("photos") / "data")


def write_digits(root: Path, classes: int = 3, per_class: int = 6) -> Path:
    from model_store.training.lenet5 import digits_as_images

    images, labels = digits_as_images()
    for digit in range(classes):
        (root / str(digit)).mkdir(parents=True)
        for n, index in enumerate(np.flatnonzero(labels == digit)[:per_class]):
            images[index].save(root / str(digit) / f"{n}.png")
    return root


def stored_dir(home: Path, name: str) -> Path:
    return home / "models" / name / (home / "models" / name / "latest").read_text().strip()


def finetune(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run_cli("finetune", *args, "--no-progress", home=home, check=check)


def refused(result: subprocess.CompletedProcess) -> str:
    """The one error line of a run refused as bad input."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return last


class HeldOut:
    """The held-out images of a folder, recomputed here as the card says they were chosen."""

    def __init__(self, card: dict, spec_input) -> None:
        folder = scan(Path(card["dataset"]["folder"]))
        skipped = {entry["file"] for entry in card["dataset"]["skipped"]["files"]}
        readable = [i for i in range(len(folder.files)) if folder.relative(i) not in skipped]
        labels = folder.labels[readable]
        _, held_out = split(labels, card["split"]["holdout"], card["split"]["seed"])
        self.folder, self.readable = folder, readable
        self.labels = labels[held_out]
        self.inputs = np.stack([preprocess(load_image(folder.files[readable[i]]), spec_input)
                                for i in held_out])


def run_graph(path: Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": inputs}), strict=True))


def test_finetuned_model_is_one_graph_with_the_backbones_features_and_a_true_card(home, photos):
    from safetensors.numpy import load_file

    from model_store import registry

    result = finetune(home, "photos", "--backbone", "efficientnet_lite0", "--data", str(photos),
                      "--holdout", HOLDOUT, "--augment", "1", "--json")
    card = json.loads(result.stdout)
    stored = stored_dir(home, "photos")
    record = json.loads((stored / "convzoo.json").read_text())
    assert record["model_card"] == card
    assert (record["weights"], record["labels"], record["backbone"]) == (
        "fine-tuned", "custom", "efficientnet_lite0")
    assert record["classes"] == card["classes"] == ["cat", "coffee", "rocket"]
    assert record["outputs"] == ["logits", "features"] and record["features_dim"] == 1280

    held = HeldOut(card, registry.get("efficientnet_lite0").input)
    ours = run_graph(stored / "model.onnx", held.inputs)
    backbone = run_graph(stored_dir(home, "efficientnet_lite0") / "model.onnx", held.inputs)
    assert ours["logits"].shape == (6, 3)
    # The same backbone, so the same features, and the logits are the head's on them.
    np.testing.assert_allclose(ours["features"], backbone["features"], rtol=1e-5, atol=1e-5)
    weights = load_file(str(stored / "weights.safetensors"))
    head = ours["features"] @ weights["head.weight"].T + weights["head.bias"]
    np.testing.assert_allclose(ours["logits"], head, rtol=1e-4, atol=1e-4)
    # What the card says of the held-out split is what the stored graph does on it.
    predicted = ours["logits"].argmax(axis=1)
    assert card["held_out"]["top1"] == float(np.mean(predicted == held.labels))
    assert card["held_out"]["total"] == 6
    confusion = np.zeros((3, 3), int)
    np.add.at(confusion, (held.labels, predicted), 1)
    assert card["held_out"]["confusion_matrix"] == confusion.tolist()

    assert card["backbone"]["name"] == "efficientnet_lite0"
    assert card["backbone"]["weights"] == "pretrained"
    assert card["dataset"]["digest"] == "sha256:" + digest(held.folder, held.readable)
    assert card["dataset"]["images"] == 3 * PER_CLASS
    assert card["dataset"]["skipped"]["count"] == 2
    assert sorted(s["file"] for s in card["dataset"]["skipped"]["files"]) == [
        "cat/notes.txt", "coffee/cut-short.jpg"]
    assert (card["split"]["train"], card["split"]["held_out"], card["split"]["seed"]) == (
        18, 6, 0)
    assert card["augmentation"]["views_per_training_image"] == 1
    assert set(card["frozen_backbone_top1"]) == {"without_augment", "with_augment"}
    assert card["unfreeze"] is None
    datetime.fromisoformat(card["date"])


def test_list_shows_user_models_as_fine_tuned(home, photos):
    if not (home / "models" / "photos").exists():
        finetune(home, "photos", "--backbone", "efficientnet_lite0", "--data", str(photos),
                 "--holdout", HOLDOUT)
    rows = json.loads(run_cli("list", "--json", home=home).stdout)
    (row,) = [r for r in rows if r["name"] == "photos"]
    assert (row["weights"], row["backbone"], row["classes"]) == (
        "fine-tuned", "efficientnet_lite0", ["cat", "coffee", "rocket"])
    text = run_cli("list", home=home).stdout
    line = next(line for line in text.splitlines() if line.startswith("photos "))
    assert "efficientnet_lite0" in line and line.endswith("fine-tuned")


def test_unfreeze_trains_the_last_stage_and_the_graph_stays_consistent(home, photos):
    from safetensors.numpy import load_file

    from model_store import registry

    card = json.loads(finetune(home, "photos-deeper", "--backbone", "efficientnet_lite0",
                               "--data", str(photos), "--holdout", HOLDOUT, "--unfreeze", "1",
                               "--epochs", "2", "--json").stdout)
    assert card["unfreeze"]["trained_layers"] == ["blocks.6", "conv_head", "bn2"]
    assert len(card["unfreeze"]["training_loss_per_epoch"]) == 2
    stored = stored_dir(home, "photos-deeper")
    held = HeldOut(card, registry.get("efficientnet_lite0").input)
    ours = run_graph(stored / "model.onnx", held.inputs)
    backbone = run_graph(stored_dir(home, "efficientnet_lite0") / "model.onnx", held.inputs)
    assert not np.array_equal(ours["features"], backbone["features"])  # the stage learned
    weights = load_file(str(stored / "weights.safetensors"))
    head = ours["features"] @ weights["head.weight"].T + weights["head.bias"]
    np.testing.assert_allclose(ours["logits"], head, rtol=1e-4, atol=1e-4)
    predicted = ours["logits"].argmax(axis=1)
    assert card["held_out"]["top1"] == float(np.mean(predicted == held.labels))


def test_an_existing_user_model_is_replaced_only_with_force(home, tmp_path):
    digits = write_digits(tmp_path / "digits")
    args = ("--backbone", "lenet5", "--allow-untrained", "--data", str(digits), "--holdout",
            "0.5")
    card = json.loads(finetune(home, "tiny-digits", *args, "--json").stdout)
    assert card["backbone"]["weights"] == "random-init"
    first = stored_dir(home, "tiny-digits")
    assert "'tiny-digits' exists" in refused(finetune(home, "tiny-digits", *args, check=False))
    finetune(home, "tiny-digits", *args, "--force")
    second = stored_dir(home, "tiny-digits")
    assert second != first and first.exists()  # a new version, the old one kept
    rows = json.loads(run_cli("list", "--json", home=home).stdout)
    assert [r["tag"] for r in rows if r["name"] == "tiny-digits"] == [
        f"tiny-digits:{second.name}"]


def _one_class(root: Path) -> Path:
    write_digits(root, classes=1)
    return root


def _three_images_in_a_class(root: Path) -> Path:
    write_digits(root, classes=2)
    for extra in ("3.png", "4.png", "5.png"):
        (root / "1" / extra).unlink()
    return root


def _nothing_readable(root: Path) -> Path:
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(5):
            (root / label / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return root


def _too_few_readable(root: Path) -> Path:
    write_digits(root, classes=2, per_class=5)
    for i in range(2):
        (root / "1" / f"{i}.png").write_text("not a png")
    return root


BAD_INPUTS = {
    # name: (folder maker, arguments, what the error line says)
    "one class": (_one_class, (), "1 class folder(s) (0); a classifier needs at least two"),
    "too few images": (_three_images_in_a_class, (), "too few files to split: '1' has 3"),
    "nothing readable": (_nothing_readable, (), "none of the 10 files could be decoded"),
    "too few readable": (_too_few_readable, (), "too few readable images to split: '1' has 3"),
    "untrained backbone": (write_digits, ("--backbone", "lenet5"),
                           "has random-init weights, not real ones"),
    "registry name": (write_digits, ("--name", "resnet50"), "'resnet50' is a registry model"),
    "bad name": (write_digits, ("--name", "My Digits"), "use lowercase letters, digits"),
    "unknown backbone": (write_digits, ("--backbone", "resnet9000"),
                         "unknown model 'resnet9000'"),
    "backbone not stored": (write_digits, ("--backbone", "resnet18"),
                            "backbone resnet18 is not in the model store"),
    "unfreeze too deep": (write_digits, ("--unfreeze", "9"), "--unfreeze takes 1 to 4"),
    "holdout out of range": (write_digits, ("--holdout", "1.5"), "between 0 and 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_is_refused_with_one_line(case, home, tmp_path):
    make, extra, message = BAD_INPUTS[case]
    options = {"--name": "refused", "--backbone": "lenet5", "--holdout": "0.2"}
    pairs = dict(zip(extra[::2], extra[1::2], strict=True))
    options.update(pairs)
    flags = [] if "--backbone" in pairs else ["--allow-untrained"]
    name = options.pop("--name")
    args = [name, "--data", str(make(tmp_path / "data")), *flags]
    for key, value in options.items():
        args += [key, value]
    line = refused(finetune(home, *args, check=False))
    assert message in line
    assert not (home / "models" / name).exists()


def test_an_old_or_corrupt_stored_backbone_is_refused(tmp_path):
    home = tmp_path / "bentoml"
    run_cli("pull", "lenet5", "--random-init", "--no-progress", home=home)
    digits = write_digits(tmp_path / "digits")
    args = ("old", "--backbone", "lenet5", "--allow-untrained", "--data", str(digits))
    graph = stored_dir(home, "lenet5") / "model.onnx"
    intact = graph.read_bytes()
    graph.write_bytes(intact + b"\0")
    line = refused(finetune(home, *args, check=False))
    assert "stored model.onnx does not match its record (corrupt)" in line
    graph.write_bytes(intact)
    record_path = graph.parent / "convzoo.json"
    record = json.loads(record_path.read_text())
    for added in ("outputs", "features_dim", "features_layer"):
        del record[added]  # as every record written before the features output
    record_path.write_text(json.dumps(record))
    line = refused(finetune(home, *args, check=False))
    assert "re-import it: `python -m model_store pull lenet5 --force`" in line


def test_convzoo_models_finetune_is_the_same_command(home, tmp_path):
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    result = subprocess.run(
        [sys.executable, "-m", "tools.convzoo", "models", "finetune", "resnet50", "--backbone",
         "lenet5", "--data", str(tmp_path)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120)
    assert "'resnet50' is a registry model" in refused(result)


def documented_digits_rows() -> dict[str, dict[str, str]]:
    """docs/transfer_learning.md's digits table, by its first cell."""
    doc = (ROOT / "docs" / "transfer_learning.md").read_text()
    section = doc[doc.index("## Measured: scikit-learn's digits"):]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def test_the_documented_digits_figure_reproduces(home, tmp_path):
    """The doc's frozen-backbone row, from its own commands, in a store of its own."""
    run_cli_module = [sys.executable, "-m", "model_store.finetune.digits_folder",
                      str(tmp_path / "digits")]
    subprocess.run(run_cli_module, cwd=ROOT, check=True, capture_output=True, timeout=120)
    row = documented_digits_rows()["`finetune digits-lite0`"]
    card = json.loads(finetune(home, "digits-lite0", "--backbone", "efficientnet_lite0",
                               "--data", str(tmp_path / "digits"), "--json").stdout)
    held = card["held_out"]
    assert (held["correct"], held["total"]) == (int(row["Correct of 360"]), 360), (
        "docs/transfer_learning.md's frozen-backbone figure does not reproduce here")
    assert row["Held-out top-1"] == f"{100 * held['top1']:.2f} %"
