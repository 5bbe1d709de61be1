"""The peers benchmark's pure parts: photos, request encodings, the load generator against a
tiny loopback server, the peers' environment check and the report's arithmetic. The whole
harness against real servers is tests/integration/test_bench_peers.py."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from service.oip_codec import decode_bytes_elements
from tools import launch
from tools.bench_peers import report
from tools.bench_peers.peers import PeerSettings, PyTritonPeer, multipart
from tools.bench_peers.photos import make_photo
from tools.bench_peers.systems import System
from tools.bench_peers.venvs import REQUIREMENTS_FILE, PeerEnvironment
from tools.load import PreparedRequest, run_round

SETTINGS = PeerSettings(workers=2, threads=1, max_batch_size=16, batch_delay_ms=0)


@pytest.fixture(scope="module")
def small_photo():
    return make_photo("small")


@pytest.mark.slow  # makes a 12 MP JPEG and a 3 MP PNG: seconds
def test_photos_have_the_sizes_and_formats_users_send():
    twelve = make_photo("12mp")
    assert (twelve.width, twelve.height, twelve.format) == (4000, 3000, "JPEG")
    # a camera's 12 MP JPEG is 1-3 MB; an upscaled photo without grain would be half that
    assert 1_000_000 < len(twelve.data) < 3_000_000
    assert Image.open(io.BytesIO(twelve.data)).size == (4000, 3000)
    png = make_photo("png")
    assert Image.open(io.BytesIO(png.data)).format == "PNG" and png.content_type == "image/png"
    with pytest.raises(ValueError, match="unknown photo"):
        make_photo("8k")


def test_multipart_body_carries_the_photo_as_a_file_field(small_photo):
    body, content_type = multipart("images", small_photo)
    message = BytesParser(policy=policy.default).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    (part,) = message.iter_parts()
    assert part.get_param("name", header="content-disposition") == "images"
    assert part.get_filename() == "small.jpg" and part.get_content_type() == "image/jpeg"
    assert part.get_content() == small_photo.data


def test_triton_request_is_a_v2_binary_bytes_input(small_photo, tmp_path):
    peer = PyTritonPeer(SETTINGS, {}, tmp_path)
    peer.ports = [8000, 8001, 8002]
    request = peer.prepare(small_photo)
    assert request.url == "http://127.0.0.1:8000/v2/models/efficientnet_lite0/infer"
    length = int(request.headers["inference-header-content-length"])
    header, raw = json.loads(request.body[:length]), request.body[length:]
    (tensor,) = header["inputs"]
    assert tensor["datatype"] == "BYTES" and tensor["shape"] == [1, 1]
    assert tensor["parameters"]["binary_data_size"] == len(raw)
    assert decode_bytes_elements(raw, "image") == [small_photo.data]
    assert peer.top1({"outputs": [{"name": "scores", "data": [0.5]},
                                  {"name": "labels", "data": ["tabby", "lynx"]}]}) == "tabby"


def test_missing_or_stale_peer_environment_says_how_to_make_it(tmp_path):
    environment = PeerEnvironment(tmp_path, "litserve", ["litserve==0.2.19"])
    assert "no virtual environment" in environment.problem()
    assert "make bench-peers" in environment.problem()
    (tmp_path / "litserve" / "bin").mkdir(parents=True)
    (tmp_path / "litserve" / "bin" / "python").touch()
    (tmp_path / "litserve" / REQUIREMENTS_FILE).write_text("litserve==0.2.18\n")
    assert "other requirements" in environment.problem()
    (tmp_path / "litserve" / REQUIREMENTS_FILE).write_text("litserve==0.2.19\n")
    assert environment.problem() is None
    # a peer that runs in ConvZoo's own environment needs nothing made
    assert PeerEnvironment(tmp_path, "bentoml", None).problem() is None


class _Answers(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # kept alive, as the real servers

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["content-length"]))
        status = 200 if self.path == "/ok" else 503
        body = b'{"busy": true}' if status == 503 else b"{}"
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def loopback_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_load_round_times_served_requests_and_counts_errors(loopback_server):
    served = run_round(PreparedRequest(loopback_server + "/ok", b"x" * 100, {}), 3, 0.3)
    figures = served.figures()
    assert figures["served"] > 0 and figures["errors"] == 0
    assert figures["images_per_s"] == pytest.approx(figures["served"] / figures["seconds"],
                                                    rel=0.01)
    assert 0 < figures["p50_ms"] <= figures["p99_ms"]
    refused = run_round(PreparedRequest(loopback_server + "/busy", b"x", {}), 2, 0.2).figures()
    assert refused["served"] == 0 and refused["errors"] > 0 and refused["p50_ms"] is None
    assert refused["error_samples"][0].startswith("HTTP 503") and len(refused[
        "error_samples"]) <= 3


def _round(rate: float, errors: int = 0) -> dict:
    return {"images_per_s": rate, "p50_ms": 1000 / rate, "p99_ms": 2000 / rate,
            "server_cpu_ms_per_image": 4000 / rate, "errors": errors,
            "error_samples": ["HTTP 503"] * errors, "served": 1, "seconds": 1}


def test_report_medians_spread_and_ratios():
    results = {"convzoo": report.summarize([_round(30), _round(20), _round(40)]),
               "litserve": report.summarize([_round(10), _round(20, errors=2), _round(8)])}
    report.add_ratios(results)
    ours, theirs = results["convzoo"], results["litserve"]
    assert (ours["images_per_s"], ours["images_per_s_min"], ours["images_per_s_max"]) == (
        30, 20, 40)
    assert theirs["images_per_s"] == 10 and theirs["errors"] == 2
    assert theirs["error_samples"] == ["HTTP 503", "HTTP 503"]
    assert theirs["convzoo_ratio"] == 3.0 and ours["convzoo_ratio"] == 1.0
    assert theirs["convzoo_ratio_rounds"] == [3.0, 1.0, 5.0]  # round by round
    assert theirs["p50_ms"] == 100.0  # the median of the rounds' p50s
    assert theirs["server_cpu_ms_per_image"] == 400.0


def test_markdown_has_a_row_per_system_and_says_what_was_left_out():
    by_system = {"convzoo": report.summarize([_round(30)]),
                 "bentoml": report.summarize([_round(15)])}
    report.add_ratios(by_system)
    photo = {"width": 451, "height": 300, "format": "JPEG", "megapixels": 0.14,
             "bytes": 35042}
    text = report.markdown({
        "date": "2026-12-02", "settings": {"clients": 16, "rounds": 1, "seconds": 5,
                                           "warmup_seconds": 3},
        "machine": {"cpu_model": "AMD EPYC", "cores": 2, "python": "3.11.7"},
        "systems": {name: {"title": name.title(), "versions": {}, "layout": "-",
                           "request": "-"} for name in ("convzoo", "bentoml", "litserve")},
        "skipped": {"torchserve": "failed to start: no Java",
                    "pytriton": "Triton exited with 1:\nI1202 loading\nTimeoutError: no "
                                "handshake\n  At: model.py\n;"},
        "idle_cpu_percent": {"convzoo": 0.4, "bentoml": 1.2, "litserve": 95.0},
        "top1": {"small": {"convzoo": "tiger cat", "bentoml": "tiger cat",
                           "litserve": "lynx"}},
        "excluded": {"small": {"litserve": "top-1 'lynx' differs from ConvZoo's 'tiger cat'"}},
        "photos": {"small": photo}, "results": {"small": by_system}})
    assert "| Bentoml | 15 | 15–15 | 66.7 | 133.3 | 266.7 | 0 | 2.0 (2.0) |" in text
    assert "| Litserve |  | - | - | 95.0 |" in text  # no versions given; its idle CPU
    assert "| Litserve | not measured: top-1 'lynx' differs" in text
    assert "- torchserve: failed to start: no Java" in text
    # a log's tail is cut to its first line and its last error
    assert "- pytriton: Triton exited with 1: … TimeoutError: no handshake\n" in text


class _BusyServer(System):
    """A 'server' that only burns CPU, in a child process, to pause and resume."""

    name = title = "busy"

    def start(self, workdir) -> None:
        code = ("import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', "
                "'while True: pass']); time.sleep(60)")
        process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        self.server = launch.LiveServer("http://127.0.0.1:9", "", process,
                                        workdir / "log", {})

    def prepare(self, photo):
        raise NotImplementedError

    def top1(self, answer):
        raise NotImplementedError

    def describe(self):
        return {}


def _cpu_over(system: System, seconds: float) -> float:
    before = system.cpu_seconds()
    time.sleep(seconds)
    return system.cpu_seconds() - before


def test_paused_system_uses_no_cpu_and_still_stops(tmp_path):
    busy = _BusyServer()
    busy.start(tmp_path)
    try:
        deadline = time.monotonic() + 10
        while len(busy.processes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the sleeping parent and its busy child
        assert len(busy.processes()) == 2
        # running: a busy loop gets a share of a core even on a loaded machine; paused: none
        # (CPU times count in 10 ms ticks)
        assert _cpu_over(busy, 1.0) > 0.05
        busy.pause()
        assert _cpu_over(busy, 1.0) < 0.015
        with busy.awake():
            assert _cpu_over(busy, 1.0) > 0.05
        assert _cpu_over(busy, 1.0) < 0.015  # paused again after the block
        child = busy.processes()[-1]
    finally:
        busy.stop()  # paused: stop must continue it to deliver SIGTERM
    assert busy.server.process.poll() is not None
    child.wait(10)
