"""The benchmark's figures: per system and photo, the rounds' served images/s and latency,
their medians and spread, and ConvZoo's throughput over each peer's; written as JSON and as
a Markdown report.

Ratios are of the medians, and also taken round by round (ConvZoo's round r over the peer's
round r, measured minutes apart at most), which the machine's drift moves less.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

CONVZOO = "convzoo"


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [r["images_per_s"] for r in rounds]
    p50s = [r["p50_ms"] for r in rounds if r["p50_ms"] is not None]
    p99s = [r["p99_ms"] for r in rounds if r["p99_ms"] is not None]
    cpus = [r["server_cpu_ms_per_image"] for r in rounds
            if r.get("server_cpu_ms_per_image") is not None]
    return {"images_per_s": round(statistics.median(rates), 2),
            "images_per_s_min": round(min(rates), 2), "images_per_s_max": round(max(rates), 2),
            "p50_ms": round(statistics.median(p50s), 1) if p50s else None,
            "p99_ms": round(statistics.median(p99s), 1) if p99s else None,
            "server_cpu_ms_per_image": round(statistics.median(cpus), 1) if cpus else None,
            "errors": sum(r["errors"] for r in rounds),
            "error_samples": [s for r in rounds for s in r["error_samples"]][:3],
            "rounds": rounds}


def add_ratios(by_system: dict[str, dict[str, Any]]) -> None:
    """ConvZoo's images/s over each system's: of the medians, and round by round."""
    ours = by_system.get(CONVZOO)
    if ours is None:
        return
    for figures in by_system.values():
        if figures["images_per_s"] > 0:
            figures["convzoo_ratio"] = round(ours["images_per_s"] / figures["images_per_s"], 2)
        else:
            figures["convzoo_ratio"] = None
        figures["convzoo_ratio_rounds"] = [
            round(a["images_per_s"] / b["images_per_s"], 2) if b["images_per_s"] > 0 else None
            for a, b in zip(ours["rounds"], figures["rounds"], strict=True)]


def write(report: dict[str, Any], json_path: Path) -> Path:
    """Write the JSON and, beside it, the Markdown; returns the Markdown's path."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    markdown_path = json_path.with_suffix(".md")
    markdown_path.write_text(markdown(report))
    return markdown_path


def _gist(message: str) -> str:
    """A failure's first line and, if it goes on (a log's tail), the last line that names
    an error (or its last line)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    if len(lines) < 2:
        return lines[0] if lines else ""
    errors = [line for line in lines[1:] if "Error" in line or "Exception" in line]
    return f"{lines[0]} … {(errors or lines)[-1][:300]}"


def _cell(value: Any) -> str:
    return "—" if value is None else str(value)


def results_table(report: dict[str, Any]) -> str:
    lines = []
    for photo, by_system in report["results"].items():
        about = report["photos"][photo]
        lines += [f"### {photo}: {about['width']}x{about['height']} {about['format']}, "
                  f"{about['bytes'] / 1e6:.2f} MB", "",
                  "| system | served img/s (median) | rounds min–max | p50 ms | p99 ms | "
                  "server CPU ms/img | errors | ConvZoo ÷ system (median; per round) |",
                  "|---|---:|---:|---:|---:|---:|---:|---|"]
        for name, figures in by_system.items():
            per_round = ", ".join(_cell(r) for r in figures.get("convzoo_ratio_rounds", []))
            lines.append(
                f"| {report['systems'][name]['title']} | {figures['images_per_s']} | "
                f"{figures['images_per_s_min']}–{figures['images_per_s_max']} | "
                f"{_cell(figures['p50_ms'])} | {_cell(figures['p99_ms'])} | "
                f"{_cell(figures.get('server_cpu_ms_per_image'))} | {figures['errors']} | "
                f"{_cell(figures.get('convzoo_ratio'))} ({per_round}) |")
        for name, reason in report["excluded"].get(photo, {}).items():
            lines.append(f"| {report['systems'][name]['title']} | not measured: {reason} "
                         "| | | | | | |")
        lines.append("")
    return "\n".join(lines)


def markdown(report: dict[str, Any]) -> str:
    settings, machine = report["settings"], report["machine"]
    lines = ["# ConvZoo against the serving systems users would pick instead", "",
             f"{report['date']}; {machine['cpu_model']}, {machine['cores']} usable cores; "
             f"Python {machine['python']}. {settings['clients']} concurrent clients, "
             f"{settings['rounds']} round(s) of {settings['seconds']:g} s per system and photo "
             f"(systems alternate within each round), after {settings['warmup_seconds']:g} s "
             "of unmeasured warm-up. While one system is measured the others are paused "
             "(SIGSTOP); idle CPU is each system's use with no request, alone.", "",
             "## Systems", "",
             "| system | versions | layout | request | idle CPU % |", "|---|---|---|---|---:|"]
    idle = report.get("idle_cpu_percent", {})
    for name, about in report["systems"].items():
        versions = ", ".join(f"{k} {v}" for k, v in about["versions"].items())
        if "served_from" in about:  # ConvZoo: which checkout, at which commit
            versions = (f"{about['commit'] or 'no git commit'}, served from "
                        f"{about['served_from']}; {versions}")
        lines.append(f"| {about['title']} | {versions} | {about['layout']} | "
                     f"{about['request']} | {_cell(idle.get(name))} |")
    if report["skipped"]:
        lines += ["", "Not run (the JSON report has the servers' log tails):", ""] + [
            f"- {name}: {_gist(why)}" for name, why in report["skipped"].items()]
    if report.get("retried_starts"):
        lines += ["", "Started on a second try, after:", ""] + [
            f"- {name}: {_gist(why)}" for name, why in report["retried_starts"].items()]
    names = list(report["systems"])
    lines += ["", "## Top-1 agreement (each system's best label for each photo)", "",
              "| photo | " + " | ".join(report["systems"][n]["title"] for n in names) + " |",
              "|---|" + "---|" * len(names)]
    for photo, labels in report["top1"].items():
        lines.append(f"| {photo} | " + " | ".join(_cell(labels.get(n)) for n in names) + " |")
    lines += ["", "## Served throughput and latency", "", results_table(report)]
    return "\n".join(lines)
