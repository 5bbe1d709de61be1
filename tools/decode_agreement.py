"""Does decoding at the scale a request needs change the answer? Full-resolution against
scaled decoding, on every real photo the project has, at several sizes.

For each model with real weights and each photo (tools.photos), each size is encoded as a
file (JPEG quality 90 with camera-like grain at 1, 3 and 12 MP, the photo's own size as a
plain JPEG, and a 3 MP PNG, which takes the non-JPEG path), then decoded twice: in full
(`decode_image(data)`, what the service did before) and at the scale the service now
decodes (`decode_image(data, min_side=...)`: 1/2, 1/4 or 1/8 in the DCT for JPEGs, a
whole-factor reduce for PNGs). Both go through the model's own preprocessing (single crop,
and 10-crop) and the stored ONNX model. Reported per model and crop scheme: top-1
agreement, mean top-5 overlap, and the largest change in the probability of the full
decode's top-1 class.

A control says which answers any filter's difference would change: each full decode is also
resized one pixel longer on its longer side (a 0.3 % stretch at a 256-pixel shorter side,
still decoded in full) and its top-1 compared with the plain full decode's. A case is
"fragile" when that stretch alone changes the top-1; the report counts the fragile cases
among those where scaled decoding changed the top-1, and among all. Where the top-1 differs,
it also gives the gap between the full decode's two best probabilities, and the scaled
decode's own gap: what a server could see. A "near-tie rule" (decode again in full whenever
the scaled answer's two best classes are within some gap) would have to take the widest of
those to undo every change; the report counts the cases such a rule would decode twice.

A last table checks what users see: the served top-1 of the photo sent at its own size and
sent again at 12 MP (no grain), both decoded as the service does, and the same with the
12 MP file decoded in full, which shows how much of any difference the upscale itself makes.

    python -m tools.decode_agreement [--models efficientnet_lite0 ...] [--dct-margin 2]
        [--photos chelsea ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict, dataclass, field
from datetime import date

import numpy as np
from PIL import Image

from model_store import registry, repository
from model_store.transforms import preprocess, resize_to, shorter_side_size
from service.core.crops import crop_tensors, decode_side
from service.core.decoding import DEFAULT_DCT_MARGIN, decode_image
from service.core.postprocess import softmax
from tools import photos

SIZES = (("own size", None, "JPEG"), ("1 MP", 1.0, "JPEG"), ("3 MP", 3.0, "JPEG"),
         ("12 MP", 12.0, "JPEG"), ("3 MP PNG", 3.0, "PNG"))
SCHEMES = (1, 10)
DEFAULT_MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")


@dataclass
class Agreement:
    """Full against scaled decoding, for one model and crop scheme, over the photos."""

    model: str
    crops: int
    cases: int = 0
    top1_same: int = 0
    top5_overlap_sum: float = 0.0
    largest_top1_change: float = 0.0
    worst_case: str = ""
    differing: list[str] = field(default_factory=list)
    fragile: int = 0  # cases whose full-decode top-1 a one-pixel stretch changes
    differing_fragile: int = 0
    # how close the full decode's two best classes were, at most, where the top-1 differs
    largest_differing_gap: float = 0.0
    # ... and the scaled decode's two best, at most, there; and every case's scaled gap
    largest_differing_scaled_gap: float = 0.0
    scaled_gaps: list[float] = field(default_factory=list)

    def near_tie_rule_cases(self, threshold: float | None = None) -> int:
        """How many cases a rule decoding again in full every scaled answer whose top-2 gap
        is at most `threshold` would decode twice; by default the widest gap among this
        table's changes, the least that undoes them all (0: none changed)."""
        if threshold is None:
            if self.top1_same == self.cases:
                return 0
            threshold = self.largest_differing_scaled_gap
        return sum(gap <= threshold for gap in self.scaled_gaps)

    def add(self, case: str, full: np.ndarray, scaled: np.ndarray, stretched: np.ndarray
            ) -> None:
        self.cases += 1
        best_full, best_scaled = int(full.argmax()), int(scaled.argmax())
        fragile = int(stretched.argmax()) != best_full
        self.fragile += fragile
        self.top1_same += best_full == best_scaled
        scaled_gap = _top2_gap(scaled)
        self.scaled_gaps.append(scaled_gap)
        if best_full != best_scaled:
            gap = _top2_gap(full)
            self.differing.append(f"{case} (gap {gap:.4f}, scaled {scaled_gap:.4f}"
                                  f"{', fragile' if fragile else ''})")
            self.differing_fragile += fragile
            self.largest_differing_gap = max(self.largest_differing_gap, gap)
            self.largest_differing_scaled_gap = max(self.largest_differing_scaled_gap,
                                                    scaled_gap)
        top5 = set(np.argsort(-full)[:5]) & set(np.argsort(-scaled)[:5])
        self.top5_overlap_sum += len(top5) / 5
        change = abs(float(full[best_full] - scaled[best_full]))
        if change > self.largest_top1_change:
            self.largest_top1_change, self.worst_case = change, case


def _top2_gap(probabilities: np.ndarray) -> float:
    first, second = np.sort(probabilities)[-2:][::-1]
    return float(first - second)


def sized_files(image: Image.Image) -> list[tuple[str, bytes]]:
    """`image` as a file at each of SIZES: (label, file bytes)."""
    files = []
    for label, megapixels, fmt in SIZES:
        if megapixels is None:
            files.append((label, photos.encode(image, "JPEG", quality=90)))
            continue
        sized = photos.at_megapixels(image, megapixels)
        if fmt == "JPEG":
            files.append((label, photos.encode(photos.with_grain(sized), "JPEG", quality=90)))
        else:
            files.append((label, photos.encode(sized, "PNG", compress_level=1)))
    return files


def stretched(image: Image.Image, side: int, interpolation: str) -> Image.Image:
    """`image` resized to a shorter side of `side`, its longer side one pixel longer than
    the aspect ratio gives: the control's perturbation (a crop scheme then resizes no more)."""
    width, height = shorter_side_size(*image.size, side)
    size = (width + 1, height) if width >= height else (width, height + 1)
    return resize_to(image, size, interpolation)


def pretrained_session(model: str):
    """An ONNX Runtime CPU session of the stored `model`, or None (said on stderr) where the
    store has no real weights for it: agreement on random weights would mean nothing."""
    import onnxruntime as ort

    stored = repository.find(model)
    if stored is None or stored.weights_status != repository.PRETRAINED:
        print(f"skipping {model}: no real weights in the store", file=sys.stderr)
        return None
    return ort.InferenceSession(str(stored.onnx_path), providers=["CPUExecutionProvider"])


def run(models: tuple[str, ...], dct_margin: float = DEFAULT_DCT_MARGIN,
        photo_names: tuple[str, ...] = photos.PHOTO_NAMES) -> dict:
    results, served = [], []
    for model in models:
        session = pretrained_session(model)
        if session is None:
            continue
        spec = registry.get(model).input

        def probabilities(batch: np.ndarray, session=session) -> np.ndarray:
            return softmax(session.run(None, {"input": batch})[0]).mean(axis=0)

        table = {scheme: Agreement(model, scheme) for scheme in SCHEMES}
        same_served = same_full = 0
        for name in photo_names:
            for label, data in sized_files(photos.photo(name)):
                full_image = decode_image(data)
                for scheme in SCHEMES:
                    side = decode_side(spec, scheme)
                    scaled_image = decode_image(data, min_side=side, dct_margin=dct_margin)
                    full = probabilities(crop_tensors(full_image, spec, scheme))
                    scaled = probabilities(crop_tensors(scaled_image, spec, scheme))
                    control = probabilities(crop_tensors(
                        stretched(full_image, side, spec.interpolation), spec, scheme))
                    table[scheme].add(f"{name} {label}", full, scaled, control)
            own = photos.encode(photos.photo(name), "JPEG", quality=90)
            large = photos.encode(photos.at_megapixels(photos.photo(name), 12.0), "JPEG",
                                  quality=90)
            own_top1, large_top1, large_full_top1 = (int(probabilities(preprocess(
                decode_image(d, min_side=side, dct_margin=dct_margin), spec)[None]).argmax())
                for d, side in ((own, spec.resize), (large, spec.resize), (large, None)))
            same_served += own_top1 == large_top1
            same_full += own_top1 == large_full_top1
        results.extend(table.values())
        served.append({"model": model, "photos": len(photo_names),
                       "same_top1_at_12mp": same_served,
                       "same_top1_at_12mp_decoded_in_full": same_full})
    return {"date": date.today().isoformat(), "machine": platform.processor() or
            platform.machine(), "dct_margin": dct_margin, "photos": list(photo_names),
            "sizes": [s[0] for s in SIZES], "agreement": [asdict(a) for a in results],
            "served_own_size_vs_12mp": served}


def markdown(report: dict) -> str:
    lines = ["| model | crops | top-1 same | of those differing, fragile | largest top-2 gap "
             "where differing: full / scaled | decoded twice by a near-tie rule that undoes "
             "them all | fragile of all | mean top-5 overlap | largest top-1 probability "
             "change (case) |", "|---|---|---|---|---|---|---|---|---|"]
    tables = [Agreement(**a) for a in report["agreement"]]
    for a, table in zip(report["agreement"], tables, strict=True):
        differing = a["cases"] - a["top1_same"]
        gap = (f"{a['largest_differing_gap']:.4f} / {a['largest_differing_scaled_gap']:.4f}"
               if differing else "-")
        twice = f"{table.near_tie_rule_cases()}/{a['cases']}" if differing else "-"
        lines.append(
            f"| {a['model']} | {a['crops']} | {a['top1_same']}/{a['cases']} | "
            f"{a['differing_fragile']}/{differing} | {gap} | {twice} | "
            f"{a['fragile']}/{a['cases']} | "
            f"{a['top5_overlap_sum'] / max(1, a['cases']):.3f} | "
            f"{a['largest_top1_change']:.4f} ({a['worst_case']}) |")
    lines += ["", "| model | photos | top-1 at own size = at 12 MP, as served | ... = at 12 MP "
              "decoded in full |", "|---|---|---|---|"]
    lines += [f"| {s['model']} | {s['photos']} | {s['same_top1_at_12mp']}/{s['photos']} | "
              f"{s['same_top1_at_12mp_decoded_in_full']}/{s['photos']} |"
              for s in report["served_own_size_vs_12mp"]]
    differing = [f"{a['model']} {a['crops']}-crop: {', '.join(a['differing'])}"
                 for a in report["agreement"] if a["differing"]]
    if differing:
        lines += ["", "Top-1 differs on: " + "; ".join(differing)]
        widest = max(t.largest_differing_scaled_gap for t in tables)
        twice = sum(t.near_tie_rule_cases(widest) for t in tables)
        lines += ["", f"One near-tie rule for every table, decoding again in full each scaled "
                      f"answer whose top-2 gap is at most {widest:.4f}, would undo every change "
                      f"and decode {twice} of {sum(t.cases for t in tables)} cases twice."]
    return "\n".join(lines)


def report_parser(description: str) -> argparse.ArgumentParser:
    """The options every agreement tool takes: models, photos, a JSON copy."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--photos", nargs="+", default=list(photos.PHOTO_NAMES),
                        choices=photos.PHOTO_NAMES, help="tools.photos names (default: all)")
    parser.add_argument("--json", help="also write the report as JSON here")
    return parser


def publish(report: dict, markdown_of, json_path: str | None) -> int:
    if json_path:
        with open(json_path, "w") as out:
            json.dump(report, out, indent=2)
    print(markdown_of(report))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = report_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--dct-margin", type=float, default=DEFAULT_DCT_MARGIN,
                        help="the service's dct_scale_margin to compare with full decoding")
    args = parser.parse_args(argv)
    report = run(tuple(args.models), args.dct_margin, tuple(args.photos))
    return publish(report, markdown, args.json)


if __name__ == "__main__":
    sys.exit(main())
