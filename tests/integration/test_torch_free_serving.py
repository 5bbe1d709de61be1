"""Serving ONNX models imports neither torch nor torchvision (issue 15): not importing the
service module, not starting a data plane on the real store and classifying with it, and not
in the worker of a running server (no torch library mapped into its memory). torch stays for
import, training, the PyTorch backend and the GPU decode path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import ROOT, LiveServer

pytestmark = pytest.mark.integration

TORCH = {"torch", "torchvision", "timm"}

START_AND_CLASSIFY = """
import asyncio, json, sys
from service.core.config import load_config
from service.core.dataplane import DataPlane
from service.core.requests import ClassifyRequest
from tools.photos import jpeg

async def main():
    plane = DataPlane(load_config(sys.argv[1], default_model="efficientnet_lite0",
                                  startup_models=("efficientnet_lite0", "lenet5")))
    await plane.start()
    try:
        (result,) = await plane.classify(ClassifyRequest(images=(jpeg("chelsea"),)))
        return result.model, plane.engines.get("lenet5").backend.name
    finally:
        await plane.close()

served = asyncio.run(main())
print(json.dumps({"served": served,
                  "loaded": sorted({name.split(".")[0] for name in sys.modules})}))
"""


def run(code: str, *args: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_importing_the_service_imports_no_torch():
    loaded = run("import json, sys; import service.service; print(json.dumps("
                 "{'loaded': sorted({n.split('.')[0] for n in sys.modules})}))")["loaded"]
    assert "bentoml" in loaded and not TORCH & set(loaded)


def test_a_data_plane_serving_onnx_models_imports_no_torch(tmp_path):
    outcome = run(START_AND_CLASSIFY, str(tmp_path / "none.yaml"))
    assert outcome["served"] == ["efficientnet_lite0", "onnxruntime"]
    assert "onnxruntime" in outcome["loaded"] and not TORCH & set(outcome["loaded"])


def test_the_running_servers_worker_has_no_torch_library_mapped(server: LiveServer):
    processes = [psutil.Process(server.process.pid),
                 *psutil.Process(server.process.pid).children(recursive=True)]
    workers = [p for p in processes if Path(f"/proc/{p.pid}/maps").exists()]
    mapped = {p.pid: Path(f"/proc/{p.pid}/maps").read_text() for p in workers}
    # The worker is the process that loaded ONNX Runtime to serve the models.
    serving = [pid for pid, maps in mapped.items() if "onnxruntime" in maps]
    assert serving, "no process of the server has ONNX Runtime loaded"
    for pid in serving:
        assert "libtorch" not in mapped[pid] and "torchvision" not in mapped[pid]
