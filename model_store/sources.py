"""Where a weight source's file is fetched from: its published URL, a mirror, or the Hub.

A mirror holds each file under its URL's host and path, the layout `wget -x URL` creates:

    $CONVZOO_WEIGHTS_MIRROR/download.pytorch.org/models/resnet50-0676ba61.pth
    $CONVZOO_WEIGHTS_MIRROR/huggingface.co/timm/tf_efficientnet_lite0.in1k/resolve/main/model.safetensors
    $CONVZOO_WEIGHTS_MIRROR/storage.googleapis.com/tensorflow/keras-applications/mobilenet/mobilenet_1_0_224_tf.h5

Without a mirror, files published on the Hugging Face Hub are fetched from `HF_ENDPOINT`
(huggingface_hub's setting, `https://huggingface.co` by default), and not at all when
`HF_HUB_OFFLINE` is set; every other file from its published URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from model_store.specs import WeightSource
from model_store.weights import WeightsError

MIRROR_ENV = "CONVZOO_WEIGHTS_MIRROR"

_HUB_URL = re.compile(r"^https://huggingface\.co/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/"
                      r"(?P<file>.+)$")


@dataclass(frozen=True)
class HubFile:
    """A file on the Hugging Face Hub, as huggingface_hub names it."""

    repo_id: str
    filename: str
    revision: str


def hub_file(source: WeightSource) -> HubFile | None:
    """The Hub file a source's URL points at, or None for files published elsewhere."""
    match = _HUB_URL.match(source.url or "")
    if match is None:
        return None
    return HubFile(match["repo"], match["file"], match["rev"])


def mirror_base(override: str | None = None) -> str | None:
    """The mirror's base URL: `override` (the CLI's --mirror), else CONVZOO_WEIGHTS_MIRROR."""
    base = override or os.environ.get(MIRROR_ENV) or None
    if base is not None and urlsplit(base).scheme not in ("http", "https"):
        raise WeightsError(f"mirror {base!r}: expected an http:// or https:// URL (for a "
                           "folder of files, use `import --from-dir`)")
    return base


def on_mirror(url: str, base: str) -> str:
    """`url` rewritten onto the mirror: <base>/<host>/<path>[?query]."""
    parts = urlsplit(url)
    rewritten = f"{base.rstrip('/')}/{parts.netloc}{parts.path}"
    return f"{rewritten}?{parts.query}" if parts.query else rewritten


def fetch_url(source: WeightSource, mirror: str | None) -> str:
    """The URL to download `source` from, given the mirror setting (None: no mirror)."""
    if not source.url:
        raise WeightsError(f"{source.file_name} has no download URL")
    hub = hub_file(source)
    if hub is not None:
        from huggingface_hub import constants, hf_hub_url

        if constants.HF_HUB_OFFLINE:
            raise WeightsError(
                f"HF_HUB_OFFLINE is set, so {source.url} is not downloaded and was not found "
                "in the Hugging Face cache; unset it, or put the file in that cache"
            )
        if mirror is None:
            # hf_hub_url builds on HF_ENDPOINT, as huggingface_hub's own downloads do.
            return hf_hub_url(hub.repo_id, hub.filename, revision=hub.revision)
    return on_mirror(source.url, mirror) if mirror else source.url
