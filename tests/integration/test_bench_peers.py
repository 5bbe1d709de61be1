"""`make bench-peers` end to end, shrunk to the peer CI has (plain BentoML, which runs in
ConvZoo's own environment), two photos and short rounds, with ConvZoo served from another
checkout (--convzoo-root). Behaviour is checked, not timings: both systems started and
stopped, the same top-1 label, every figure of every round in the report."""

from __future__ import annotations

import json
import shutil
import socket

import pytest
import yaml

from tools.bench_peers import cli
from tools.launch import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_peers_against_plain_bentoml(tmp_path, capsys):
    # Another checkout of the project: a copy of this one's packages (no git history).
    checkout = tmp_path / "checkout"
    for package in ("contract", "service", "model_store", "clients"):
        shutil.copytree(ROOT / package, checkout / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "report" / "peers.json"
    assert cli.main(["--peers", "bentoml", "--photos", "small,png", "--rounds", "2",
                     "--seconds", "1", "--warmup", "0.5", "--clients", "4", "--idle-seconds", "1",
                     "--convzoo-root", str(checkout), "--convzoo-instances", "2",
                     "--out", str(out)]) == 0

    report = json.loads(out.read_text())
    assert set(report["systems"]) == {"convzoo", "bentoml"} and report["skipped"] == {}
    convzoo = report["systems"]["convzoo"]
    assert convzoo["served_from"] == str(checkout)
    assert convzoo["layout"] == "that checkout's default configuration, 2 model instance(s)"
    served_config = yaml.safe_load((out.parent / "peers-servers" / "convzoo" /
                                    "convzoo.yaml").read_text())
    # The checkout's shipped batching (service/config.yaml), with the instances asked for.
    shipped = yaml.safe_load((checkout / "service" / "config.yaml").read_text())
    assert served_config["batching"] == {**shipped["batching"], "instances": 2}
    assert served_config["per_model_batching"] == shipped["per_model_batching"]
    assert report["systems"]["bentoml"]["versions"]["bentoml"].startswith("1.4")
    for photo in ("small", "png"):
        labels = report["top1"][photo]
        assert labels["bentoml"] == labels["convzoo"] and "cat" in labels["convzoo"]
        assert report["excluded"][photo] == {}
        results = report["results"][photo]
        for figures in results.values():
            assert len(figures["rounds"]) == 2 and figures["errors"] == 0
            assert (0 < figures["images_per_s_min"] <= figures["images_per_s"]
                    <= figures["images_per_s_max"])
            assert 0 < figures["p50_ms"] <= figures["p99_ms"]
            assert figures["server_cpu_ms_per_image"] > 0
        assert results["convzoo"]["convzoo_ratio"] == 1.0
        assert results["bentoml"]["convzoo_ratio"] == pytest.approx(
            results["convzoo"]["images_per_s"] / results["bentoml"]["images_per_s"], abs=0.01)
    assert set(report["idle_cpu_percent"]) == {"convzoo", "bentoml"}
    assert all(0 <= idle < 200 for idle in report["idle_cpu_percent"].values())
    assert report["photos"]["png"]["format"] == "PNG"
    markdown = out.with_suffix(".md").read_text()
    assert "| BentoML (plain service) |" in markdown and "## Top-1 agreement" in markdown
    assert "### small: 451x300 JPEG" in capsys.readouterr().out
    for about in report["systems"].values():  # stopped: nothing listens on their ports
        port = int(about["url"].rsplit(":", 1)[1])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_missing_peer_environment_stops_before_any_server(tmp_path, capsys):
    assert cli.main(["--peers", "litserve", "--venvs", str(tmp_path),
                     "--out", str(tmp_path / "peers.json")]) == 2
    error = capsys.readouterr().err
    assert f"no virtual environment at {tmp_path / 'litserve'}" in error
    assert "make bench-peers" in error
    assert not (tmp_path / "peers.json").exists()
