"""The load test's service-level objective: no failed request and an aggregated p95 under a bound.

It reads what `locust --csv PREFIX` writes (`PREFIX_stats.csv`, and `PREFIX_exceptions.csv`
for errors raised in the load generator's own code), prints each request name's count,
failures, p50 and p95, and exits 1 when the run broke the objective: a failed request, an
exception in a user, no request at all, or an aggregated 95th percentile over the bound
(`--p95-ms`, else the environment's CONVZOO_SLO_P95_MS, else 1000 ms). `make loadtest` runs it
after Locust, which is told not to fail on errors itself so that this is the one verdict.

    python loadtest/slo.py --csv-prefix loadtest/reports/convzoo --p95-ms 500
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass
from pathlib import Path

DEFAULT_P95_MS = 1000.0
P95_ENV = "CONVZOO_SLO_P95_MS"
AGGREGATED = "Aggregated"


@dataclass(frozen=True)
class Stats:
    """One row of Locust's stats CSV; percentiles are None where Locust wrote N/A."""

    kind: str
    name: str
    requests: int
    failures: int
    p50_ms: float | None
    p95_ms: float | None


def _milliseconds(value: str) -> float | None:
    return None if value.strip() in ("", "N/A") else float(value)


def read_stats(path: Path) -> list[Stats]:
    with path.open(newline="") as file:
        return [Stats(kind=row["Type"], name=row["Name"], requests=int(row["Request Count"]),
                      failures=int(row["Failure Count"]), p50_ms=_milliseconds(row["50%"]),
                      p95_ms=_milliseconds(row["95%"]))
                for row in csv.DictReader(file)]


def count_exceptions(path: Path) -> int:
    """Exceptions raised in user code (Locust's exceptions CSV; absent means none)."""
    if not path.exists():
        return 0
    with path.open(newline="") as file:
        return sum(int(row["Count"]) for row in csv.DictReader(file))


def violations(rows: list[Stats], p95_bound_ms: float, exceptions: int = 0) -> list[str]:
    """Why the run broke the objective; empty when it met it."""
    total = next((r for r in rows if r.name == AGGREGATED), None)
    if total is None:
        return ["the stats have no Aggregated row: not a Locust stats CSV"]
    problems = []
    if total.requests == 0:
        problems.append("no request was made")
    if total.failures:
        failed = ", ".join(f"{r.kind} {r.name}: {r.failures}" for r in rows
                           if r.failures and r.name != AGGREGATED)
        problems.append(f"{total.failures} of {total.requests} requests failed ({failed})")
    if exceptions:
        problems.append(f"{exceptions} exception(s) in the load generator's users")
    if total.p95_ms is not None and total.p95_ms > p95_bound_ms:
        problems.append(f"aggregated p95 {total.p95_ms:.0f} ms is over the bound of "
                        f"{p95_bound_ms:.0f} ms")
    return problems


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}"


def summary(rows: list[Stats]) -> str:
    lines = [f"{'request':40} {'count':>7} {'failed':>7} {'p50 ms':>7} {'p95 ms':>7}"]
    for row in rows:
        label = row.name if row.name == AGGREGATED else f"{row.kind} {row.name}"
        lines.append(f"{label[:40]:40} {row.requests:7d} {row.failures:7d} "
                     f"{_cell(row.p50_ms):>7} {_cell(row.p95_ms):>7}")
    return "\n".join(lines)


def default_p95_ms() -> float:
    value = os.environ.get(P95_ENV)
    return float(value) if value else DEFAULT_P95_MS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--csv-prefix", required=True, type=Path,
                        help="the PREFIX given to `locust --csv`")
    parser.add_argument("--p95-ms", type=float, default=None,
                        help=f"bound on the aggregated p95 (default: ${P95_ENV}, else "
                             f"{DEFAULT_P95_MS:.0f})")
    args = parser.parse_args(argv)
    bound = args.p95_ms if args.p95_ms is not None else default_p95_ms()
    stats_path = Path(f"{args.csv_prefix}_stats.csv")
    if not stats_path.exists():
        print(f"SLO: FAIL: {stats_path} does not exist; did Locust run with --csv?")
        return 1
    rows = read_stats(stats_path)
    problems = violations(rows, bound, count_exceptions(Path(f"{args.csv_prefix}_exceptions.csv")))
    print(summary(rows))
    if problems:
        print("SLO: FAIL: " + "; ".join(problems))
        return 1
    print(f"SLO: PASS (0 failures, aggregated p95 within {bound:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
