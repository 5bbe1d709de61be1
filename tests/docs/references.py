"""What a command block names that must exist in the checkout: files and folders, `python -m`
modules, make targets, the virtual environment's programs.

Checked for every command block, the skipped ones too (cheap, nothing runs), so that a block
marked `# needs:` still fails when a file it names is renamed, a module is removed or a make
target goes away; its `# needs:` reason is checked the same way (the test it points at must
exist). A path that git ignores (an output, e.g. loadtest/reports/) need not exist.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

from tests.docs.blocks import Block

# Top-level entries of the checkout a block may name by a relative path.
CHECKOUT_ENTRIES = ("clients", "contract", "deploy", "docs", "loadtest", "model_store",
                    "service", "tests", "tools")
CHECKOUT_PATH = re.compile(rf"(?<![\w./$-])((?:{'|'.join(CHECKOUT_ENTRIES)})/[\w./-]*\w)")
PYTHON_MODULE = re.compile(r"(?:^|\s)-m\s+([A-Za-z_][\w.]*)")
MAKE_TARGETS = re.compile(r"(?:^|[\s;&|(])make((?:\s+(?:[A-Z_]+=\S+|-\S+))*)\s+([a-z][\w-]*)")
VENV_PROGRAM = re.compile(r"(?:^|\s)\.venv/bin/([\w.-]+)")


# kubectl and helm name cluster resources (deploy/convzoo) as paths do; only their files count.
CLUSTER_COMMAND = re.compile(r"^\s*(?:kubectl|helm)\b")
CLUSTER_FILE = re.compile(r"\s(?:-k|-f|--filename|--kustomize|--values)\s+(\S+)")


def named_paths(text: str) -> set[str]:
    """The checkout paths `text` names (a pytest node id's `::test` left out)."""
    found: set[str] = set()
    for line in text.splitlines():
        if CLUSTER_COMMAND.match(line):
            line = " ".join(CLUSTER_FILE.findall(line))
        found.update(match.split("::")[0] for match in CHECKOUT_PATH.findall(line))
    return found


def missing_references(block: Block, root: Path) -> list[str]:
    """What `block` names that the checkout at `root` lacks, one line each."""
    text = block.text
    missing = []
    paths = sorted(named_paths(text))
    absent = [p for p in paths if not (root / p).exists()]
    missing += [f"{path}: no such file or folder" for path in absent
                if not git_ignores(root, path)]
    for module in sorted(set(PYTHON_MODULE.findall(text))):
        if module.split(".")[0] in {"pip", "venv", "json"}:
            continue
        if importlib.util.find_spec(module) is None:
            missing.append(f"python -m {module}: no such module")
    targets = make_targets(root / "Makefile")
    for _, target in MAKE_TARGETS.findall(text):
        if target not in targets:
            missing.append(f"make {target}: no such target in the Makefile")
    venv_bin = Path(sys.prefix) / "bin"
    for program in sorted(set(VENV_PROGRAM.findall(text))):
        if not (venv_bin / program).exists():
            missing.append(f".venv/bin/{program}: not in the virtual environment")
    return missing


def make_targets(makefile: Path) -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*)\s*:(?!=)", makefile.read_text(), re.M))


def git_ignores(root: Path, path: str) -> bool:
    return subprocess.run(["git", "-C", str(root), "check-ignore", "-q", "--no-index", path],
                          capture_output=True).returncode == 0
