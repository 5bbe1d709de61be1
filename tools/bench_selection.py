"""What the accuracy/latency selector chooses as load rises, in-process on EfficientNet-Lite.

Runs a real `DataPlane` (the served configuration, `service/config.yaml` or
`CONVZOO_CONFIG`, with Lite0..2 loaded and profiled first) and offers rising load: at each
level, N background clients each send `select` requests back to back with the same fixed
latency budget (so the load lands on whatever the selector chooses for them), and one probe
client sends a series of the same requests (at most one each PROBE_INTERVAL_S) and records
what was chosen, the expected latency the choice was made on and the latency the request
then took. A refused request (`NoVariantFits`: nothing fits the budget under this load)
counts as "refused"; a background client backs off briefly after one, as a client honouring
the refusal would. Prints the choice distribution and latencies per load level and saves a
plot of choice against offered load, and the family's frontier plot as the live data plane sees it
when unloaded.

    python -m tools.bench_selection [--budget-ms MS] [--levels 0,2,4,8,16] [--probes 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tools import photos

FAMILY = "efficientnet_lite"
VARIANTS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
REFUSED = "refused"
SETTLE_S = 2.0  # background clients run this long before the probes start
REFUSAL_BACKOFF_S = 0.05
# Probes start at least this far apart, so that a level lasts long enough for the load (and
# the selector's figures) to move, even when probes are refused at once.
PROBE_INTERVAL_S = 0.2
WARM_UP = 5
GENEROUS_MS = 60_000.0
# With no --budget-ms: three times the most accurate variant's unloaded expected latency,
# so that it fits with room to spare unloaded whatever the speed of the machine (a shared
# one varies by 2-3x from one minute to the next).
BUDGET_FACTOR = 3.0


def chelsea_jpeg() -> bytes:
    return photos.jpeg("chelsea", quality=95)


def select_request(image: bytes, budget_ms: float) -> Any:
    from service.core.requests import SelectRequest

    return SelectRequest(images=(image,), family=FAMILY, latency_budget_ms=budget_ms)


async def background_client(plane: Any, image: bytes, budget_ms: float, stop: asyncio.Event,
                            served: Counter) -> None:
    from service.core.errors import NoVariantFits, Overloaded

    while not stop.is_set():
        try:
            (result,) = await plane.select(select_request(image, budget_ms))
            served[result.model] += 1
        except (NoVariantFits, Overloaded):
            served[REFUSED] += 1
            await asyncio.sleep(REFUSAL_BACKOFF_S)


async def probe(plane: Any, image: bytes, budget_ms: float) -> dict[str, Any]:
    from service.core.errors import NoVariantFits

    try:
        (result,) = await plane.select(select_request(image, budget_ms))
    except NoVariantFits:
        return {"chosen": REFUSED}
    selection = result.details()["selection"]
    return {"chosen": selection["chosen"], "expected_ms": selection["expected_latency_ms"],
            "actual_ms": selection["actual_latency_ms"]}


async def run_level(plane: Any, image: bytes, budget_ms: float, clients: int, probes: int
                    ) -> dict[str, Any]:
    stop, served = asyncio.Event(), Counter()
    tasks = [asyncio.create_task(background_client(plane, image, budget_ms, stop, served))
             for _ in range(clients)]
    await asyncio.sleep(SETTLE_S if clients else 0.0)
    started = time.perf_counter()
    served.clear()
    records = []
    for _ in range(probes):
        probe_started = time.perf_counter()
        records.append(await probe(plane, image, budget_ms))
        await asyncio.sleep(max(0.0, PROBE_INTERVAL_S - (time.perf_counter() - probe_started)))
    elapsed = time.perf_counter() - started
    stop.set()
    await asyncio.gather(*tasks)
    answered = [r for r in records if r["chosen"] != REFUSED]
    actual = sorted(r["actual_ms"] for r in answered)
    return {
        "clients": clients,
        "choices": Counter(r["chosen"] for r in records),
        "median_expected_ms": statistics.median(r["expected_ms"] for r in answered)
        if answered else None,
        "median_actual_ms": statistics.median(actual) if actual else None,
        "p90_actual_ms": actual[min(len(actual) - 1, int(0.9 * len(actual)))] if actual else None,
        "within_budget": sum(a <= budget_ms for a in actual),
        "answered": len(answered),
        "background_per_s": sum(v for k, v in served.items() if k != REFUSED) / elapsed,
        "background_choices": dict(served),
    }


async def bench(budget_ms: float | None, levels: list[int], probes: int,
                frontier_plot: Path | None
                ) -> tuple[float, dict[str, Any], list[dict[str, Any]]]:
    """(budget, the unloaded table, one result per load level)."""
    from service.core.config import load_config
    from service.core.dataplane import DataPlane
    from service.core.requests import FrontierRequest
    from service.frontier_plot import render_frontier

    plane = DataPlane(load_config(startup_models=VARIANTS, default_model=VARIANTS[0]))
    frontier = FrontierRequest(FAMILY)
    await plane.start()
    try:
        image = chelsea_jpeg()
        await plane.frontier(frontier)  # load and profile every variant before timing anything
        for _ in range(WARM_UP):  # unloaded requests to the most accurate: observed figures
            await probe(plane, image, GENEROUS_MS)
        if budget_ms is None:
            slowest = max(v["expected_latency_ms"] for v in (await plane.frontier(frontier))[
                "variants"])
            budget_ms = round(BUDGET_FACTOR * slowest)
        for _ in range(3):  # the benchmark's budget in force when the frontier is drawn
            await probe(plane, image, budget_ms)
        unloaded = await plane.frontier(frontier)
        if frontier_plot is not None:
            frontier_plot.write_bytes(render_frontier(unloaded, "png")[0])
        results = [await run_level(plane, image, budget_ms, n, probes) for n in levels]
        return budget_ms, unloaded, results
    finally:
        await plane.close()


def save_plot(results: list[dict[str, Any]], budget_ms: float, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 5.0), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    positions = range(len(results))
    bottom = [0.0] * len(results)
    colours = {VARIANTS[0]: "tab:green", VARIANTS[1]: "tab:blue", VARIANTS[2]: "tab:purple",
               REFUSED: "0.7"}
    for choice in (*VARIANTS, REFUSED):
        share = [100.0 * r["choices"].get(choice, 0) / sum(r["choices"].values())
                 for r in results]
        axes.bar(positions, share, bottom=bottom, color=colours[choice], label=choice, width=0.6)
        bottom = [b + s for b, s in zip(bottom, share, strict=True)]
    axes.set_xticks(list(positions), [str(r["clients"]) for r in results])
    axes.set_xlabel("offered load: concurrent background clients")
    axes.set_ylabel("probe requests (%)")
    axes.set_ylim(0, 100)
    latency = axes.twinx()
    latency.plot(positions, [r["median_actual_ms"] for r in results], "ko-",
                 label="median actual latency (ms)")
    latency.axhline(budget_ms, color="tab:red", ls="--", lw=1, label=f"budget {budget_ms:g} ms")
    latency.set_ylabel("latency (ms)")
    latency.set_ylim(0, max([budget_ms * 1.5] + [r["median_actual_ms"] or 0 for r in results]))
    handles = axes.get_legend_handles_labels()
    more = latency.get_legend_handles_labels()
    axes.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, ncol=3,
                loc="upper center", bbox_to_anchor=(0.5, -0.14))
    axes.set_title(f"{FAMILY}: variant chosen under a {budget_ms:g} ms budget as load rises")
    figure.tight_layout()
    figure.savefig(path)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_selection",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-ms", type=float, default=None,
                        help=f"default: {BUDGET_FACTOR:g} x the slowest variant's unloaded "
                        "expected latency, measured first")
    parser.add_argument("--levels", default="0,2,4,8,16",
                        help="comma-separated numbers of concurrent background clients")
    parser.add_argument("--probes", type=int, default=30, help="probe requests per level")
    parser.add_argument("--plot", type=Path, default=Path("docs/selection_under_load.png"))
    parser.add_argument("--frontier-plot", type=Path,
                        default=Path("docs/frontier_efficientnet_lite.png"))
    args = parser.parse_args(argv)
    levels = [int(n) for n in args.levels.split(",")]
    budget_ms, unloaded, results = asyncio.run(bench(args.budget_ms, levels, args.probes,
                                                     args.frontier_plot))
    print(f"{FAMILY}, chelsea 451x300 JPEG, budget {budget_ms:g} ms, {args.probes} "
          "sequential probe requests per level")
    print("unloaded table (ms): variant, published top-1, profiled batch 1 / max batch, "
          "expected now")
    for v in unloaded["variants"]:
        profiled = " / ".join(_ms(v["profiled_ms"].get(k)) for k in sorted(v["profiled_ms"],
                                                                            key=int))
        print(f"  {v['name']:20} {v['top1']:5.1f}%  {profiled:>17}  "
              f"{_ms(v['expected_latency_ms']):>7}")
    print(f"{'clients':>7}  {'lite0':>5} {'lite1':>5} {'lite2':>5} {'refused':>7}  "
          f"{'expected':>8} {'actual':>8} {'p90':>8}  {'in budget':>9}  {'bg req/s':>8}")
    for r in results:
        counts = [r["choices"].get(c, 0) for c in (*VARIANTS, REFUSED)]
        print(f"{r['clients']:>7}  {counts[0]:>5} {counts[1]:>5} {counts[2]:>5} {counts[3]:>7}  "
              f"{_ms(r['median_expected_ms']):>8} {_ms(r['median_actual_ms']):>8} "
              f"{_ms(r['p90_actual_ms']):>8}  {r['within_budget']:>4}/{r['answered']:<4}  "
              f"{r['background_per_s']:>8.1f}")
    print("expected/actual: medians over the answered probes (ms); p90: of actual; "
          "bg req/s: background requests answered per second")
    if args.plot:
        save_plot(results, budget_ms, args.plot)
        print(f"plot: {args.plot}")
    if args.frontier_plot:
        print(f"frontier plot: {args.frontier_plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
