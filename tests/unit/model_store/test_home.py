"""The model-store rule: BENTOML_HOME, else the checkout's .bentoml, else ~/bentoml."""

from __future__ import annotations

import os
from pathlib import Path

from model_store import home

ROOT = Path(__file__).resolve().parents[3]


def test_the_environment_wins(monkeypatch, tmp_path):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    assert home.resolve_store_home().path == tmp_path


def test_a_checkout_uses_its_own_store(monkeypatch):
    monkeypatch.delenv("BENTOML_HOME")
    assert home.checkout_root() == ROOT
    found = home.resolve_store_home()
    assert found.path == ROOT / ".bentoml" and "checkout" in found.reason


def test_an_installed_copy_uses_bentomls_default(monkeypatch):
    monkeypatch.delenv("BENTOML_HOME")
    monkeypatch.setattr(home, "checkout_root", lambda: None)
    assert home.resolve_store_home().path == Path.home() / "bentoml"


def test_use_exports_the_choice_for_bentoml_and_child_processes(monkeypatch):
    monkeypatch.delenv("BENTOML_HOME")
    chosen = home.use_store_home()
    assert os.environ["BENTOML_HOME"] == str(chosen.path) == str(ROOT / ".bentoml")
