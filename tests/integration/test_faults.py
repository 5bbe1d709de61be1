"""Faults: the worker process killed under load comes back on its own, REST and gRPC both.

`bentoml serve` is a supervisor (circus) over a worker process that runs the service, the
model batchers and the gRPC server. The test kills the worker with SIGKILL while clients keep
sending requests, and expects the supervisor to start a new one that loads the start-up
models, turns /readyz 200 and answers REST and gRPC again, with no action from outside.
Requests caught by the kill fail with a connection error (the client sees it; the SDK's
retry policy retries it); none gets a wrong answer.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from contract._proto import grpc_predict_v2_pb2 as pb
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from tests.integration.conftest import start_server, stop_server
from tools.soak import worker_process

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAULT_CONFIG = {"default_model": "efficientnet_lite0",
                "startup_models": ["efficientnet_lite0", "lenet5"]}
RECOVERY_TIMEOUT_S = 120


@pytest.fixture
def fault_server(tmp_path):
    server = start_server(tmp_path, FAULT_CONFIG)
    yield server
    stop_server(server)


class Load:
    """Two client threads sending digits to LeNet-5 until stopped; outcomes with times."""

    def __init__(self, url: str, image: bytes) -> None:
        self.url, self.image = url, image
        self.outcomes: list[tuple[float, float, str]] = []  # (sent, answered, outcome)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(2)]

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                sent = time.monotonic()
                try:
                    response = client.post("/classify?model=lenet5", content=self.image,
                                           headers={"content-type": "image/png"})
                    outcome = str(response.status_code)
                except httpx.TransportError as error:
                    outcome = type(error).__name__
                self.outcomes.append((sent, time.monotonic(), outcome))
                time.sleep(0.02)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(35)


def wait_ready(url: str, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        try:
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return time.monotonic()
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready {timeout_s}s after the kill")


def test_a_killed_worker_is_restarted_and_serves_again(fault_server, digit_pngs):
    url = fault_server.http_url
    old = worker_process(fault_server.process.pid)
    assert old is not None, "no BentoML worker process found"
    with Load(url, digit_pngs[0][0]) as load:
        time.sleep(1.5)
        killed_at = time.monotonic()
        os.kill(old.pid, signal.SIGKILL)
        time.sleep(1.0)  # /readyz must not still be answered by the dead worker
        # the gRPC port went with the worker: refused, not hanging, until the new one is up
        with grpc.insecure_channel(fault_server.grpc_target) as channel, \
                pytest.raises(grpc.RpcError) as down:
            pb_grpc.GRPCInferenceServiceStub(channel).ServerLive(pb.ServerLiveRequest(),
                                                                 timeout=5)
        assert down.value.code() == grpc.StatusCode.UNAVAILABLE
        ready_at = wait_ready(url, RECOVERY_TIMEOUT_S)
        time.sleep(1.5)
    new = worker_process(fault_server.process.pid)
    assert new is not None and new.pid != old.pid
    assert fault_server.process.poll() is None  # the supervisor itself never went down

    before = [o for sent, answered, o in load.outcomes if answered < killed_at]
    after = [o for sent, _, o in load.outcomes if sent > ready_at]
    assert before and set(before) == {"200"}, before
    assert after and set(after) == {"200"}, after
    # in between: served, or a visible connection failure; never a wrong status
    assert {o for _, _, o in load.outcomes} <= {"200", "RemoteProtocolError", "ReadError",
                                               "ConnectError", "ReadTimeout", "WriteError"}

    outcomes = [o for _, _, o in load.outcomes]
    # `pytest -s` shows the figures that docs/reliability.md reports
    print(f"\nworker kill: ready again after {ready_at - killed_at:.1f} s; "
          f"{len(outcomes)} requests: { {o: outcomes.count(o) for o in sorted(set(outcomes))} }")

    # the gRPC server lives in the worker: it is back too
    with grpc.insecure_channel(fault_server.grpc_target) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
        request = pb.ModelInferRequest(model_name="lenet5")
        request.inputs.add(name="IMAGE", datatype="BYTES", shape=[1]
                           ).contents.bytes_contents.append(digit_pngs[0][0])
        response = stub.ModelInfer(request, timeout=30)
        assert response.model_name == "lenet5" and response.outputs
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert health.status == health_pb2.HealthCheckResponse.SERVING
