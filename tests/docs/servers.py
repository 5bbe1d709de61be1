"""Blocks that start a server (`make serve`, `bentoml serve ...`): run in the background, in a
network namespace of their own, until ready.

Such a command runs until stopped, and on the ports the docs name (3000, 3001: `make serve`
and service/config.yaml fix them, so the port substitution cannot reach them). The block
therefore runs in a fresh network namespace (`unshare -n`, loopback up), where those ports
are its own whatever the machine runs, without the port substitution (its other commands,
if any, reach its own server); the server command runs in the background, its output in
`server.log`, and the block goes on once `/readyz` on its port answers 200 (https when the
command passes `--ssl-certfile`), or fails with the log's tail when the server exits or is
not ready within READY_TIMEOUT_S. The server is stopped when the block ends.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess

READY_TIMEOUT_S = 240
SERVER_COMMAND = re.compile(r"(?:^|[\s;&|(])(?:make(?:\s+-o\s+\S+)?\s+serve|\S*bentoml\s+serve)\b")
TRAILING_COMMENT = re.compile(r"\s+#[^'\"]*$")

# Defined in the block's prelude: wait for the last background command's /readyz.
WAIT_READY = (
    "docs_wait_ready() { local url=$1 pid=$! ; "
    f"for _ in $(seq {READY_TIMEOUT_S}); do "
    "curl -sk -o /dev/null \"$url\" 2>/dev/null && return 0; "
    "kill -0 \"$pid\" 2>/dev/null || { echo \"the server exited:\"; tail -n 40 server.log; "
    "return 1; }; sleep 1; done; "
    f"echo \"not ready after {READY_TIMEOUT_S} s:\"; tail -n 40 server.log; return 1; }}\n")


def starts_server(text: str) -> bool:
    return any(is_server(command) for command, _ in logical_commands(text))


def is_server(command: str) -> bool:
    """Whether one logical command starts a server (comments do not count)."""
    if command.lstrip().startswith("#"):
        return False
    return SERVER_COMMAND.search(TRAILING_COMMENT.sub("", command)) is not None


def logical_commands(text: str) -> list[tuple[str, int]]:
    """Each command with its continuation lines (a trailing backslash) joined, and the index
    of its last physical line."""
    commands, current = [], []
    for number, line in enumerate(text.splitlines()):
        current.append(line.rstrip("\\"))
        if not line.rstrip().endswith("\\"):
            commands.append((" ".join(current), number))
            current = []
    return commands


def in_background(text: str) -> str:
    """`text` with each server command sent to the background and waited for, on its own
    last line (so the lines keep their numbers)."""
    lines = text.splitlines()
    for command, last in logical_commands(text):
        if not is_server(command):
            continue
        port = re.search(r"--port[ =](\d+)", command)
        scheme = "https" if "--ssl-certfile" in command else "http"
        url = f"{scheme}://127.0.0.1:{port.group(1) if port else 3000}/readyz"
        lines[last] = (TRAILING_COMMENT.sub("", lines[last])
                       + f" > server.log 2>&1 & docs_wait_ready {url}")
    return "\n".join(lines) + "\n"


def namespace_command() -> list[str]:
    """The command prefix that runs a block in a new network namespace: a user namespace
    with it where not root (unprivileged user namespaces), as `unshare -n` needs CAP_SYS_ADMIN."""
    return ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]


@functools.cache
def namespace_problem() -> str | None:
    """Why this machine cannot give a block a network namespace, or None when it can."""
    try:
        probe = subprocess.run([*namespace_command(), "ip", "link", "set", "lo", "up"],
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        return str(error)
    return None if probe.returncode == 0 else probe.stderr.strip() or f"exit {probe.returncode}"
