"""The attack tool reads the limits the server runs with, defaults included."""

from __future__ import annotations

from service.core.config import load_config
from tools.attack import MiB, declared_body_bytes


def test_bodies_are_declared_under_the_limit_whether_set_or_derived(tmp_path):
    derived = load_config(tmp_path / "none.yaml")
    assert derived.max_body_bytes is None  # the default: derived from the pixel limit
    assert declared_body_bytes(derived) == derived.body_limit_bytes - MiB > 0
    assert declared_body_bytes(load_config(tmp_path / "none.yaml",
                                           max_body_bytes=8 * MiB)) == 7 * MiB
