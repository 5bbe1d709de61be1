"""The accuracy/latency frontier of a family as a picture (PNG or SVG), for `GET /frontier`.

Adapter-side: it draws the data `DataPlane.frontier` returns and knows nothing about
serving. Each variant is a point at (expected latency now, published top-1); the frontier is
the line through the undominated ones, the most recent choice is ringed, and variants without
real weights are grey (they are never chosen for real traffic). matplotlib is imported only
when a plot is asked for, and through its object API with the Agg canvas (no pyplot global
state), so plots can render on worker threads.
"""

from __future__ import annotations

import io
from typing import Any

from service.core.errors import InvalidArgument

PLOT_FORMATS = {"png": "image/png", "svg": "image/svg+xml"}


def check_format(fmt: str) -> str:
    """`json` or one of PLOT_FORMATS, else InvalidArgument."""
    if fmt != "json" and fmt not in PLOT_FORMATS:
        raise InvalidArgument(f"format must be json, {' or '.join(PLOT_FORMATS)}, got {fmt!r}")
    return fmt


def render_frontier(frontier: dict[str, Any], fmt: str = "png") -> tuple[bytes, str]:
    """The plot's bytes and media type."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    check_format(fmt)
    figure = Figure(figsize=(7.5, 4.8), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    variants = {v["name"]: v for v in frontier["variants"]
                if v["expected_latency_ms"] is not None and v["top1"] is not None}
    for v in variants.values():
        trained = v["weights"] == "pretrained"
        axes.scatter(v["expected_latency_ms"], v["top1"], s=36, zorder=3,
                     color="tab:blue" if trained else "0.65",
                     label=None if trained else "random-init (never chosen for real traffic)")
        axes.annotate(v["name"], (v["expected_latency_ms"], v["top1"]), fontsize=7,
                      xytext=(4, 3), textcoords="offset points",
                      color="black" if trained else "0.5")
    slowest = max((v["expected_latency_ms"] for v in variants.values()), default=1.0)
    right = slowest * 1.3  # room for the labels right of the points
    line = [variants[name] for name in frontier["frontier"] if name in variants]
    if line:
        axes.plot([v["expected_latency_ms"] for v in line], [v["top1"] for v in line],
                  color="tab:blue", lw=1.5, zorder=2, label="frontier")
    last = frontier.get("last_selection") or {}
    if last.get("chosen") in variants:
        chosen = variants[last["chosen"]]
        axes.scatter(chosen["expected_latency_ms"], chosen["top1"], s=180, facecolors="none",
                     edgecolors="tab:red", lw=2, zorder=4,
                     label=f"current choice: {chosen['name']}")
        budget = last.get("latency_budget_ms")
        if budget and budget <= 2 * slowest:
            axes.axvline(budget, color="tab:red", ls="--", lw=1, label=f"budget {budget:g} ms")
            right = max(right, budget * 1.1)
        elif budget:  # a generous budget would squash the points against the axis
            axes.scatter([], [], marker="", label=f"budget {budget:g} ms (off the scale)")
    axes.set_xlim(0, right)
    if not variants:
        axes.text(0.5, 0.5, "no variant of this family is measured (none has weights)",
                  ha="center", va="center", transform=axes.transAxes, color="0.4")
    axes.set_xlabel("expected latency now (ms): overhead + service time + queue wait")
    axes.set_ylabel("ImageNet top-1 (%), published")
    axes.set_title(f"{frontier['family']}: accuracy vs latency on this machine")
    axes.grid(True, alpha=0.3)
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        unique = dict(zip(labels, handles, strict=True))
        axes.legend(unique.values(), unique.keys(), fontsize=7, loc="lower right")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt)
    return buffer.getvalue(), PLOT_FORMATS[fmt]
