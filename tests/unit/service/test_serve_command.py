"""What `bentoml serve`'s own process settles before BentoML acts: HTTPS named as such, and no
start over another live server's metrics (service/serve_command.py). The real servers are
tests/integration/test_metrics_per_server.py and test_tls_walkthrough.py."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest

from service.serve_command import (
    bentoml_home,
    check_metrics_dir_unshared,
    live_writers,
    rest_ssl_options,
    serve_options,
)


@pytest.fixture
def other_process():
    """A live process that is not this one."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process.pid
    process.kill()
    process.wait()


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_outside_bentoml_serve_nothing_is_read_or_refused(tmp_path, monkeypatch,
                                                          other_process):
    assert serve_options() is None
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    metrics = tmp_path / "prometheus_multiproc_dir"
    metrics.mkdir()
    (metrics / f"counter_{other_process}.db").touch()
    check_metrics_dir_unshared(None)  # no error: not `bentoml serve`


def test_the_serve_commands_options_are_read_inside_it():
    @click.group()
    def bentoml():
        pass

    seen = {}

    @bentoml.command()
    @click.option("--port", type=int)
    @click.option("--ssl-certfile")
    def serve(port, ssl_certfile):
        seen["options"] = serve_options()

    bentoml.main(["serve", "--port", "3005", "--ssl-certfile", "cert.pem"],
                 prog_name="bentoml", standalone_mode=False)
    assert seen["options"] == {"port": 3005, "ssl_certfile": "cert.pem"}
    assert rest_ssl_options(seen["options"]) == {"enabled": True}
    assert rest_ssl_options({"port": 3005, "ssl_certfile": None}) == {}
    assert rest_ssl_options(None) == {}


def test_live_writers_are_the_live_pids_in_the_file_names(tmp_path, other_process):
    gone = dead_pid()
    for name in (f"counter_{other_process}.db", f"gauge_livesum_{other_process}.db",
                 f"histogram_{gone}.db", "not-a-metric.txt"):
        (tmp_path / name).touch()
    assert live_writers(tmp_path) == [other_process]
    assert live_writers(tmp_path / "missing") == []


def test_a_live_writer_on_this_home_refuses_the_start_with_what_to_do(tmp_path, monkeypatch,
                                                                      other_process):
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path))
    assert bentoml_home() == tmp_path
    metrics = tmp_path / "prometheus_multiproc_dir"
    metrics.mkdir()
    (metrics / f"histogram_{dead_pid()}.db").touch()
    check_metrics_dir_unshared({"port": 3000})  # only a dead server's files: fine

    (metrics / f"counter_{other_process}.db").touch()
    with pytest.raises(click.ClickException) as refused:
        check_metrics_dir_unshared({"port": 3000})
    message = refused.value.message
    assert f"another server (pid {other_process}) keeps its metrics in {metrics}" in message
    assert f"ln -sfn {tmp_path / 'models'} /tmp/convzoo-2/models" in message
    assert "grpc_port" in message


def test_the_home_is_expanded_as_bentoml_expands_it(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVZOO_TEST_ROOT", str(tmp_path))
    monkeypatch.setenv("BENTOML_HOME", "$CONVZOO_TEST_ROOT/home")
    assert bentoml_home() == tmp_path / "home"
    monkeypatch.delenv("BENTOML_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert bentoml_home() == tmp_path / "bentoml"
