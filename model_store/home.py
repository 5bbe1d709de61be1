"""Which BentoML home (and so which model store) the command-line tools use.

The rule, the same for `make`, `python -m model_store`, `python -m tools.convzoo` and the
`convzoo` script, wherever they are run from:

1. `BENTOML_HOME` from the environment, when it is set;
2. else, when the code runs from a ConvZoo source checkout (an editable install or
   `PYTHONPATH`), that checkout's `.bentoml`, where `make` keeps the store;
3. else BentoML's own default, `~/bentoml`.

BentoML reads `BENTOML_HOME` once, when it first builds its store, so `use_store_home()` must
run before anything touches `bentoml.models`.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

PROJECT_NAME = "convzoo"


@dataclass(frozen=True)
class StoreHome:
    path: Path
    reason: str  # which step of the rule chose it, for `where` and error messages


def checkout_root() -> Path | None:
    """The source checkout this code runs from, or None for an installed copy."""
    root = Path(__file__).resolve().parent.parent
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None
    return root if project.get("name") == PROJECT_NAME else None


def resolve_store_home() -> StoreHome:
    configured = os.environ.get("BENTOML_HOME")
    if configured:
        return StoreHome(Path(configured), "BENTOML_HOME is set")
    root = checkout_root()
    if root is not None:
        return StoreHome(root / ".bentoml", f"the checkout's store ({root}), as make uses")
    return StoreHome(Path.home() / "bentoml", "BentoML's default (no checkout, no BENTOML_HOME)")


def use_store_home() -> StoreHome:
    """Resolve the home and export it, so that BentoML and child processes use the same."""
    home = resolve_store_home()
    os.environ["BENTOML_HOME"] = str(home.path)
    return home
