"""`convzoo`: one command for the model store, the server and the client.

  convzoo models ...     the model store CLI (`python -m model_store ...`)
  convzoo serve          the service, as `make serve` runs it (REST :3000, gRPC :3001)
  convzoo classify ...   the client CLI's classify (`python -m clients classify ...`)
  convzoo embed ...      the client CLI's embed (`python -m clients embed ...`)

`models` and `serve` use the same model store as `make`, wherever they are run: BENTOML_HOME
if set, else the checkout's `.bentoml`, else BentoML's default `~/bentoml` (model_store.home).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

SERVICE = "service.service:ConvZoo"


def serve_command(host: str, port: int, extra: Sequence[str]) -> list[str]:
    """`bentoml serve` from this interpreter's environment, as the Makefile's serve target."""
    bentoml = Path(sys.executable).parent / "bentoml"
    launcher = [str(bentoml)] if bentoml.exists() else [sys.executable, "-m", "bentoml"]
    return [*launcher, "serve", SERVICE, "--host", host, "--port", str(port), *extra]


def serve(argv: Sequence[str]) -> int:
    from model_store.home import checkout_root, use_store_home

    parser = argparse.ArgumentParser(
        prog="convzoo serve",
        description="Start the ConvZoo service as `make serve` does: the embedded default "
        "models are pulled if missing, then `bentoml serve " + SERVICE + "`. Arguments "
        "not listed here go to `bentoml serve` (e.g. --ssl-certfile).")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--no-pull", action="store_true",
                        help="do not pull the embedded default models first")
    args, extra = parser.parse_known_args(argv)
    home = use_store_home()
    print(f"convzoo: model store {home.path / 'models'} ({home.reason})", file=sys.stderr)
    if not args.no_pull:
        from model_store.cli import main as models_main

        # `make models`: idempotent, so quick when the defaults are stored.
        status = models_main(["pull", "--no-progress"], prog="convzoo models")
        if status != 0:
            return status
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
    os.environ["PYTHONUNBUFFERED"] = "1"
    root = checkout_root()
    if root is not None:
        os.chdir(root)  # where `make serve` runs it, beside service/config.yaml
    command = serve_command(args.host, args.port, extra)
    sys.stdout.flush()
    sys.stderr.flush()
    # Replaced, not wrapped: signals (Ctrl-C, a supervisor's SIGTERM) reach BentoML directly.
    os.execv(command[0], command)
    raise AssertionError("unreachable: os.execv returns only by raising")


COMMANDS = ("models", "serve", "classify", "embed")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "models":
        from model_store.cli import main as models_main

        return models_main(rest, prog="convzoo models")
    if command == "serve":
        return serve(rest)
    if command in ("classify", "embed"):
        from clients.cli import main as clients_main

        return clients_main([command, *rest])
    print(f"convzoo: unknown command {command!r}; commands: {', '.join(COMMANDS)} "
          "(convzoo --help)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
