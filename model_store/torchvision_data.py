"""What the registry and the serving path take from torchvision, extracted once into data files.

torchvision ships, with its weights records, the ImageNet-1k class names (`meta["categories"]`,
the same list in every ImageNet record) and each model's preprocessing, published accuracy,
parameter count, operation count, file URL and training recipe. Reading them means importing
torchvision, and with it torch: seconds and hundreds of megabytes that the ONNX serving path
does not otherwise need. So they are written once, by `python -m model_store.torchvision_data`,
into `model_store/data/` (`imagenet-1k.txt`, one class name a line, in index order;
`torchvision_weights.json`), which `model_store.labels` and `model_store.registry` read.
That command rewrites the records of the models already in the file, plus those named on its
command line (a torchvision variant added to the registry's table: `python -m
model_store.torchvision_data NAME`). tests/unit/model_store/test_torchvision_data.py
extracts them again from the installed torchvision and compares, and checks that the file
holds exactly the registry's torchvision models: an upgrade that changes a record, or a row
added without its record, fails there.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
LABELS_FILE = DATA / "imagenet-1k.txt"
WEIGHTS_FILE = DATA / "torchvision_weights.json"
# The record the class names are taken from (every IMAGENET1K record has the same list).
LABELS_RECORD = "resnet50"


def imagenet_labels() -> list[str]:
    """ImageNet-1k's class names from torchvision's weights records, in index order."""
    import torchvision.models as tvm

    return list(tvm.get_model_weights(LABELS_RECORD).IMAGENET1K_V1.meta["categories"])


def weights_records(names: list[str]) -> dict[str, dict[str, Any]]:
    """Per model name, what the registry reads from its IMAGENET1K_V1 weights record."""
    import torchvision.models as tvm

    records = {}
    for name in names:
        record = tvm.get_model_weights(name).IMAGENET1K_V1
        transforms = record.transforms()
        metrics = record.meta["_metrics"]["ImageNet-1K"]
        records[name] = {
            "record": str(record), "url": record.url, "recipe": record.meta["recipe"],
            "crop_size": int(transforms.crop_size[0]),
            "resize_size": int(transforms.resize_size[0]),
            "interpolation": transforms.interpolation.value,
            "mean": [float(v) for v in transforms.mean],
            "std": [float(v) for v in transforms.std],
            "acc@1": metrics["acc@1"], "acc@5": metrics["acc@5"],
            "num_params": record.meta["num_params"], "gflops": record.meta["_ops"],
        }
    return records


def labels_text(labels: list[str]) -> str:
    return "".join(f"{label}\n" for label in labels)


def weights_text(records: dict[str, dict[str, Any]]) -> str:
    return json.dumps(records, indent=1) + "\n"


def recorded_names() -> list[str]:
    """The models whose records the file holds, in its order."""
    return list(json.loads(WEIGHTS_FILE.read_text())) if WEIGHTS_FILE.exists() else []


def write(added: list[str] = ()) -> list[Path]:
    """Both files, from the installed torchvision: the records of the models already in the
    file and of `added`. (Not from the registry's table: the registry reads this file.)"""
    names = list(dict.fromkeys([*recorded_names(), *added]))
    DATA.mkdir(exist_ok=True)
    LABELS_FILE.write_text(labels_text(imagenet_labels()))
    WEIGHTS_FILE.write_text(weights_text(weights_records(names)))
    return [LABELS_FILE, WEIGHTS_FILE]


if __name__ == "__main__":
    for path in write(sys.argv[1:]):
        print(path, file=sys.stdout)
