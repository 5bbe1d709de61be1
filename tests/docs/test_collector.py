"""The docs collector itself (issue 18): a doc change that breaks a command fails its item,
an untagged block or a `# needs:` without reason fails, a `# needs: GPU` block is skipped
with its reason, and the port substitution is the documented one and no more."""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.docs import servers
from tests.docs.blocks import Block, DocBlockError, blocks_in, doc_blocks
from tests.docs.runner import Ports, check_block, rewrite

PORTS = Ports(rest=24001, grpc=24002)


def write_docs(root: Path, text: str) -> list[Block]:
    (root / "docs").mkdir()
    (root / "docs" / "page.md").write_text(text)
    return doc_blocks(root)


def test_a_failing_sh_block_fails_its_item_naming_the_doc_line(tmp_path):
    [block] = write_docs(tmp_path,
                         "# Page\n\n```sh\necho fine\nfalse   # broken\necho never\n```\n")
    assert block.name == "docs/page.md:3"
    with pytest.raises(pytest.fail.Exception) as failed:
        check_block(block, PORTS, tmp_path)
    message = str(failed.value)
    assert "docs/page.md:5: exit 1: false" in message   # the trap's line is the doc's line
    assert "never" not in message.split("output:")[1]


@pytest.mark.parametrize("script", [
    "false | true\n",            # pipefail
    "echo \"$NOT_SET_ANYWHERE\"\n",  # nounset
    "ls /no/such/folder\necho after\n",
])
def test_sh_blocks_run_with_set_euo_pipefail(tmp_path, script):
    block = Block("docs/page.md", 1, "sh", script)
    with pytest.raises(pytest.fail.Exception):
        check_block(block, PORTS, tmp_path)


def test_a_passing_sh_block_runs_in_the_scratch_folder(tmp_path):
    (tmp_path / "cat.jpg").write_bytes(b"x")
    outcome = check_block(Block("README.md", 7, "sh", "test -f cat.jpg && echo here\n"),
                          PORTS, tmp_path)
    assert outcome.output == "here\n"


@pytest.fixture
def http_404_server(tmp_path):
    """A loopback HTTP server of an empty folder: 404 to every file."""
    (tmp_path / "empty").mkdir()
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path / "empty"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_curl_fails_the_block_on_an_http_error(tmp_path, http_404_server):
    block = Block("README.md", 24, "sh",
                  f"curl -s localhost:{http_404_server}/no-such-file-here\n")
    with pytest.raises(pytest.fail.Exception, match="exit 22"):
        check_block(block, PORTS, tmp_path)


def test_a_python_block_runs_as_a_script_and_fails_on_an_exception(tmp_path):
    passing = Block("docs/sdk.md", 3, "python", "import sys\nprint(sys.argv[0].endswith('.py'))\n")
    assert check_block(passing, PORTS, tmp_path).output == "True\n"
    with pytest.raises(pytest.fail.Exception, match="ZeroDivisionError"):
        check_block(Block("docs/sdk.md", 9, "python", "1 / 0\n"), PORTS, tmp_path)


def test_an_untagged_block_fails_naming_it(tmp_path):
    [block] = write_docs(tmp_path, "text\n\n```\nsome listing\n```\n")
    with pytest.raises(DocBlockError, match=r"docs/page.md:3: a fenced block without a language"):
        block.check()
    with pytest.raises(DocBlockError):
        check_block(block, PORTS, tmp_path)


def test_an_unknown_tag_fails(tmp_path):
    [block] = write_docs(tmp_path, "```shell\necho hi\n```\n")
    with pytest.raises(DocBlockError, match="unknown block tag 'shell'"):
        block.check()


@pytest.mark.parametrize("marker", ["# needs:", "# needs:   ", "#needs:"])
def test_a_needs_marker_without_reason_fails(tmp_path, marker):
    [block] = write_docs(tmp_path, f"```sh\n{marker}\nnvidia-smi\n```\n")
    with pytest.raises(DocBlockError, match="without a reason"):
        check_block(block, PORTS, tmp_path)


def test_a_needs_marker_below_the_first_line_fails(tmp_path):
    [block] = write_docs(tmp_path, "```sh\necho hi\n# needs: GPU\nnvidia-smi\n```\n")
    with pytest.raises(DocBlockError, match="on line 2 of the block"):
        block.check()


def test_a_needs_gpu_block_is_skipped_with_its_reason(tmp_path):
    [block] = write_docs(tmp_path, "```sh\n# needs: GPU\nnvidia-smi\nexit 1\n```\n")
    with pytest.raises(pytest.skip.Exception, match="^docs/page.md:1 needs: GPU$"):
        check_block(block, PORTS, tmp_path)


def test_later_needs_lines_of_a_skipped_block_are_comments():
    text = "```sh\n# needs: internet\nwget x\n# needs: that mirror\npull\n```\n"
    [block] = blocks_in(text, "README.md")
    block.check()
    assert block.needs == "internet"


def test_output_and_data_blocks_are_not_commands():
    text = ("```json\n{\"a\": 1}\n```\n\n```yaml\nk: v\n```\n\n```text\nls\n```\n\n"
            "```output\nrank  label\n```\n\n```python\nprint(1)\n```\n")
    blocks = blocks_in(text, "README.md")
    assert [b.tag for b in blocks] == ["json", "yaml", "text", "output", "python"]
    assert [b.is_command for b in blocks] == [False, False, False, False, True]
    assert [b.line for b in blocks] == [1, 5, 9, 13, 17]


def test_an_unclosed_fence_fails():
    with pytest.raises(DocBlockError, match="README.md:2: a fence that is never closed"):
        blocks_in("intro\n```sh\necho hi\n", "README.md")


def test_indented_blocks_lose_their_list_indent():
    [block] = blocks_in("1. step\n\n   ```sh\n   echo hi\n   ```\n", "README.md")
    assert block.text == "echo hi\n"


def test_the_substitution_changes_the_documented_ports_and_make_only():
    text = ("curl -F image=@cat.jpg localhost:3000/classify\n"
            "python -m clients classify cat.jpg --url http://127.0.0.1:3000 --grpc "
            "--url localhost:3001\n"
            "CONVZOO_SLO_P95_MS=250 make loadtest\n"
            "make models   # make's own words stay: remake\n"
            "echo localhost:30001 port 3000 cmake x\n")
    assert rewrite(text, PORTS) == (
        "curl -F image=@cat.jpg 127.0.0.1:24001/classify\n"
        "python -m clients classify cat.jpg --url http://127.0.0.1:24001 --grpc "
        "--url 127.0.0.1:24002\n"
        "CONVZOO_SLO_P95_MS=250 make -o .venv/.installed-stamp loadtest\n"
        "make -o .venv/.installed-stamp models   # make's own words stay: remake\n"
        "echo localhost:30001 port 3000 cmake x\n")


def test_a_server_command_goes_to_the_background_and_is_waited_for_on_its_own_line():
    text = ("(cat a; printf 'b') > tls.yaml\n"
            "CONVZOO_CONFIG=tls.yaml .venv/bin/bentoml serve service.service:ConvZoo \\\n"
            "    --port 3000 --ssl-certfile cert.pem --ssl-keyfile key.pem\n"
            "curl --cacert cert.pem https://localhost:3000/readyz\n")
    assert servers.starts_server(text)
    lines = servers.in_background(text).splitlines()
    assert lines[:2] == text.splitlines()[:2]
    assert lines[2] == ("    --port 3000 --ssl-certfile cert.pem --ssl-keyfile key.pem"
                        " > server.log 2>&1 & docs_wait_ready https://127.0.0.1:3000/readyz")
    assert lines[3] == text.splitlines()[3]


def test_make_serve_loses_its_comment_and_waits_on_the_documented_port():
    text = "make -o .venv/.installed-stamp serve   # set-up, then REST :3000\n"
    assert servers.in_background(text) == (
        "make -o .venv/.installed-stamp serve > server.log 2>&1 & "
        "docs_wait_ready http://127.0.0.1:3000/readyz\n")


@pytest.mark.parametrize("text", ["make models\n", "make test\n", "# make serve later\n",
                                  "make models   # then make serve\n",
                                  "python -m tools.convzoo_serve_notes\n",
                                  "echo observe\n"])
def test_other_commands_start_no_server(text):
    assert not servers.starts_server(text)
