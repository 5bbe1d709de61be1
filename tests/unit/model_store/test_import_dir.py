"""Which files `import --from-dir` recognises, by their published names (no import here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from model_store.import_dir import _files_under, recognise


@pytest.mark.parametrize(("path", "name", "source_format"), [
    ("d/resnet50-0676ba61.pth", "resnet50", "torchvision"),
    ("d/sub/mobilenet_7_5_160_tf.h5", "mobilenet_v1_0.75_160", "keras-h5"),
    ("d/efficientnet-lite1-77cc7160.pth", "efficientnet_lite1", "lite-package"),
    ("d/tf_efficientnet_lite2.in1k/model.safetensors", "efficientnet_lite2", "timm"),
    ("d/inception_resnet_v2.tf_in1k.safetensors", "inception_resnet_v2", "timm"),
    ("hub/models--timm--tf_efficientnet_lite0.in1k/snapshots/abc123/model.safetensors",
     "efficientnet_lite0", "timm"),
])
def test_known_file_names(path, name, source_format):
    spec, source = recognise(Path(path))
    assert (spec.name, source.format) == (name, source_format)


@pytest.mark.parametrize("path", [
    "d/model.safetensors",  # which model's? nothing around it says
    "d/resnet50.pth",  # torchvision's names carry the digest prefix
    "d/notes.txt",
    "d/lenet5-digits.safetensors",  # trained here, never imported
    "d/unknown_repo/model.safetensors",
])
def test_unknown_file_names(path):
    assert recognise(Path(path)) is None


def test_hugging_face_cache_internals_are_not_listed(tmp_path):
    repo = tmp_path / "models--timm--tf_efficientnet_lite0.in1k"
    for relative in ("blobs/5f3c", "refs/main", "snapshots/abc/model.safetensors"):
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        (repo / relative).write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    assert _files_under(tmp_path) == [
        repo / "snapshots/abc/model.safetensors", tmp_path / "notes.txt"]
