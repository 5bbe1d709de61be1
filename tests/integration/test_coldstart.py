"""tools.coldstart end to end, shrunk: one run of the minimal configuration, this checkout
against itself; every figure there and positive (timings are not checked)."""

from __future__ import annotations

import json

import pytest

from tools import coldstart
from tools.launch import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_coldstart_reports_ready_time_memory_and_import_time(tmp_path, capsys):
    out = tmp_path / "coldstart.json"
    assert coldstart.main(["--other", str(ROOT), "--runs", "1", "--configs", "minimal",
                           "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    for label in ("this", "other"):
        assert report["import_service_s"][label]["median"] > 0
        assert report["ready_s"]["minimal"][label]["median"] > 0
        worker = report["worker_rss_mb"]["minimal"][label]["median"]
        assert 0 < worker <= report["tree_rss_mb"]["minimal"][label]["median"]
    assert "process start to /readyz 200" in capsys.readouterr().out
