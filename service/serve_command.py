"""What the `bentoml serve` command that imports this service was asked for, acted on before
BentoML acts on it.

`bentoml serve` imports the service module in its own process (the supervisor) before it
starts anything, inside its click command, whose options (`--host`, `--port`,
`--ssl-certfile`, ...) are BentoML's documented command line. Two things are settled there:

* BentoML's start-up line names its URL `http://` unless its `ssl.enabled` setting is on,
  which `--ssl-certfile` does not turn on: `rest_ssl_options` turns it on when that option
  is given, so an HTTPS server's log says `https://`.
* `bentoml serve` empties `$BENTOML_HOME/prometheus_multiproc_dir` as it starts, where every
  server on that BentoML home keeps its multiprocess metrics: a second server on the same
  home would wipe the first one's /metrics (issue 18). BentoML offers no setting for that
  directory, so `check_metrics_dir_unshared` refuses to start while a live process still
  writes there, and says how to give the new server a home of its own that shares the
  model store.

In the worker processes, and wherever the module is imported outside `bentoml serve`, both
do nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from service.core.config import DEFAULT_CONFIG_PATH

SERVE_COMMAND = "bentoml serve"
METRICS_DIR_NAME = "prometheus_multiproc_dir"  # BentoML's, under its home


def serve_options() -> dict[str, Any] | None:
    """The options `bentoml serve` was given, when this process is that command."""
    context = click.get_current_context(silent=True)
    if context is None or context.command_path != SERVE_COMMAND:
        return None
    return dict(context.params)


def rest_ssl_options(options: dict[str, Any] | None) -> dict[str, Any]:
    """BentoML's `ssl` service setting: enabled when `--ssl-certfile` was given."""
    return {"enabled": True} if options and options.get("ssl_certfile") else {}


def bentoml_home() -> Path:
    """BentoML's home as BentoML resolves it: $BENTOML_HOME, else ~/bentoml."""
    home = os.environ.get("BENTOML_HOME", os.path.join("~", "bentoml"))
    while (expanded := os.path.expanduser(os.path.expandvars(home))) != home:
        home = expanded
    return Path(home)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def live_writers(metrics_dir: Path) -> list[int]:
    """Live processes with multiprocess metric files in `metrics_dir`.

    prometheus_client names each file `<type>_<pid>.db` or `gauge_<mode>_<pid>.db`; files of
    dead processes are what a crashed server left, which BentoML may well clear."""
    pids = set()
    for path in metrics_dir.glob("*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and int(pid) != os.getpid() and _pid_alive(int(pid)):
            pids.add(int(pid))
    return sorted(pids)


def check_metrics_dir_unshared(options: dict[str, Any] | None) -> None:
    """Refuse to start (a click error: `bentoml serve` prints it and exits 1) when another
    live server writes its metrics where this one's start would wipe them."""
    if options is None:
        return
    home = bentoml_home()
    writers = live_writers(home / METRICS_DIR_NAME)
    if not writers:
        return
    config = os.environ.get("CONVZOO_CONFIG") or DEFAULT_CONFIG_PATH
    raise click.ClickException(
        f"another server (pid {', '.join(map(str, writers))}) keeps its metrics in "
        f"{home / METRICS_DIR_NAME}, which `bentoml serve` empties as it starts: starting "
        "here would wipe that server's /metrics. Give this server a BentoML home of its own "
        "that shares the model store, and ports of its own (REST: --port; gRPC: grpc_port "
        "in its configuration), e.g.\n"
        f"  mkdir -p /tmp/convzoo-2 && ln -sfn {home / 'models'} /tmp/convzoo-2/models\n"
        f"  (cat {config}; echo 'grpc_port: 3003') > /tmp/convzoo-2/config.yaml\n"
        "  CONVZOO_CONFIG=/tmp/convzoo-2/config.yaml BENTOML_HOME=/tmp/convzoo-2 "
        "bentoml serve service.service:ConvZoo --port 3002")
