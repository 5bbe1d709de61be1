"""The LeNet-5 figures the docs state are the ones a clean clone gets (issue 18).

Runs docs/accuracy.md's two commands on an empty model store: `python -m model_store pull
lenet5` trains seed 0 from scratch (about 25 s of CPU in a process of its own) and `python -m
tools.evaluate --digits-table` scores the seven rows (about 15 s), then compares what they
give with the doc's table (parsed from the doc, so an edit that drifts from the figures fails
here), with the weights' digest the doc states, and with README.md's held-out accuracy.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT
from tools.evaluate import DIGITS_TABLE, DIGITS_TABLE_HEADER

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACCURACY_DOC = ROOT / "docs" / "accuracy.md"
LENET_SECTION = "## LeNet-5 on the held-out digits"


def lenet_section() -> str:
    text = ACCURACY_DOC.read_text()
    start = text.index(LENET_SECTION)
    return text[start:text.index("\n## ", start + 1)]


def documented_table() -> list[str]:
    """The section's table, as lines, header and separator included."""
    lines = [line.strip() for line in lenet_section().splitlines()]
    start = lines.index(DIGITS_TABLE_HEADER[0])
    table = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        table.append(line)
    return table


def documented_versions() -> dict[str, str]:
    """The library versions the section says the figures were measured with."""
    section = " ".join(lenet_section().split())
    found = re.search(r"with torch (\S+), numpy (\S+), scikit-learn (\S+), Pillow (\S+) and "
                      r"Python (\S+?),? which", section)
    assert found, "docs/accuracy.md no longer names the versions its LeNet-5 figures need"
    names = ("torch", "numpy", "scikit-learn", "pillow", "python")
    return dict(zip(names, (v.rstrip(",") for v in found.groups()), strict=True))


def run(command: list[str], store: Path, timeout: float) -> str:
    env = {**os.environ, "BENTOML_HOME": str(store), "BENTOML_DO_NOT_TRACK": "true"}
    finished = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, text=True,
                              capture_output=True, timeout=timeout)
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout


@pytest.fixture(scope="module")
def fresh_store(tmp_path_factory) -> Path:
    """An empty BentoML home with LeNet-5 trained and stored by the documented command."""
    store = tmp_path_factory.mktemp("clean-clone-store")
    run(["-m", "model_store", "pull", "lenet5", "--force"], store, timeout=900)
    return store


@pytest.fixture(scope="module")
def training(fresh_store) -> dict:
    (record,) = (fresh_store / "models" / "lenet5").glob("*/convzoo.json")
    return json.loads(record.read_text())


LIBRARIES = ("torch", "numpy", "scikit-learn", "pillow")


def test_the_libraries_are_the_ones_the_figures_were_measured_with(training):
    # Other versions may train other weights, and then the doc's figures do not reproduce:
    # re-derive them with docs/accuracy.md's commands and update the versions it names.
    documented = {name: documented_versions()[name] for name in LIBRARIES}
    installed = {name: metadata.version(name) for name in LIBRARIES}
    assert installed == documented, "re-derive docs/accuracy.md's LeNet-5 figures"
    recorded = training["provenance"]["training"]["versions"]
    assert {name: recorded[name] for name in LIBRARIES} == documented


def test_a_fresh_training_gives_the_documented_weights_and_held_out_accuracy(training):
    section = " ".join(lenet_section().split())
    digest = training["files"]["weights.safetensors"]
    assert f"`{digest}`" in section, f"a fresh training's weights have sha256 {digest}"
    held_out = training["provenance"]["training"]["held_out_accuracy"]
    assert f"reported in PyTorch ({held_out:.5f}" in section
    percent = f"{100 * held_out:.2f}"
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"trained here on scikit-learn's digits, {percent}% held-out accuracy" in readme
    served_one_crop = documented_table()[2].split("|")[3].strip()
    assert served_one_crop == f"{percent} %"


def test_the_seven_rows_reproduce_from_the_fresh_store(fresh_store):
    table = run(["-m", "tools.evaluate", "--digits-table"], fresh_store,
                timeout=600).splitlines()
    assert len(table) == 2 + len(DIGITS_TABLE)
    assert table == documented_table()
