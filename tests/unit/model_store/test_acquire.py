"""Caches first, then a verified download: with test-only sources whose digests the tests know.

The real registry entries publish digests no test-made file can match, so these specs exist
only here (nothing registers them); a loopback file server stands in for the network.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

from model_store import caches
from model_store.acquire import DOWNLOADED, FetchOptions, acquire
from model_store.download import RetryPolicy
from model_store.specs import InputSpec, ModelSpec, WeightSource
from model_store.weights import PinFile, WeightsError
from tests.fixtures.file_server import FileServer

PUBLISHED = "https://weights.example.org/models/"


def tiny_spec(source: WeightSource) -> ModelSpec:
    return ModelSpec(name="tiny_test_only", family="test", build=lambda: torch.nn.Linear(2, 2),
                     input=InputSpec(size=8, resize=8), labels="test", weights=(source,),
                     published=None, paper="none (test-only)")


def torchvision_style(data: bytes, stem: str = "tiny") -> WeightSource:
    """A source named as torchvision names its files: <stem>-<sha256[:8]>.pth."""
    prefix = hashlib.sha256(data).hexdigest()[:8]
    name = f"{stem}-{prefix}.pth"
    return WeightSource(format="torchvision", file_name=name, url=PUBLISHED + name,
                        sha256_prefix=prefix)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Every cache and the ConvZoo state under tmp_path, and a mirror on loopback."""
    for variable, folder in (("BENTOML_HOME", "bentoml"), ("TORCH_HOME", "torch"),
                             ("KERAS_HOME", "keras")):
        monkeypatch.setenv(variable, str(tmp_path / folder))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    root = tmp_path / "mirror"
    root.mkdir()
    server = FileServer(root).start()
    yield server
    server.stop()


def mirror_file(server: FileServer, source: WeightSource, data: bytes) -> None:
    path = server.root / source.url.removeprefix("https://")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def options(server: FileServer, warnings: list[str] | None = None) -> FetchOptions:
    return FetchOptions(mirror=server.url, policy=RetryPolicy(retries=1, backoff_s=0.01),
                        progress=False, warn=(warnings if warnings is not None else []).append)


def test_torch_hub_cache_file_is_used_without_a_download(isolated):
    data = os.urandom(4096)
    source = torchvision_style(data)
    cached = caches.torch_hub_checkpoints() / source.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(data)
    got = acquire(tiny_spec(source), source, PinFile(), options(isolated))
    assert got.path == cached and got.found_in == caches.TORCH_HUB
    assert got.provenance["check"] == "sha256 prefix (published file name)"
    assert isolated.requests == []


def test_hugging_face_cache_file_is_found_through_huggingface_hub(isolated, tmp_path):
    source = WeightSource(format="timm", file_name="model.safetensors",
                          url="https://huggingface.co/timm/tiny.test/resolve/main/"
                          "model.safetensors")
    repo = Path(constants.HF_HUB_CACHE) / "models--timm--tiny.test"
    revision = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(revision)
    snapshot = repo / "snapshots" / revision / "model.safetensors"
    snapshot.parent.mkdir(parents=True)
    snapshot.write_bytes(b"weights as the Hub cache holds them")
    got = acquire(tiny_spec(source), source, PinFile(), options(isolated))
    assert got.path == snapshot and got.found_in == caches.HF_CACHE
    assert got.provenance["check"] == "sha256 pinned now (first seen)"
    assert isolated.requests == []


def test_a_cached_file_that_does_not_match_is_refused_and_the_mirror_used(isolated):
    data = os.urandom(4096)
    source = torchvision_style(data)
    cached = caches.torch_hub_checkpoints() / source.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the published file")
    mirror_file(isolated, source, data)
    warnings: list[str] = []
    got = acquire(tiny_spec(source), source, PinFile(), options(isolated, warnings))
    assert got.found_in == DOWNLOADED and got.path.read_bytes() == data
    assert got.path == caches.download_cache_file(tiny_spec(source), source)
    assert got.provenance["fetched_from"] == (
        f"{isolated.url}/weights.example.org/models/{source.file_name}")
    assert len(warnings) == 1
    assert warnings[0].startswith(f"refused {cached} (PyTorch hub cache)")
    assert cached.read_bytes() == b"not the published file"  # refused, never touched


def test_a_downloaded_file_that_does_not_match_is_deleted(isolated):
    source = WeightSource(format="torchvision", file_name="tiny.pth",
                          url=PUBLISHED + "tiny.pth", sha256="0" * 64)
    mirror_file(isolated, source, os.urandom(4096))
    with pytest.raises(WeightsError, match="then refused.*nothing was stored") as refused:
        acquire(tiny_spec(source), source, PinFile(), options(isolated))
    assert "does not match the published" in str(refused.value)
    downloads = caches.download_cache_file(tiny_spec(source), source).parent
    assert list(downloads.iterdir()) == []


def test_the_download_cache_is_looked_at_last_and_reused(isolated):
    data = os.urandom(2048)
    source = WeightSource(format="torchvision", file_name="tiny.pth",
                          url=PUBLISHED + "tiny.pth", sha256=hashlib.sha256(data).hexdigest())
    mirror_file(isolated, source, data)
    spec = tiny_spec(source)
    first = acquire(spec, source, PinFile(), options(isolated))
    second = acquire(spec, source, PinFile(), options(isolated))
    assert (first.found_in, second.found_in) == (DOWNLOADED, caches.DOWNLOAD_CACHE)
    assert first.downloaded_bytes == len(data) and second.downloaded_bytes == 0
    assert len(isolated.requests) == 1


def test_keras_cache_is_looked_at_for_keras_files(isolated):
    source = WeightSource(format="keras-h5", file_name="mobilenet_tiny_tf.h5",
                          url=PUBLISHED + "mobilenet_tiny_tf.h5")
    cached = caches.keras_models_dir() / source.file_name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"h5 bytes")
    assert [c.cache for c in caches.cached_files(tiny_spec(source), source)] == [
        caches.KERAS_CACHE]


def test_nothing_anywhere_says_how_to_get_the_file(isolated):
    data = os.urandom(1024)
    source = torchvision_style(data)
    with pytest.raises(WeightsError) as missing:
        acquire(tiny_spec(source), source, PinFile(), options(isolated))
    text = str(missing.value)
    assert "HTTP 404" in text and "import tiny_test_only --from-file" in text
    assert "CONVZOO_WEIGHTS_MIRROR" in text
