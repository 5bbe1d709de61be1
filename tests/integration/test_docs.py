"""Docs as tests (issue 18): every command block of README.md, docs/*.md and
loadtest/README.md runs against a real server, one item a block (`test_block[README.md:24]`).

The collector (tests/docs/blocks.py) classifies the blocks; tests/docs/runner.py runs them
with one fixed, documented substitution (the documented ports 3000/3001 become the test
server's, `make` does not redo the set-up) in a scratch copy of the checkout with a copy of
the model store. A block marked `# needs: <reason>` on its first line is skipped with the
reason (`pytest -rs` lists them); json and yaml blocks are parsed; an untagged block fails.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import httpx
import pytest
import yaml

from service.core.config import load_config
from tests.docs.blocks import Block, doc_blocks
from tests.docs.runner import Ports, check_block, make_scratch_checkout
from tests.integration.conftest import ROOT, LiveServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BLOCKS = doc_blocks(ROOT)
COMMANDS = [b for b in BLOCKS if b.is_command]
DATA = [b for b in BLOCKS if b.tag in ("json", "yaml")]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """The checkout copy the blocks run in (tests/docs/runner.py), with the store the
    server serves copied."""
    folder = tmp_path_factory.mktemp("docs-checkout")
    return make_scratch_checkout(ROOT, folder, Path(os.environ["BENTOML_HOME"]))


@pytest.fixture(scope="module")
def ports(server: LiveServer) -> Ports:
    return Ports(rest=int(server.http_url.rpartition(":")[2]),
                 grpc=int(server.grpc_target.rpartition(":")[2]))


@pytest.mark.parametrize("block", COMMANDS, ids=lambda b: b.name)
def test_block(block: Block, ports: Ports, scratch):
    check_block(block, ports, scratch)


@pytest.mark.parametrize("block", DATA, ids=lambda b: b.name)
def test_data_block_parses(block: Block, tmp_path):
    """json: a response the docs show; yaml: the service's configuration (the one YAML a user
    writes for ConvZoo; deploy/'s files are tested in tests/deploy), so it must also load."""
    if block.tag == "json":
        json.loads(block.text)
        return
    assert isinstance(yaml.safe_load(block.text), dict), block.name
    config = tmp_path / "convzoo.yaml"
    config.write_text(block.text)
    load_config(config)  # ValueError naming an unknown key or a bad value

CLI_SAMPLE = re.compile(
    r"^(?P<command>\S*python -m clients classify cat\.jpg .*--top-k (?P<k>\d+).*)$",
    re.M)
RANK_ROW = re.compile(r"^\s+\d+\s+\d+\s+\S.*\s\d\.\d{4}$")


def test_cli_sample_output_has_the_shape_the_command_gives(ports: Ports, scratch):
    """docs/sdk.md's CLI sample: as many rows as its command's --top-k, and so does the CLI
    when that command runs (the figures themselves are not compared)."""
    sdk = [b for b in BLOCKS if b.path == "docs/sdk.md"]
    command_block = next(b for b in sdk if b.is_command and CLI_SAMPLE.search(b.text))
    sample = next(b for b in sdk if b.tag == "output" and b.line > command_block.line)
    match = CLI_SAMPLE.search(command_block.text)
    top_k = int(match.group("k"))
    documented = sample.text.splitlines()
    assert len([line for line in documented if RANK_ROW.match(line)]) == top_k, sample.name

    outcome = check_block(Block(command_block.path, command_block.line, "sh",
                                match.group("command") + "\n"), ports, scratch)
    printed = outcome.output.splitlines()
    assert printed[0] == documented[0]                    # cat.jpg: efficientnet_lite0 (...)
    assert printed[1].split() == documented[1].split()    # rank index label score
    assert len([line for line in printed if RANK_ROW.match(line)]) == top_k, outcome.output


def keys_missing(documented, actual, where: str = "") -> list[str]:
    """The keys a documented JSON excerpt shows that the actual answer lacks (recursively;
    `"..."` stands for keys the excerpt leaves out; lists compare their first element)."""
    if isinstance(documented, dict):
        if not isinstance(actual, dict):
            return [f"{where or '.'}: documented an object, got {type(actual).__name__}"]
        return [missing for key, value in documented.items() if key != "..."
                for missing in ([f"{where}.{key}"] if key not in actual
                                else keys_missing(value, actual[key], f"{where}.{key}"))]
    if isinstance(documented, list) and documented and isinstance(documented[0], dict):
        if not actual:
            return [f"{where}: documented a list of objects, got {actual!r}"]
        return keys_missing(documented[0], actual[0], f"{where}[0]")
    return []


def json_after(command_block: Block) -> Block:
    """The json block that shows what `command_block` answers: the next block of its page."""
    page = [b for b in BLOCKS if b.path == command_block.path]
    following = page[page.index(command_block) + 1]
    assert following.tag == "json", f"{command_block.name}: the next block is not its json"
    return following


def test_select_answer_has_the_documented_shape(ports: Ports, scratch):
    """docs/selection.md's /select command answers with every key of the documented answer
    (values differ by machine and are not compared), and with its top_k predictions."""
    command = next(b for b in BLOCKS if b.path == "docs/selection.md" and b.is_command
                   and "/select" in b.text and b.needs is None)
    documented = json.loads(json_after(command).text)
    answer = json.loads(check_block(command, ports, scratch).output)
    assert keys_missing(documented, answer) == []
    top_k = int(re.search(r"top_k=(\d+)", command.text).group(1))
    assert len(answer["predictions"]) == top_k == len(documented["predictions"])


def test_model_description_has_the_documented_execution_keys(server: LiveServer):
    """docs/gpu.md's excerpt of GET /models/{name}: every key it shows is in the answer."""
    excerpt = next(b for b in BLOCKS if b.path == "docs/gpu.md" and b.tag == "json")
    answer = httpx.get(f"{server.http_url}/models/efficientnet_lite0", timeout=60)
    answer.raise_for_status()
    assert keys_missing(json.loads(excerpt.text), answer.json()) == []
