"""Accuracy of a served model, a multi-crop scheme or an ensemble, measured in-process.

Images go through the same `DataPlane` the service runs (decode, crops, the model's
batcher, ONNX Runtime, the ensemble combination), so the figures are the served ones. The
data is an ImageFolder directory, `root/<class>/<image>`, whose class folders are label
indices (`3/`) or the model's label names (`tabby/`). `--digits-holdout DIR` writes LeNet-5's
held-out digits (`model_store.training.lenet5.held_out_split`) in that layout, the one
labelled set we have offline; `--digits-table` scores every row of docs/accuracy.md's LeNet-5
table on them in one run and prints the rows as the doc has them. For the ImageNet models
there is no labelled data offline, so `--photos` instead measures agreement on scikit-image's
photos: N-crop against 1-crop, or an ensemble against its members, and the top-1 confidence
of each.

    python -m tools.evaluate --digits-holdout /tmp/digits
    python -m tools.evaluate /tmp/digits --model lenet5 --crops 10
    python -m tools.evaluate --digits-table
    python -m tools.evaluate DIR --ensemble efficientnet_lite0,efficientnet_lite1 --method mean
    python -m tools.evaluate --photos --model efficientnet_lite0 --crops 10
    python -m tools.evaluate --photos --ensemble lite-trio
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from tools import photos as bundled

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# scikit-image's real photographs (not its synthetic or binary images).
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle", "camera", "coins",
          "moon", "hubble_deep_field", "immunohistochemistry", "retina", "brick", "grass",
          "gravel", "page")
TOP_K = 5


@dataclass(frozen=True)
class Setting:
    """What is scored: one model with a crop scheme, or an ensemble of models."""

    models: tuple[str, ...]
    crops: int = 1
    ensemble: str | None = None  # a configured ensemble's name
    method: str | None = None
    weights: tuple[float, ...] | None = None
    crop_resize: int | None = None

    @property
    def is_ensemble(self) -> bool:
        return len(self.models) > 1

    def describe(self) -> str:
        if not self.is_ensemble:
            resize = f", crop resize {self.crop_resize}" if self.crop_resize else ""
            return f"{self.models[0]}, {self.crops}-crop{resize}"
        name = f"{self.ensemble} = " if self.ensemble else ""
        weights = f", weights {list(self.weights)}" if self.weights else ""
        return (f"ensemble {name}{'+'.join(self.models)} ({self.method or 'mean'}{weights}), "
                f"{self.crops}-crop")


async def score(plane: Any, setting: Setting, image: bytes, k: int = TOP_K) -> dict[str, Any]:
    """One image's response for the setting (as REST answers it), from the data plane."""
    from service.core.requests import EnsembleRequest, MulticropRequest

    if setting.is_ensemble:
        (result,) = await plane.ensemble(EnsembleRequest(
            images=(image,), models=None if setting.ensemble else tuple(setting.models),
            ensemble=setting.ensemble,
            weights=None if setting.weights is None else tuple(setting.weights),
            method=setting.method, top_k=k, crops=setting.crops))
    else:
        (result,) = await plane.multicrop(MulticropRequest(
            images=(image,), model=setting.models[0], crops=setting.crops, top_k=k,
            crop_resize=setting.crop_resize))
    return result.to_dict()


@dataclass(frozen=True)
class DigitsRow:
    """One row of docs/accuracy.md's LeNet-5 table: what is scored, and how the doc names it."""

    setting: str
    resize: str  # the doc's "Resize before cropping" column
    crops: int
    crop_resize: int | None = None


# In the doc's order. Multi-crop's default resize for LeNet-5 is 36 (service/plane/crops.py);
# 144-crop scales it as GoogLeNet scales 256.
DIGITS_TABLE = (
    DigitsRow("1-crop (the served `/classify` input)", "32", 1),
    DigitsRow("1-crop", "36", 1, 36),
    DigitsRow("5-crop (centre + 4 corners)", "36 (default)", 5),
    DigitsRow("10-crop (5 + mirrors)", "36 (default)", 10),
    DigitsRow("144-crop (GoogLeNet)", "36, 40, 45, 50", 144),
    DigitsRow("5-crop", "40", 5, 40),
    DigitsRow("10-crop", "40", 10, 40),
)
DIGITS_TABLE_HEADER = ("| Setting | Resize before cropping | Top-1 | Top-5 |",
                       "|---|---|---|---|")


def digits_table_line(row: DigitsRow, top1: float, top5: float) -> str:
    """The row as docs/accuracy.md writes it (figures to two decimals, in percent)."""
    return f"| {row.setting} | {row.resize} | {top1:.2f} % | {top5:.2f} % |"


async def digits_table(plane: Any, samples: list[tuple[Path, int]]) -> list[str]:
    """Every `DIGITS_TABLE` row scored on `samples` with LeNet-5, as table lines."""
    lines = list(DIGITS_TABLE_HEADER)
    for row in DIGITS_TABLE:
        setting = Setting(("lenet5",), row.crops, crop_resize=row.crop_resize)
        result = (await accuracy(plane, setting, samples))["lenet5"]
        lines.append(digits_table_line(row, result["top1"], result["top5"]))
    return lines


def write_digits_holdout(directory: Path) -> int:
    """Write the held-out digits as `directory/<digit>/<dataset index>.png`; returns the count."""
    from model_store.training.lenet5 import digits_as_images, held_out_split

    images, labels = digits_as_images()
    _, held_out = held_out_split()
    for index in held_out:
        target = directory / str(int(labels[index])) / f"{int(index):04d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        images[index].save(target)
    return len(held_out)


def image_folder(root: Path, label_names: tuple[str, ...]) -> list[tuple[Path, int]]:
    """(image path, label index) for every image under root/<class>/."""
    samples = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name.isdigit() and int(folder.name) < len(label_names):
            label = int(folder.name)
        elif folder.name in label_names:
            label = label_names.index(folder.name)
        else:
            raise SystemExit(f"{folder}: class folder is neither a label index below "
                             f"{len(label_names)} nor one of the model's label names")
        samples += [(path, label) for path in sorted(folder.iterdir())
                    if path.suffix.lower() in IMAGE_SUFFIXES]
    if not samples:
        raise SystemExit(f"{root}: no images under {root}/<class>/")
    return samples


async def accuracy(plane: Any, setting: Setting, samples: list[tuple[Path, int]],
                   concurrency: int = 8) -> dict[str, Any]:
    """Top-1/top-5 (percent) of the setting, and of each ensemble member on its own."""
    hits: dict[str, list[int]] = {}
    # Enough in flight for the batcher to fill batches, never more crops than its queue holds.
    queue = min(plane.config.batching_for(m).max_queue for m in setting.models)
    gate = asyncio.Semaphore(max(1, min(concurrency, queue // setting.crops)))
    bar = tqdm(total=len(samples), desc=setting.describe(), unit="img")

    def count(name: str, predictions: list[dict], label: int) -> None:
        indices = [p["index"] for p in predictions]
        tally = hits.setdefault(name, [0, 0])
        tally[0] += indices[0] == label
        tally[1] += label in indices

    async def one(path: Path, label: int) -> None:
        async with gate:
            response = await score(plane, setting, path.read_bytes())
        count("ensemble" if setting.is_ensemble else setting.models[0],
              response["predictions"], label)
        for member in response.get("members", []):
            count(member["model"], member["predictions"], label)
        bar.update()

    await asyncio.gather(*(one(path, label) for path, label in samples))
    bar.close()
    return {name: {"top1": 100.0 * t[0] / len(samples), "top5": 100.0 * t[1] / len(samples)}
            for name, t in hits.items()} | {"images": len(samples)}


def photo(name: str) -> bytes:
    return bundled.encode(bundled.photo(name), "PNG")


async def photo_agreement(plane: Any, setting: Setting) -> list[dict[str, Any]]:
    """Per photo: top-1 of the setting and of its baselines (1-crop, or each member)."""
    rows = []
    for name in tqdm(PHOTOS, desc=setting.describe(), unit="photo"):
        image = photo(name)
        response = await score(plane, setting, image)
        if setting.is_ensemble:
            baselines = {m["model"]: m["predictions"][0] for m in response["members"]}
        else:
            single = await score(plane, Setting(models=setting.models[:1], crops=1), image)
            baselines = {f"{setting.models[0]} 1-crop": single["predictions"][0]}
        rows.append({"photo": name, "top1": response["predictions"][0],
                     "baselines": baselines})
    return rows


def _setting(args: argparse.Namespace, ensembles: dict[str, Any]) -> Setting:
    weights = tuple(float(w) for w in args.weights.split(",")) if args.weights else None
    if args.ensemble is None:
        return Setting((args.model,), args.crops, crop_resize=args.crop_resize)
    if args.crop_resize is not None:
        raise SystemExit("--crop-resize applies to one model, not to an ensemble")
    if "," in args.ensemble:
        return Setting(tuple(args.ensemble.split(",")), args.crops, method=args.method,
                       weights=weights)
    if args.ensemble not in ensembles:
        raise SystemExit(f"unknown ensemble {args.ensemble!r}; configured: {sorted(ensembles)}")
    return Setting(tuple(ensembles[args.ensemble].models), args.crops, args.ensemble,
                   args.method, weights)


def _print_accuracy(setting: Setting, result: dict[str, Any]) -> None:
    print(f"{setting.describe()}: {result['images']} images")
    for name, figures in result.items():
        if name != "images":
            print(f"  {name:<22} top-1 {figures['top1']:6.2f}%   top-5 {figures['top5']:6.2f}%")


def _print_agreement(setting: Setting, rows: list[dict[str, Any]]) -> None:
    print(f"{setting.describe()}: top-1 on {len(rows)} scikit-image photos (no ground truth)")
    for row in rows:
        others = "; ".join(f"{b}: {p['label']} {p['score']:.3f}"
                           for b, p in row["baselines"].items())
        print(f"  {row['photo']:<21} {row['top1']['label']} {row['top1']['score']:.3f}"
              f"   [{others}]")
    for baseline in rows[0]["baselines"]:
        agree = sum(r["top1"]["index"] == r["baselines"][baseline]["index"] for r in rows)
        mean = sum(r["baselines"][baseline]["score"] for r in rows) / len(rows)
        print(f"  top-1 agrees with {baseline}: {agree}/{len(rows)} "
              f"(its mean top-1 score {mean:.3f})")
    print(f"  mean top-1 score of the setting: "
          f"{sum(r['top1']['score'] for r in rows) / len(rows):.3f}")


async def _run(args: argparse.Namespace) -> None:
    from model_store.labels import label_names
    from service.core.config import load_config
    from service.core.dataplane import DataPlane

    setting = (Setting(("lenet5",)) if args.digits_table
               else _setting(args, load_config().ensembles))
    plane = DataPlane(load_config(startup_models=setting.models,
                                     default_model=setting.models[0],
                                     profile_families_at_startup=False))
    await plane.start()
    try:
        if args.digits_table:
            with tempfile.TemporaryDirectory(prefix="digits-") as folder:
                write_digits_holdout(Path(folder))
                labels = label_names(plane.spec("lenet5").labels)
                lines = await digits_table(plane, image_folder(Path(folder), labels))
            print("\n".join(lines))
        elif args.photos:
            _print_agreement(setting, await photo_agreement(plane, setting))
        else:
            labels = label_names(plane.spec(setting.models[0]).labels)
            result = await accuracy(plane, setting, image_folder(args.root, labels))
            _print_accuracy(setting, result)
    finally:
        await plane.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, help="ImageFolder root: ROOT/<class>/*")
    parser.add_argument("--model", default="lenet5")
    parser.add_argument("--crops", type=int, default=1, choices=(1, 5, 10, 144))
    parser.add_argument("--crop-resize", type=int,
                        help="shorter side before cropping (default: service.core.crops rule)")
    parser.add_argument("--ensemble", help="comma-separated models, or a configured name")
    parser.add_argument("--method", choices=("mean", "geometric", "logit_mean"))
    parser.add_argument("--weights", help="comma-separated, one per ensemble member")
    parser.add_argument("--photos", action="store_true",
                        help="agreement on scikit-image's photos instead of accuracy")
    parser.add_argument("--digits-holdout", type=Path, metavar="DIR",
                        help="write LeNet-5's held-out digits as an ImageFolder and exit")
    parser.add_argument("--digits-table", action="store_true",
                        help="score docs/accuracy.md's LeNet-5 rows on the held-out digits and "
                             "print them as its table")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.digits_holdout is not None:
        count = write_digits_holdout(args.digits_holdout)
        print(f"wrote {count} held-out digits to {args.digits_holdout}/<digit>/")
        return 0
    if args.root is None and not (args.photos or args.digits_table):
        build_parser().error("give an ImageFolder ROOT, --photos, --digits-table or "
                             "--digits-holdout DIR")
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
