"""tools.install_size on this environment: the serving install leaves torch out, the import
extra brings it, sizes come from the files on disk, and what is not installed is reported."""

from __future__ import annotations

from packaging.requirements import Requirement

from tools import install_size
from tools.launch import ROOT


def test_the_serving_install_has_no_torch_and_the_import_extra_has():
    report = install_size.measure(ROOT)
    serving, imported = report["serving"], report["import"]
    found = install_size.closure(install_size.project_requirements(ROOT, ()))
    assert "onnxruntime-gpu" in found.distributions and "bentoml" in found.distributions
    assert not {"torch", "torchvision", "timm"} & set(found.distributions)
    assert "torch" in imported["largest_mb"]
    assert 0 < serving["megabytes"] < imported["megabytes"] <= report["all"]["megabytes"]
    assert report["all"]["extras"] == ["import", "bench", "dev"]


def test_sizes_are_the_installed_files_and_missing_ones_are_named():
    found = install_size.closure([Requirement("httpx"), Requirement("no-such-dist-4d2a")])
    assert {"httpx", "httpcore", "anyio"} <= set(found.distributions)
    assert all(size > 0 for size in found.distributions.values())
    assert found.missing == {"no-such-dist-4d2a"}
