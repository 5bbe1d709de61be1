"""The peers' own virtual environments under `.venv-peers/<peer>`, made from the package
registry on request (`--install`, which `make bench-peers` passes).

Each holds the peer's serving system and the same onnxruntime (CPU build), Pillow and numpy
versions as ConvZoo's environment, so that the model and the image decoding cost the same on
every side. A requirements file kept inside tells whether an environment is current.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

REQUIREMENTS_FILE = "convzoo-requirements.txt"
HOW_TO_CREATE = ("create it with `make bench-peers`, or `python -m tools.bench_peers --install`"
                 " (it installs from the package registry)")


def onnxruntime_version() -> str:
    """This environment's ONNX Runtime version, whichever build (CPU or GPU) it has."""
    for distribution in ("onnxruntime", "onnxruntime-gpu"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    raise RuntimeError("ONNX Runtime is not installed in this environment")


def shared_requirements(pin_numpy: bool = True) -> list[str]:
    """The model runtime and image stack, at this environment's versions."""
    pins = [f"onnxruntime=={onnxruntime_version()}", f"pillow=={metadata.version('pillow')}"]
    return pins + ([f"numpy=={metadata.version('numpy')}"] if pin_numpy else [])


class PeerEnvironment:
    """A virtual environment for one peer; `requirements=None` means this interpreter's own
    environment (a peer ConvZoo's environment already has, such as BentoML)."""

    def __init__(self, root: Path, name: str, requirements: list[str] | None):
        self.name = name
        self.requirements = requirements
        self.path = root / name if requirements is not None else Path(sys.prefix)

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python" if self.requirements is not None else Path(
            sys.executable)

    def bin(self, program: str) -> Path:
        return self.python.parent / program

    def problem(self) -> str | None:
        """Why this environment cannot be used as it is, or None."""
        if self.requirements is None:
            return None
        if not self.python.exists():
            return f"{self.name}: no virtual environment at {self.path}; {HOW_TO_CREATE}"
        recorded = self.path / REQUIREMENTS_FILE
        if not recorded.exists() or recorded.read_text().split() != self.requirements:
            return (f"{self.name}: the virtual environment at {self.path} was made for other "
                    f"requirements than {' '.join(self.requirements)}; {HOW_TO_CREATE}")
        return None

    def create(self) -> None:
        """Make the environment afresh and install the requirements (minutes: torch, Triton)."""
        if self.requirements is None:
            return
        if self.path.exists():
            shutil.rmtree(self.path)
        print(f"[bench-peers] creating {self.path}: pip install {' '.join(self.requirements)}",
              flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(self.path)], check=True)
        subprocess.run([str(self.python), "-m", "pip", "install", "--quiet",
                        "--disable-pip-version-check", *self.requirements], check=True)
        (self.path / REQUIREMENTS_FILE).write_text("\n".join(self.requirements) + "\n")

    def versions(self, distributions: list[str]) -> dict[str, str]:
        """Installed versions of `distributions` in this environment (absent ones omitted)."""
        script = ("import json, sys\nfrom importlib import metadata\nfound = {}\n"
                  "for name in sys.argv[1:]:\n"
                  "    try:\n        found[name] = metadata.version(name)\n"
                  "    except metadata.PackageNotFoundError:\n        pass\n"
                  "print(json.dumps(found))")
        result = subprocess.run([str(self.python), "-c", script, *distributions],
                                capture_output=True, text=True, check=True)
        return json.loads(result.stdout)
