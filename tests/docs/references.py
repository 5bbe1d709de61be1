"""What a command block names that must exist in the checkout: files and folders, `python -m`
modules and their options, make targets, the virtual environment's programs.

Checked for every command block, the skipped ones too (cheap, nothing runs), so that a block
marked `# needs:` still fails when a file it names is renamed, a module is removed or a make
target goes away; its `# needs:` reason is checked the same way (the test it points at must
exist). A path that git ignores (an output, e.g. loadtest/reports/) need not exist. A
module's options are read from its argparse parsers, built by running the module up to its
parse and no further; a command with subcommands is checked against all of theirs together.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from unittest import mock

from tests.docs.blocks import Block
from tests.docs.servers import logical_commands

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


class _Parsed(Exception):
    """Raised instead of parsing: the command line is never acted on."""


OPTION = re.compile(r"(?<![\w-])(--[a-z][\w-]*)")


@functools.cache
def module_options(module: str) -> frozenset[str] | None:
    """Every `--option` the argparse parsers of `python -m module` accept (its subcommands'
    included), found by running the module up to its parse and no further; None when it
    builds no argparse parser."""
    parsers: list[argparse.ArgumentParser] = []
    original_init = argparse.ArgumentParser.__init__

    def record(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        parsers.append(self)

    def stop(self, *args, **kwargs):
        raise _Parsed

    with (mock.patch.object(argparse.ArgumentParser, "__init__", record),
          mock.patch.object(argparse.ArgumentParser, "parse_known_args", stop),
          mock.patch.object(sys, "argv", [module]),
          mock.patch.dict(os.environ),   # whatever a module sets before its parse is undone
          contextlib.redirect_stdout(io.StringIO()),
          contextlib.suppress(_Parsed, SystemExit)):
        runpy.run_module(module, run_name="__main__", alter_sys=False)
    if not parsers:
        return None
    return frozenset(option for parser in parsers
                     for option in OPTION.findall(parser.format_help()))


def unknown_options(block: Block) -> list[str]:
    """The `--options` a block passes to a `python -m` module that the module does not take."""
    problems = []
    for command, _ in logical_commands(block.text):
        command = command.split(" #")[0]
        module = PYTHON_MODULE.search(command)
        if module is None or command.lstrip().startswith("#"):
            continue
        accepted = module_options(module.group(1))
        if accepted is None:
            continue
        used = OPTION.findall(command[module.end():])
        problems += [f"python -m {module.group(1)}: no option {option}"
                     for option in used if option not in accepted and option != "--help"]
    return problems
