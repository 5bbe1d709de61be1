"""What each install of ConvZoo puts on disk: the serving-only install, the model-import extra,
and everything, from the installed distributions themselves.

For a checkout's pyproject.toml and a set of its extras, the requirements are resolved against
this environment's installed distributions (their own `Requires-Dist`, environment markers
and extras evaluated), and the files each distribution's RECORD lists are measured on disk.
The sum is the size of a virtual environment made with that set (less pip and setuptools,
which every environment has), and the largest distributions say where it goes. It needs every
distribution of the set installed here (`make setup` installs them all), and reports any it
does not find instead of guessing its size.

    python -m tools.install_size                   # this checkout: serving, import, all
    python -m tools.install_size --root ../old     # another checkout's pyproject, same env
    python -m tools.install_size --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "convzoo"
# The installs to measure: name -> extras of the project.
INSTALLS = {"serving": (), "import": ("import",), "all": ("import", "bench", "dev")}


@dataclass
class Closure:
    distributions: dict[str, int] = field(default_factory=dict)  # name -> bytes
    missing: set[str] = field(default_factory=set)

    @property
    def total_bytes(self) -> int:
        return sum(self.distributions.values())


def project_requirements(root: Path, extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    texts = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        texts.extend(optional.get(extra, []))
    return [Requirement(text) for text in texts]


def installed_bytes(distribution: metadata.Distribution) -> int:
    """The size on disk of the files the distribution's RECORD lists."""
    total = 0
    for file in distribution.files or ():
        path = Path(distribution.locate_file(file))
        if path.is_file():
            total += path.stat().st_size
    return total


def closure(requirements: list[Requirement]) -> Closure:
    """The installed distributions `requirements` need, transitively, with their sizes."""
    result = Closure()
    pending = [(requirement, "") for requirement in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        requirement, extra = pending.pop()
        environment = {**default_environment(), "extra": extra}
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        if name == PROJECT:  # the project's own extras, e.g. dev = ["convzoo[import]"]
            continue
        key = (name, frozenset(requirement.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            result.missing.add(name)
            continue
        result.distributions.setdefault(name, installed_bytes(distribution))
        for text in distribution.requires or ():
            dependency = Requirement(text)
            for wanted in ("", *requirement.extras):
                pending.append((dependency, wanted))
    return result


def project_extras_of(root: Path, extras: tuple[str, ...]) -> tuple[str, ...]:
    """`extras` with the project's own extras they name (dev = ["convzoo[import]"])."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    optional = project.get("optional-dependencies", {})
    found, pending = list(extras), list(extras)
    while pending:
        for text in optional.get(pending.pop(), []):
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) == PROJECT:
                for extra in requirement.extras:
                    if extra not in found:
                        found.append(extra)
                        pending.append(extra)
    return tuple(found)


def measure(root: Path) -> dict[str, dict]:
    report = {}
    for install, extras in INSTALLS.items():
        extras = project_extras_of(root, extras)
        found = closure(project_requirements(root, extras))
        largest = sorted(found.distributions.items(), key=lambda item: -item[1])[:8]
        report[install] = {
            "extras": list(extras), "distributions": len(found.distributions),
            "megabytes": round(found.total_bytes / 1e6, 1),
            "largest_mb": {name: round(size / 1e6, 1) for name, size in largest},
            "missing": sorted(found.missing)}
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.install_size", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the checkout whose pyproject.toml is measured (default: this)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = measure(args.root.resolve())
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"installs of {args.root.resolve()} (sizes of this environment's distributions)")
    for install, row in report.items():
        extras = f"[{','.join(row['extras'])}]" if row["extras"] else ""
        print(f"  {install:<8} convzoo{extras:<22} {row['megabytes']:>8.1f} MB in "
              f"{row['distributions']} distributions")
        print("           largest: " + ", ".join(f"{name} {size:.0f}"
                                                 for name, size in row["largest_mb"].items()))
        if row["missing"]:
            print(f"           not installed here, not counted: {', '.join(row['missing'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
