"""The docs pages themselves, with nothing run: every fenced block is tagged and marked well,
and every command block names only what exists (the paths, `python -m` modules, make targets
and virtual-environment programs it uses), the skipped blocks' included, their `# needs:`
reasons too. The blocks themselves run in tests/integration/test_docs.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs.blocks import Block, DocBlockError, doc_blocks
from tests.docs.references import missing_references, unknown_options

ROOT = Path(__file__).resolve().parents[2]
BLOCKS = doc_blocks(ROOT)
COMMANDS = [block for block in BLOCKS if block.is_command]


def test_every_block_is_tagged_and_marked_well():
    """An untagged block, an unknown tag or a `# needs:` without reason fails here, all named."""
    problems = []
    for block in BLOCKS:
        try:
            block.check()
        except DocBlockError as error:
            problems.append(str(error))
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("block", COMMANDS, ids=lambda b: b.name)
def test_block_names_what_exists(block: Block):
    assert missing_references(block, ROOT) == [], block.name


@pytest.mark.parametrize("block", COMMANDS, ids=lambda b: b.name)
def test_block_passes_only_options_its_modules_take(block: Block):
    assert unknown_options(block) == [], block.name


def test_a_misspelt_or_removed_option_is_reported():
    block = Block("docs/page.md", 3, "sh",
                  "# needs: a GPU\n"
                  "python -m model_store pull --family resnet --famly x\n"
                  "BENTOML_HOME=x .venv/bin/python -m tools.evaluate --photos --crops 10 \\\n"
                  "    --crop-size 3   # --not-an-option in a comment\n")
    assert unknown_options(block) == ["python -m model_store: no option --famly",
                                      "python -m tools.evaluate: no option --crop-size"]


def test_a_renamed_test_file_module_or_target_is_reported(tmp_path):
    (tmp_path / "Makefile").write_text("models: setup\n\techo\nPYTHON ?= python3\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_here.py").write_text("")
    block = Block("docs/page.md", 3, "sh",
                  "# needs: a GPU; tests/test_gone.py runs its quick mode\n"
                  "pytest tests/test_here.py::test_x tests/test_moved.py\n"
                  "python -m tools.no_such_tool --flag\n"
                  "python -m tools.evaluate --help\n"
                  "make BENCH_ARGS=x bench\n"
                  "make models\n"
                  ".venv/bin/no-such-program\n"
                  "kubectl -n convzoo rollout status deploy/convzoo\n"
                  "kubectl apply -k deploy/k8s-moved\n")
    # deploy/convzoo is a Kubernetes resource, not a path; kubectl's -k names a folder.
    assert missing_references(block, tmp_path) == [
        "deploy/k8s-moved: no such file or folder",
        "tests/test_gone.py: no such file or folder",
        "tests/test_moved.py: no such file or folder",
        "python -m tools.no_such_tool: no such module",
        "make bench: no such target in the Makefile",
        ".venv/bin/no-such-program: not in the virtual environment",
    ]
