"""The fenced blocks of the docs, read and classified: what the docs tests run, skip or parse.

Pure: reads markdown text, runs nothing. Every fenced block carries a tag (its info string):
- `sh`, `bash`, `python`: commands, run by tests/integration/test_docs.py against a real
  server (runner.py says how);
- `json`, `yaml`: a file the docs tell the user to write or a response they will get; parsed;
- `text`, `output`, `console-output`: shown output or a listing; not run.
A fence with no tag, or a tag not above, is an error: the tests fail naming file and line.
A command block whose FIRST line is `# needs: <reason>` cannot run on a test machine (a GPU,
the internet, a cluster, a benchmark the lead runs by hand...): it is skipped with that
reason, and a `# needs:` with no reason, or anywhere but the first line, is an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

COMMAND_TAGS = frozenset({"sh", "bash", "python"})
DATA_TAGS = frozenset({"json", "yaml"})
OUTPUT_TAGS = frozenset({"text", "output", "console-output"})
KNOWN_TAGS = COMMAND_TAGS | DATA_TAGS | OUTPUT_TAGS

# The pages whose blocks are collected, relative to the checkout (issue 18).
DOC_GLOBS = ("README.md", "docs/*.md", "loadtest/README.md")

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
NEEDS = re.compile(r"^\s*#\s*needs\s*:(?P<reason>.*)$")


class DocBlockError(ValueError):
    """A block the docs tests cannot classify: no tag, an unknown tag, a bad `# needs:`."""


@dataclass(frozen=True)
class Block:
    path: str    # relative to the checkout, e.g. "docs/sdk.md"
    line: int    # the opening fence's line number, 1-based
    tag: str     # the info string's first word, "" when the fence has none
    text: str    # the block's content, without the fences

    @property
    def name(self) -> str:
        """How the tests name the block: `README.md:24`."""
        return f"{self.path}:{self.line}"

    @property
    def is_command(self) -> bool:
        return self.tag in COMMAND_TAGS

    @property
    def needs(self) -> str | None:
        """The reason this command block cannot run here, or None when it runs.

        Raises DocBlockError for a `# needs:` with no reason or not on the first line."""
        lines = self.text.splitlines()
        for number, line in enumerate(lines):
            marker = NEEDS.match(line)
            if marker is None:
                continue
            reason = marker.group("reason").strip()
            if not reason:
                raise DocBlockError(f"{self.name}: `# needs:` without a reason (say what the "
                                    "block needs that a test machine lacks)")
            if number == 0:
                return reason
            if NEEDS.match(lines[0]) is None:
                raise DocBlockError(
                    f"{self.name}: `# needs:` on line {number + 1} of the block; it goes on "
                    "the first line, where it skips the whole block")
        return None

    def check(self) -> None:
        """Raise DocBlockError if the block has no tag, an unknown tag or a bad marker."""
        if not self.tag:
            raise DocBlockError(
                f"{self.name}: a fenced block without a language; tag it with one of "
                f"{', '.join(sorted(KNOWN_TAGS))}")
        if self.tag not in KNOWN_TAGS:
            raise DocBlockError(f"{self.name}: unknown block tag {self.tag!r}; the docs tests "
                                f"know {', '.join(sorted(KNOWN_TAGS))}")
        if self.is_command:
            self.needs  # noqa: B018  (raises on a bad marker)


def blocks_in(text: str, path: str) -> list[Block]:
    """The fenced blocks of one markdown text, in order; an unclosed fence is an error."""
    lines = text.splitlines()
    found: list[Block] = []
    number = 0
    while number < len(lines):
        opening = FENCE.match(lines[number])
        if opening is None:
            number += 1
            continue
        fence = opening.group("fence")
        close = re.compile(rf"^\s*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = number + 1
        while end < len(lines) and not close.match(lines[end]):
            end += 1
        if end == len(lines):
            raise DocBlockError(f"{path}:{number + 1}: a fence that is never closed")
        indent = len(opening.group("indent"))
        body = [line[indent:] if line[:indent].isspace() else line
                for line in lines[number + 1:end]]
        info = opening.group("info").strip()
        found.append(Block(path, number + 1, info.split()[0] if info else "",
                           "\n".join(body) + "\n"))
        number = end + 1
    return found


def doc_pages(root: Path) -> list[Path]:
    """The collected pages under `root`, in a stable order."""
    pages: list[Path] = []
    for pattern in DOC_GLOBS:
        pages.extend(sorted(root.glob(pattern)))
    return pages


def doc_blocks(root: Path) -> list[Block]:
    """Every fenced block of every collected page under `root`."""
    return [block for page in doc_pages(root)
            for block in blocks_in(page.read_text(), page.relative_to(root).as_posix())]
