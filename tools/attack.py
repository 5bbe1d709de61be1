"""The hostile-client catalogue of issue 14, run against a live server on loopback.

    python -m tools.attack                        # starts a server of its own (LeNet-5)
    python -m tools.attack --only header_bomb metric_flood
    python -m tools.attack --url http://127.0.0.1:3000 --grpc 127.0.0.1:3001 [--pid PID]

Each attack runs from one client while a prober times /readyz (a new connection each time, as
a kubelet probes) and gRPC ServerLive every 25 ms, and the worker's resident memory is sampled.
It prints one row an attack: what the server answered, the probe latencies (p50, p99, max) and
the worker's peak RSS growth; then exits 1 if any answer was a 500 or INTERNAL, an attack was
not refused as it should be, or a /readyz p99 passed `--p99-ms` (200 by default, the issue's
goal). The latencies are only meaningful on a quiet machine. tests/integration/test_attacks.py
runs the same attacks with smaller sizes and checks each row.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import io
import json
import os
import select
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import psutil

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from service.core.config import ServingConfig, load_config
from tools.soak import worker_process

MiB = 1 << 20
PROBE_INTERVAL_S = 0.025
ATTACK_CONFIG = {"default_model": "lenet5", "startup_models": ["lenet5"],
                 "header_timeout_s": 3, "body_timeout_s": 5}


@dataclass
class Target:
    http_url: str
    grpc_target: str
    limits: ServingConfig
    worker_pid: int | None = None

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.http_url)
        return parts.hostname or "127.0.0.1", parts.port or 80


@dataclass
class Outcome:
    attack: str
    answer: str  # what the server answered, in a few words
    refused: bool  # refused (or served) as it should be
    statuses: list[int | str] = field(default_factory=list)  # every HTTP status / gRPC code
    readyz_ms: list[float] = field(default_factory=list)
    live_ms: list[float] = field(default_factory=list)
    rss_growth_mb: float | None = None
    seconds: float = 0.0
    figures: dict = field(default_factory=dict)

    @property
    def server_errors(self) -> list[int | str]:
        return [s for s in self.statuses if s == "INTERNAL" or (isinstance(s, int) and s >= 500
                                                                and s not in (503, 504))]

    @property
    def readyz_p99_ms(self) -> float:
        return percentile(self.readyz_ms, 99)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# --- measuring while an attack runs -----------------------------------------------------------

class Prober:
    """Times /readyz and gRPC ServerLive, and samples the worker's RSS, in the background."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.readyz_ms: list[float] = []
        self.live_ms: list[float] = []
        self.rss: list[int] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._readyz, daemon=True),
                         threading.Thread(target=self._live, daemon=True)]
        worker = psutil.Process(target.worker_pid) if target.worker_pid else None
        self._worker = worker
        self.rss_before = worker.memory_info().rss if worker else None

    def __enter__(self) -> Prober:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _readyz(self) -> None:
        host, port = self.target.address
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(host, port, timeout=10)
                conn.request("GET", "/readyz")
                conn.getresponse().read()
                conn.close()
                self.readyz_ms.append((time.perf_counter() - started) * 1000)
            except OSError:
                self.readyz_ms.append(10_000.0)
            if self._worker is not None:
                with contextlib.suppress(psutil.Error):
                    self.rss.append(self._worker.memory_info().rss)
            self._stop.wait(PROBE_INTERVAL_S)

    def _live(self) -> None:
        with grpc.insecure_channel(self.target.grpc_target) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            while not self._stop.is_set():
                started = time.perf_counter()
                try:
                    stub.ServerLive(pb.ServerLiveRequest(), timeout=10)
                    self.live_ms.append((time.perf_counter() - started) * 1000)
                except grpc.RpcError:
                    self.live_ms.append(10_000.0)
                self._stop.wait(PROBE_INTERVAL_S)

    @property
    def rss_growth_mb(self) -> float | None:
        if self.rss_before is None or not self.rss:
            return None
        return (max(self.rss) - self.rss_before) / MiB


# --- raw HTTP ---------------------------------------------------------------------------------

def connect(target: Target, timeout: float = 30.0) -> socket.socket:
    return socket.create_connection(target.address, timeout=timeout)


def read_reply(conn: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """What the server sends within `timeout`, and whether it closed the connection (a reset,
    when it closed with our bytes unread, counts)."""
    data = b""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            conn.settimeout(left if not _complete(data) else min(left, 0.5))
            chunk = conn.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except TimeoutError:
        return data, False
    except OSError:  # reset
        return data, True
    return data, False


def _complete(data: bytes) -> bool:
    """A whole reply has arrived (its head, and a body of its content-length)."""
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(body) >= int(line.split(b":")[1])
    return True


NO_REPLY = "no reply"


def status_of(reply: bytes) -> int | str:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else NO_REPLY


def send_until_answered(conn: socket.socket, chunks: Iterator[bytes]) -> int:
    """Sends `chunks` until the server answers or closes; returns the bytes sent."""
    sent = 0
    conn.setblocking(True)
    for chunk in chunks:
        readable, _, _ = select.select([conn], [], [], 0)
        if readable:
            break
        try:
            conn.sendall(chunk)
        except OSError:
            break
        sent += len(chunk)
    return sent


def request(target: Target, method: str, path: str, body: bytes = b"",
            content_type: str = "application/json", timeout: float = 60.0) -> tuple[int, bytes]:
    host, port = target.address
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"content-type": content_type})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# --- the attacks ------------------------------------------------------------------------------

def header_bomb(target: Target) -> Outcome:
    """An unfinished header value of 120 MiB, sent in 1 MiB pieces (issue 14, item 1)."""
    with connect(target) as conn:
        conn.sendall(b"GET /models HTTP/1.1\r\nhost: attack\r\nx-big: ")
        sent = send_until_answered(conn, (b"a" * MiB for _ in range(120)))
        reply, closed = read_reply(conn, 30)
    status = status_of(reply)
    return Outcome("header_bomb", f"{status} after {sent / MiB:.0f} MiB sent"
                   f"{', closed' if closed else ''}", status == 431 and closed, [status],
                   figures={"sent_mib": sent / MiB})


def url_bomb(target: Target) -> Outcome:
    """A 1 MiB request line in one send."""
    with connect(target) as conn:
        conn.sendall(b"GET /" + b"a" * MiB + b" HTTP/1.1\r\nhost: attack\r\n\r\n")
        reply, closed = read_reply(conn, 30)
    status = status_of(reply)
    return Outcome("url_bomb", f"{status}{', closed' if closed else ''}",
                   status == 431 and closed, [status])


def _held_connections(target: Target, first_bytes: bytes, count: int) -> Outcome:
    conns = [connect(target) for _ in range(count)]
    try:
        for conn in conns:
            if first_bytes:
                conn.sendall(first_bytes)
        started = time.monotonic()
        wait = target.limits.header_timeout_s + 5
        replies = [read_reply(conn, max(0.1, wait - (time.monotonic() - started)))
                   for conn in conns]
        closed_after = time.monotonic() - started
    finally:
        for conn in conns:
            conn.close()
    statuses = [status_of(r) for r, _ in replies]
    closed = sum(1 for _, c in replies if c)
    return Outcome("", f"{closed}/{count} closed within {closed_after:.1f} s, answered "
                   f"{sorted(set(statuses), key=str)}", closed == count, statuses,
                   figures={"closed": closed, "closed_after_s": closed_after})


def idle_connections(target: Target, count: int = 100) -> Outcome:
    """Connections that send nothing (issue 14, item 10)."""
    outcome = _held_connections(target, b"", count)
    outcome.attack = "idle_connections"
    outcome.refused = outcome.refused and set(outcome.statuses) == {NO_REPLY}
    outcome.statuses = []  # a quiet close is not an HTTP status
    return outcome


def half_heads(target: Target, count: int = 100) -> Outcome:
    """Connections that send half a request head and stop (issue 14, item 10)."""
    outcome = _held_connections(target, b"GET /models HTTP/1.1\r\nhost: attack\r\n", count)
    outcome.attack = "half_heads"
    outcome.refused = outcome.refused and set(outcome.statuses) == {408}
    return outcome


def metric_flood(target: Target, paths: int = 3000) -> Outcome:
    """Requests to invented paths, 1 KB each, and to /models/<invented> (item 3): /metrics
    must not grow with them."""
    before = len(request(target, "GET", "/metrics")[1])
    statuses: list[int | str] = []
    host, port = target.address
    conn = http.client.HTTPConnection(host, port, timeout=30)
    for i in range(paths):
        path = (f"/x{os.urandom(512).hex()}" if i % 6 else f"/models/{uuid.uuid4().hex}")
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
    conn.close()
    after = len(request(target, "GET", "/metrics")[1])
    # Each route template's series appear once (a status code not seen before adds a few).
    growth = after - before
    return Outcome("metric_flood", f"{sorted(set(statuses))}; /metrics {before / 1000:.0f} -> "
                   f"{after / 1000:.0f} kB", growth < 20_000, statuses,
                   figures={"metrics_before": before, "metrics_after": after})


def declared_body_bytes(limits: ServingConfig) -> int:
    """A body just under the limit the server runs with: `max_body_bytes`, or by default the
    one derived from the pixel limit."""
    return limits.body_limit_bytes - MiB


def bodies_in_flight(target: Target, connections: int = 40) -> Outcome:
    """Connections each declaring a body just under the body limit and stalling before its
    end (item 4): all but what max_body_bytes_in_flight holds must be refused at once."""
    declared = declared_body_bytes(target.limits)
    stall_at = declared - MiB // 2
    conns, replies = [], []
    try:
        for _ in range(connections):
            conn = connect(target)
            conn.sendall(f"POST /classify HTTP/1.1\r\nhost: attack\r\ncontent-type: image/png"
                         f"\r\ncontent-length: {declared}\r\n\r\n".encode())
            conns.append(conn)
        sent = [send_until_answered(conn, _pieces(stall_at)) for conn in conns]
        replies = [read_reply(conn, 2) for conn in conns]
    finally:
        for conn in conns:
            conn.close()
    statuses = [status_of(r) for r, _ in replies]
    refused = statuses.count(503)
    admitted = sum(1 for s in statuses if s in (NO_REPLY, 408))
    fits = target.limits.body_bytes_in_flight // declared
    return Outcome("bodies_in_flight", f"{refused}x 503 at once, {admitted} admitted "
                   f"({fits} fit), {sum(sent) / MiB:.0f} MiB sent in all",
                   refused >= connections - fits and not [s for s in statuses if s not in (
                       503, 408, NO_REPLY)], [s for s in statuses if s != NO_REPLY],
                   figures={"refused": refused, "admitted": admitted, "fits": fits})


def _pieces(total: int, size: int = 256 * 1024) -> Iterator[bytes]:
    piece = b"\0" * size
    for start in range(0, total, size):
        yield piece[:min(size, total - start)]


def slow_body(target: Target) -> Outcome:
    """A body that stops arriving (item 4): 408 after body_timeout_s, connection closed."""
    with connect(target) as conn:
        conn.sendall(b"POST /classify HTTP/1.1\r\nhost: attack\r\ncontent-type: image/png\r\n"
                     b"content-length: 100000\r\n\r\n" + b"\0" * 1000)
        started = time.monotonic()
        reply, closed = read_reply(conn, target.limits.body_timeout_s + 10)
        waited = time.monotonic() - started
    status = status_of(reply)
    return Outcome("slow_body", f"{status} after {waited:.1f} s{', closed' if closed else ''}",
                   status == 408 and closed, [status])


def _png() -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (28, 28), 128).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def client_inputs(target: Target) -> Outcome:
    """The inputs that answered 500 or INTERNAL (item 5), over REST, OIP REST and gRPC."""
    image = _png()
    deep = b"[" * 100_000 + b"]" * 100_000
    rest = {
        "top_k 1e400": ("/classify", f'{{"image": "{image}", "top_k": 1e400}}'),
        "top_k Infinity": ("/classify", f'{{"image": "{image}", "top_k": Infinity}}'),
        "top_k -Infinity": ("/classify", f'{{"image": "{image}", "top_k": -Infinity}}'),
        "top_k NaN": ("/classify", f'{{"image": "{image}", "top_k": NaN}}'),
        "multicrop crops Infinity": ("/multicrop", f'{{"image": "{image}", "crops": Infinity}}'),
        "ensemble crops Infinity": ("/ensemble", f'{{"image": "{image}", "crops": Infinity, '
                                                 f'"models": ["lenet5", "lenet5"]}}'),
        "model lone surrogate": ("/classify", f'{{"image": "{image}", "model": "\\ud800"}}'),
        "OIP REST top_k 1e400": ("/v2/models/lenet5/infer", json.dumps(
            {"inputs": [_oip_image(image)], "parameters": {"top_k": 1}}).replace(
            '"top_k": 1', '"top_k": 1e400')),
        "OIP REST crops inf": ("/v2/models/lenet5/infer", json.dumps(
            {"inputs": [_oip_image(image)], "parameters": {"crops": 1}}).replace(
            '"crops": 1', '"crops": Infinity')),
        "OIP REST UINT8 10**30": ("/v2/models/lenet5/infer", json.dumps(
            {"inputs": [{"name": "PIXELS", "datatype": "UINT8", "shape": [1],
                         "data": [10**30]}]})),
        "timeout_s 1e400": ("/classify", f'{{"image": "{image}", "timeout_s": 1e400}}'),
    }
    for route in ("/classify", "/classify_batch", "/multicrop", "/ensemble", "/select",
                  "/v2/models/lenet5/infer", "/v2/repository/index"):
        rest[f"100,000-deep JSON {route}"] = (route, deep)
    statuses: list[int | str] = []
    answers = {}
    for name, (path, body) in rest.items():
        status, _ = request(target, "POST", path, body if isinstance(body, bytes)
                            else body.encode())
        statuses.append(status)
        answers[name] = status
    with grpc.insecure_channel(target.grpc_target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        for name, parameters in (("gRPC top_k inf", {"top_k": float("inf")}),
                                 ("gRPC top_k -inf", {"top_k": float("-inf")}),
                                 ("gRPC crops inf", {"crops": float("inf")}),
                                 ("gRPC top_k nan", {"top_k": float("nan")})):
            code = _grpc_infer(stub, parameters)
            statuses.append(code)
            answers[name] = code
        request_ = pb.ModelInferRequest(model_name="lenet5")
        pixels = request_.inputs.add(name="PIXELS", datatype="UINT8", shape=[1])
        pixels.contents.uint_contents.extend([300])
        answers["gRPC UINT8 300"] = _call(stub, request_)
        statuses.append(answers["gRPC UINT8 300"])
    bad = {name: s for name, s in answers.items() if s in ("INTERNAL",) or (
        isinstance(s, int) and s >= 500)}
    return Outcome("client_inputs", f"{len(answers)} inputs: "
                   f"{sorted({str(s) for s in statuses})}", not bad, statuses,
                   figures={"answers": answers})


def _oip_image(image: str) -> dict:
    return {"name": "IMAGE", "datatype": "BYTES", "shape": [1], "data": [image]}


def _grpc_infer(stub: pb_grpc.GRPCInferenceServiceStub, parameters: dict) -> str:
    request_ = pb.ModelInferRequest(model_name="lenet5")
    request_.inputs.add(name="IMAGE", datatype="BYTES", shape=[1]).contents.bytes_contents.append(
        base64.b64decode(_png()))
    for key, value in parameters.items():
        request_.parameters[key].double_param = value
    return _call(stub, request_)


def _call(stub: pb_grpc.GRPCInferenceServiceStub, request_: pb.ModelInferRequest) -> str:
    try:
        stub.ModelInfer(request_, timeout=60)
        return "OK"
    except grpc.RpcError as error:
        return error.code().name


def long_error(target: Target) -> Outcome:
    """A request whose error message is 15 kB long (item 11: the errors of 10,000 inputs made
    a 90 KB gRPC status, which clients read as "Stream removed"): a PIXELS tensor whose shape
    has 5,000 dimensions, one negative, which the message lists. It must reach the client, cut
    short, over gRPC and OIP REST."""
    shape = [1] * 4999 + [-1]
    request_ = pb.ModelInferRequest(model_name="lenet5")
    request_.inputs.add(name="PIXELS", datatype="FP32", shape=shape)
    request_.raw_input_contents.append(b"")
    with grpc.insecure_channel(target.grpc_target) as channel:
        try:
            pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request_, timeout=60)
            code, details = "OK", ""
        except grpc.RpcError as error:
            code, details = error.code().name, error.details() or ""
    status, rest_body = request(target, "POST", "/v2/models/lenet5/infer", json.dumps(
        {"inputs": [{"name": "PIXELS", "datatype": "FP32", "shape": shape, "data": []}]}
    ).encode())
    return Outcome("long_error", f"{code}, {len(details.encode())} B message; REST {status}, "
                   f"{len(rest_body)} B body", code == "INVALID_ARGUMENT" and status == 400
                   and details.startswith("input PIXELS: shape [1, 1, 1")
                   and details.endswith("more bytes)")
                   and len(details) < 2000 and len(rest_body) < 2000, [code, status],
                   figures={"grpc_message_bytes": len(details.encode()),
                            "rest_body_bytes": len(rest_body)})


def thin_png(width: int, height: int) -> bytes:
    """A grey PNG of width x height zeros: tens of kB that declare up to 40 MP."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

    compressor = zlib.compressobj(9)
    row = b"\x00" + bytes(width)  # filter byte, then the row
    rows_at_once = max(1, 4 * MiB // len(row))
    pixels = b"".join(compressor.compress(row * min(rows_at_once, height - first))
                      for first in range(0, height, rows_at_once)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


def thin_images(target: Target) -> Outcome:
    """Long, thin images under the pixel limit (item 2): 64 x 625,000 to /classify, to a
    144-crop and 8 of them to /classify_batch, and 1 x 40M and 40M x 1 (item 5). Resized to a
    256-pixel shorter side the first would be 640 MP; all must be refused from the header."""
    thin = thin_png(64, 625_000)
    b64 = base64.b64encode(thin).decode()
    statuses: list[int | str] = []
    for path, body in (("/classify", {"image": b64}),
                       ("/multicrop", {"image": b64, "crops": 144}),
                       ("/classify_batch", {"images": [b64] * 8}),
                       ("/classify", {"image": base64.b64encode(thin_png(1, 40_000_000))
                                      .decode()}),
                       ("/classify", {"image": base64.b64encode(thin_png(40_000_000, 1))
                                      .decode()})):
        status, _ = request(target, "POST", path, json.dumps(body).encode())
        statuses.append(status)
    return Outcome("thin_images", f"{statuses}", all(s == 400 for s in statuses), statuses)


def image_formats(target: Target) -> Outcome:
    """Decoders we do not run (item 12): a JPEG 2000 (Pillow would decode it, a 1.3 KB one
    declaring 6000 x 6000 cost 2.2 s and 515 MB) and a Photoshop file, refused by name; and a
    JPEG with 2,000 EXIF tags (item 7), served."""
    from PIL import Image

    def encoded(image: Image.Image, fmt: str, **options) -> bytes:
        buffer = io.BytesIO()
        image.save(buffer, fmt, **options)
        return buffer.getvalue()

    exif = Image.Exif()
    for tag in range(60_000, 62_000):
        exif[tag] = "x" * 10
    files = [(encoded(Image.new("RGB", (64, 64)), "JPEG2000"), 400),
             (b"8BPS" + bytes(64), 400),
             (encoded(Image.new("RGB", (64, 64), "red"), "JPEG", exif=exif.tobytes()), 200)]
    statuses = [request(target, "POST", "/classify", data, "application/octet-stream")[0]
                for data, _ in files]
    return Outcome("image_formats", f"{statuses}",
                   statuses == [expected for _, expected in files], statuses)


ATTACKS: dict[str, Callable[[Target], Outcome]] = {
    "header_bomb": header_bomb, "url_bomb": url_bomb, "idle_connections": idle_connections,
    "half_heads": half_heads, "slow_body": slow_body, "bodies_in_flight": bodies_in_flight,
    "metric_flood": metric_flood, "client_inputs": client_inputs, "long_error": long_error,
    "thin_images": thin_images, "image_formats": image_formats,
}


def run(target: Target, attack: Callable[[Target], Outcome],
        min_seconds: float = 0.0) -> Outcome:
    """An attack, repeated for at least `min_seconds` (so that the probes have time to see
    it), while the prober measures; the answer is the first round's."""
    started = time.monotonic()
    with Prober(target) as prober:
        time.sleep(0.2)  # a few probes before the attack
        outcome = attack(target)
        rounds = 1
        while time.monotonic() - started < min_seconds:
            again = attack(target)
            outcome.statuses += again.statuses
            outcome.refused = outcome.refused and again.refused
            rounds += 1
        time.sleep(0.2)
    if rounds > 1:
        outcome.answer += f" (x{rounds})"
    outcome.readyz_ms, outcome.live_ms = prober.readyz_ms, prober.live_ms
    outcome.rss_growth_mb = prober.rss_growth_mb
    outcome.seconds = time.monotonic() - started
    return outcome


def table(outcomes: list[Outcome]) -> str:
    rows = ["| Attack | Answer | /readyz p50 / p99 / max (ms) | ServerLive p99 (ms) | "
            "Worker RSS peak growth | 5xx/INTERNAL |", "|---|---|---|---|---|---|"]
    for o in outcomes:
        readyz = (f"{percentile(o.readyz_ms, 50):.0f} / {percentile(o.readyz_ms, 99):.0f} / "
                  f"{max(o.readyz_ms, default=float('nan')):.0f}")
        rss = "" if o.rss_growth_mb is None else f"{o.rss_growth_mb:+.0f} MB"
        rows.append(f"| {o.attack} | {o.answer} | {readyz} | {percentile(o.live_ms, 99):.0f} "
                    f"| {rss} | {len(o.server_errors)} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (default: start one)")
    parser.add_argument("--grpc", help="its gRPC address, host:port")
    parser.add_argument("--pid", type=int, help="its `bentoml serve` pid, for the worker's RSS")
    parser.add_argument("--config", help="its convzoo config (for the limits it runs with)")
    parser.add_argument("--only", nargs="+", choices=sorted(ATTACKS))
    parser.add_argument("--p99-ms", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="repeat each attack for at least this long")
    args = parser.parse_args(argv)
    names = args.only or list(ATTACKS)
    if args.url:
        worker = worker_process(args.pid) if args.pid else None
        target = Target(args.url, args.grpc, load_config(args.config),
                        worker.pid if worker else None)
        outcomes = [run(target, ATTACKS[name], args.seconds) for name in names]
    else:
        outcomes = _with_own_server(names, args.seconds)
    print(table(outcomes))
    failed = [o.attack for o in outcomes if o.server_errors or not o.refused
              or o.readyz_p99_ms > args.p99_ms]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


def _with_own_server(names: list[str], seconds: float) -> list[Outcome]:
    from tools.launch import start_server, stop_server

    os.environ.setdefault("BENTOML_HOME", str(Path(__file__).resolve().parent.parent /
                                              ".bentoml"))
    with tempfile.TemporaryDirectory(prefix="convzoo-attack-") as folder:
        server = start_server(Path(folder), ATTACK_CONFIG)
        try:
            worker = worker_process(server.process.pid)
            target = Target(server.http_url, server.grpc_target,
                            load_config(Path(folder) / "convzoo.yaml"),
                            worker.pid if worker else None)
            return [run(target, ATTACKS[name], seconds) for name in names]
        finally:
            stop_server(server)


if __name__ == "__main__":
    raise SystemExit(main())
