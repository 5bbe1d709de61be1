"""scikit-learn's digits as an image folder, for the measured transfer-learning example.

`python -m model_store.finetune.digits_folder DIR` writes the 1797 8x8 digits (white ink on
black, as `model_store.training.lenet5.digits_as_images` makes them) as grayscale PNGs,
`DIR/<digit>/<index>.png`, the index being the digit's position in the dataset. Files sort
in dataset order within each class, so `finetune`'s split of this folder holds out exactly
the images LeNet-5's held-out figure is measured on (see `model_store.finetune.dataset`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def write_digits_folder(root: Path) -> int:
    """Write the folder; returns the number of images written."""
    from model_store.training.lenet5 import digits_as_images

    images, labels = digits_as_images()
    width = len(str(len(images) - 1))
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:0{width}d}.png")
    return len(images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_store.finetune.digits_folder",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where to write <digit>/<index>.png")
    args = parser.parse_args(argv)
    if args.folder.exists() and any(args.folder.iterdir()):
        print(f"error: {args.folder} exists and is not empty", file=sys.stderr)
        return 2
    count = write_digits_folder(args.folder)
    print(f"wrote {count} digits to {args.folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
