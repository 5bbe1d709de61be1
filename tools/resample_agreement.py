"""Does resampling only the centre crop's box change the answer? The crops as the service
cuts them now against how it cut them before 2026-12-02.

Now: the single crop is the crop's own box of the picture resampled alone, and every resize
runs its two single-axis passes itself, horizontal first (`model_store.transforms.resize_to`).
Before: the whole picture was resized in one Pillow call, then cropped; since Pillow 13 (PR
9549) such a call runs the vertical pass first when it reduces the height much more, which
rounds differently. So the two differ in rounding only: in that order, and in the 32-bit
floats Pillow keeps a box's corners in. For every model with real weights and every real
photo (tools.photos), as shot and turned a quarter (phones send both), at the five sizes of
`tools.decode_agreement`, decoded in full and as the service decodes it, for the 1-crop and
the 10-crop: the share of the crops' pixel values that differ and by how much, top-1
agreement, mean top-5 overlap, and the largest change in a top-1 probability. Then the
median time of the 1-crop both ways, per size, on the first model's scaled decodes of the
photos as shot.

    python -m tools.resample_agreement [--models efficientnet_lite0 ...] [--photos chelsea ...]
        [--json PATH]
"""

from __future__ import annotations

import itertools
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
from PIL import Image

from model_store import registry
from model_store.specs import InputSpec
from model_store.transforms import RESAMPLE, picture_box, resized_size, to_model_input
from service.core.crops import crop_images, crop_resize, decode_side, five_boxes
from service.core.decoding import decode_image
from service.core.postprocess import softmax
from tools import photos
from tools.decode_agreement import (
    SIZES,
    pretrained_session,
    publish,
    report_parser,
    sized_files,
)

TIMING_REPEATS = 9
SCHEMES = {1: 1, 10: 5}  # crop scheme: how many boxes are cut (10-crop mirrors its five)
ORIENTATIONS = ("as shot", "turned")


def former_crops(image: Image.Image, spec: InputSpec, scheme: int) -> list[Image.Image]:
    """The scheme's crops as the service cut them before 2026-12-02: from the whole picture
    resized in one Pillow call (Pillow choosing the order of its passes)."""
    size = resized_size(image, crop_resize(spec, scheme))
    resized = image if size == image.size and picture_box(image) is None else image.resize(
        size, RESAMPLE[spec.interpolation], box=picture_box(image))
    crops = [resized.crop(box) for box in five_boxes(*resized.size, spec.size)[:SCHEMES[scheme]]]
    if scheme == 10:
        crops += [crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for crop in crops]
    return crops


def served_crops(image: Image.Image, spec: InputSpec, scheme: int) -> list[Image.Image]:
    """The scheme's crops as the service cuts them now (`crop_images`)."""
    return [crop.image for crop in crop_images(image, spec, scheme)]


@dataclass
class Agreement:
    model: str
    crops: int
    cases: int = 0
    cases_with_pixels_differing: int = 0
    largest_share_of_values_differing: float = 0.0
    largest_value_difference: int = 0
    top1_same: int = 0
    top5_overlap_sum: float = 0.0
    largest_top1_change: float = 0.0
    worst_case: str = ""

    def add(self, case: str, before: list[Image.Image], after: list[Image.Image],
            probabilities: np.ndarray) -> None:
        """`probabilities`: the crops' mean, before and after, as two rows."""
        self.cases += 1
        difference = np.abs(np.stack([np.asarray(c, np.int16) for c in before])
                            - np.stack([np.asarray(c, np.int16) for c in after]))
        share = float(np.mean(difference > 0))
        self.cases_with_pixels_differing += share > 0
        self.largest_share_of_values_differing = max(self.largest_share_of_values_differing,
                                                     share)
        self.largest_value_difference = max(self.largest_value_difference,
                                            int(difference.max()))
        old, new = probabilities
        best = int(old.argmax())
        self.top1_same += best == int(new.argmax())
        self.top5_overlap_sum += len(set(np.argsort(-old)[:5]) & set(np.argsort(-new)[:5])) / 5
        change = abs(float(old[best] - new[best]))
        if change > self.largest_top1_change:
            self.largest_top1_change, self.worst_case = change, case


def _median_ms(cut, image: Image.Image, spec: InputSpec) -> float:
    times = []
    for _ in range(TIMING_REPEATS):
        started = time.perf_counter()
        cut(image, spec, 1)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run(models: tuple[str, ...], photo_names: tuple[str, ...] = photos.PHOTO_NAMES) -> dict:
    tables: list[Agreement] = []
    timings: dict[str, dict[str, list[float]]] = {}
    for model in models:
        session = pretrained_session(model)
        if session is None:
            continue
        spec = registry.get(model).input

        def probabilities(crops: list[Image.Image], session=session, spec=spec) -> np.ndarray:
            batch = np.stack([to_model_input(crop, spec) for crop in crops])
            return softmax(session.run(None, {"input": batch})[0]).mean(axis=0)

        table = {scheme: Agreement(model, scheme) for scheme in SCHEMES}
        for name, orientation in itertools.product(photo_names, ORIENTATIONS):
            photo = photos.photo(name)
            if orientation == "turned":
                photo = photo.transpose(Image.Transpose.ROTATE_90)
            for label, data in sized_files(photo):
                for decoded, scaled in (("in full", False), ("scaled", True)):
                    for scheme in SCHEMES:
                        image = decode_image(data, min_side=decode_side(spec, scheme)
                                             if scaled else None)
                        before = former_crops(image, spec, scheme)
                        after = served_crops(image, spec, scheme)
                        table[scheme].add(f"{name} {orientation} {label} {decoded}", before,
                                          after, np.stack([probabilities(before),
                                                           probabilities(after)]))
                        if scheme == 1 and scaled and orientation == "as shot" and not tables:
                            row = timings.setdefault(label, {"whole_then_crop_ms": [],
                                                             "crop_box_ms": []})
                            row["whole_then_crop_ms"].append(_median_ms(former_crops, image,
                                                                        spec))
                            row["crop_box_ms"].append(_median_ms(served_crops, image, spec))
        tables.extend(table.values())
    return {"date": date.today().isoformat(),
            "machine": platform.processor() or platform.machine(),
            "photos": list(photo_names), "sizes": [s[0] for s in SIZES],
            "agreement": [asdict(t) for t in tables],
            "timing_model": tables[0].model if tables else None,
            "timing_ms": {label: {way: round(statistics.median(ms), 2)
                                  for way, ms in row.items()}
                          for label, row in timings.items()}}


def markdown(report: dict) -> str:
    lines = ["| model | crops | cases | cases with any value differing | largest share of "
             "values differing | largest difference (levels) | top-1 same | mean top-5 overlap "
             "| largest top-1 probability change (case) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for a in report["agreement"]:
        lines.append(
            f"| {a['model']} | {a['crops']} | {a['cases']} | {a['cases_with_pixels_differing']} | "
            f"{a['largest_share_of_values_differing'] * 100:.3f} % | "
            f"{a['largest_value_difference']} | {a['top1_same']}/{a['cases']} | "
            f"{a['top5_overlap_sum'] / max(1, a['cases']):.3f} | "
            f"{a['largest_top1_change']:.4f} ({a['worst_case']}) |")
    if report["timing_ms"]:
        lines += ["", f"{report['timing_model']}, 1-crop of the scaled decodes, median ms over "
                      "the photos:",
                  "", "| size | resize whole, then crop | crop's box only | ratio |",
                  "|---|---|---|---|"]
        for label, row in report["timing_ms"].items():
            before, after = row["whole_then_crop_ms"], row["crop_box_ms"]
            lines.append(f"| {label} | {before} | {after} | {after / before:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = report_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    return publish(run(tuple(args.models), tuple(args.photos)), markdown, args.json)


if __name__ == "__main__":
    sys.exit(main())
