"""How a docs command block runs against the test server: one fixed substitution, then bash
or Python in a scratch checkout.

The docs address the server as a user's `make serve` does; the tests' server listens on free
ports. The rule, the only change made to a block's text (documented in docs/architecture.md,
"Docs as tests"):
- `localhost:3000` and `127.0.0.1:3000` become the test server's REST address,
  `localhost:3001` and `127.0.0.1:3001` its gRPC address;
- `make` at the start of a command gets `-o .venv/.installed-stamp`: the set-up is done, so
  make never re-runs `setup` (which would re-install the virtual environment) for `make models`.
And the environment every block runs in (no text changes): the working directory is a scratch
copy of the checkout's tracked files, with `.venv` linked to the running virtual environment
(so `.venv/bin/...` works), `.bentoml` a copy of the test model store (BENTOML_HOME points at
it: a block that pulls, prunes or re-imports never touches the user's store), the photos the
docs name (cat.jpg, coffee.jpg: scikit-image's chelsea and coffee), PATH starting with the
virtual environment's bin/ (so `python`, `pytest`, `convzoo`, `bentoml` are its own),
PYTHONPATH the scratch checkout, and CURL_HOME tests/docs/curl, whose .curlrc says
`fail-with-body`: an HTTP error answer fails a `curl` command (curl exits 0 on a 404 or 500
otherwise), with the answer shown.

A block that starts a server runs in a network namespace of its own, on the documented ports
and without the substitution (tests/docs/servers.py).

sh/bash blocks run as one bash script under `set -euo pipefail`: a failing command fails the
block, and the error names the doc line. python blocks run as a script.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.docs import servers
from tests.docs.blocks import Block

DOCUMENTED_REST_PORT = 3000
DOCUMENTED_GRPC_PORT = 3001
BLOCK_TIMEOUT_S = 300
MAKE_STAMP = ".venv/.installed-stamp"   # Makefile's STAMP, relative to the checkout
CURL_HOME = Path(__file__).resolve().parent / "curl"

MAKE_AT_COMMAND_START = re.compile(r"^(?P<lead>\s*(?:[A-Za-z_][A-Za-z0-9_]*=\S*\s+)*)make\b",
                                   re.M)


@dataclass(frozen=True)
class Ports:
    rest: int
    grpc: int


def rewrite(text: str, ports: Ports | None) -> str:
    """The block's text with the documented ports replaced by the test server's (the rule
    above; not for a block that starts its own server, `ports` None); nothing else changes."""
    pairs = () if ports is None else ((DOCUMENTED_REST_PORT, ports.rest),
                                      (DOCUMENTED_GRPC_PORT, ports.grpc))
    for documented, actual in pairs:
        text = re.sub(rf"\b(?:localhost|127\.0\.0\.1):{documented}\b", f"127.0.0.1:{actual}",
                      text)
    return MAKE_AT_COMMAND_START.sub(rf"\g<lead>make -o {MAKE_STAMP}", text)


def make_scratch_checkout(root: Path, scratch: Path, store: Path) -> Path:
    """`scratch` made a checkout the docs' commands can run in (the module docstring)."""
    tracked = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], check=True,
                             capture_output=True).stdout.decode().split("\0")
    for name in filter(None, tracked):
        source = root / name
        if source.is_file():  # a file deleted but not yet committed is listed too
            (scratch / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, scratch / name)
    (scratch / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    shutil.copytree(store / "models", scratch / ".bentoml" / "models", symlinks=True)
    write_photos(scratch)
    return scratch


def write_photos(folder: Path) -> None:
    """cat.jpg and coffee.jpg as docs/sdk.md makes them: scikit-image's real photos."""
    from PIL import Image
    from skimage import data

    Image.fromarray(data.chelsea()).save(folder / "cat.jpg", quality=95)
    Image.fromarray(data.coffee()).save(folder / "coffee.jpg", quality=95)


def block_environment(scratch: Path) -> dict[str, str]:
    env = {**os.environ,
           "BENTOML_HOME": str(scratch / ".bentoml"),
           "BENTOML_DO_NOT_TRACK": "true",
           "PYTHONPATH": str(scratch),
           "PYTHONUNBUFFERED": "1",
           "CURL_HOME": str(CURL_HOME),
           "PATH": f"{Path(sys.prefix) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("CONVZOO_CONFIG", None)  # the docs' commands mean the checkout's configuration
    return env


@dataclass(frozen=True)
class Outcome:
    returncode: int
    output: str   # stdout and stderr, interleaved
    script: str   # what ran: the block after the substitution


def run_block(block: Block, ports: Ports, scratch: Path,
              timeout_s: float = BLOCK_TIMEOUT_S) -> Outcome:
    """Run a command block (rewritten) in `scratch`; its output and exit status."""
    script = rewrite(block.text, ports)
    namespace: list[str] = []
    if block.tag == "python":
        path = scratch / f"block_{Path(block.path).stem}_{block.line}.py"
        path.write_text(script)
        command = [sys.executable, str(path)]
    else:
        prelude = "set -euo pipefail\n"
        if servers.starts_server(block.text):
            namespace = servers.namespace_command()
            script = servers.in_background(rewrite(block.text, None))
            prelude += "ip link set lo up\n" + servers.WAIT_READY
        # The trap names the failing line as the doc numbers it (the fence is line 0).
        offset = prelude.count("\n") + 1
        prelude += (f"trap 'echo \"{block.path}:$(( {block.line} + LINENO - {offset} )): "
                    "exit $?: $BASH_COMMAND\" >&2' ERR\n")
        command = [*namespace, "bash", "-c", prelude + script]
    with subprocess.Popen(command, cwd=scratch, env=block_environment(scratch),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True) as process:
        try:
            output, _ = process.communicate(timeout=timeout_s)
            returncode = process.returncode
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output = process.communicate()[0] + b"\n[killed after %d s]\n" % timeout_s
            returncode = -signal.SIGKILL
        # The whole group: a server the block started, or commands that outlive bash.
        stop_group(process.pid)
    return Outcome(returncode, output.decode(errors="replace"), script)


def stop_group(leader: int, grace_s: float = 20) -> None:
    try:
        os.killpg(leader, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(leader, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.killpg(leader, signal.SIGKILL)


def check_block(block: Block, ports: Ports, scratch: Path) -> Outcome:
    """One docs item: fails on a badly tagged or marked block, skips a `# needs:` block with
    its reason, runs the others and fails naming the block, its command and its output."""
    block.check()
    if block.needs is not None:
        pytest.skip(f"{block.name} needs: {block.needs}")
    if block.tag != "python" and servers.starts_server(block.text):
        problem = servers.namespace_problem()
        if problem is not None:
            pytest.skip(f"{block.name} starts a server on the documented ports, which needs a "
                        f"network namespace of its own: `unshare -n` failed here ({problem})")
    outcome = run_block(block, ports, scratch)
    if outcome.returncode != 0:
        pytest.fail(f"{block.name} exited {outcome.returncode}; ran (after the substitution):\n"
                    f"{outcome.script}\noutput:\n{outcome.output[-6000:]}",
                    pytrace=False)
    return outcome
