"""The load generator of every benchmark: N concurrent clients, each sending the same prepared
request in a loop for a fixed time, timing each answer; over HTTP (aiohttp) or OIP gRPC.

A request's body is encoded once, before the round, so that a client spends the same few
microseconds per request whatever the encoding and only the servers' work differs. A request
counts as served when its answer is 200 (gRPC: OK) and has been read in full; anything else
(another status, a broken connection, a time-out) is an error, and the first few are kept so
that a report can say what went wrong. aiohttp, not httpx: a fifth of httpx's CPU per request
on the same cores, so the generator disturbs the server less (`make bench`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

REQUEST_TIMEOUT_S = 120.0
ERROR_SAMPLES = 3
# After a failed request: a server that is down must not make the clients spin.
ERROR_PAUSE_S = 0.05


@dataclass(frozen=True)
class PreparedRequest:
    """An HTTP POST: where, with which body and headers."""

    url: str
    body: bytes
    headers: dict[str, str]


@dataclass
class RoundResult:
    seconds: float
    latencies_ms: list[float]
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)

    @property
    def served(self) -> int:
        return len(self.latencies_ms)

    @property
    def images_per_s(self) -> float:
        return self.served / self.seconds

    def percentile_ms(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def figures(self) -> dict:
        p50, p99 = self.percentile_ms(50), self.percentile_ms(99)
        return {"images_per_s": round(self.images_per_s, 2), "served": self.served,
                "p50_ms": None if p50 is None else round(p50, 1),
                "p99_ms": None if p99 is None else round(p99, 1),
                "errors": self.errors, "error_samples": self.error_samples,
                "seconds": round(self.seconds, 3)}


async def _clients(send: Callable[[], Awaitable[str | None]], clients: int, seconds: float
                   ) -> RoundResult:
    """`clients` loops calling `send` (None: served, else what went wrong) for `seconds`."""
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            error = await send()
            if error is None:
                latencies.append((time.perf_counter() - sent) * 1000)
            else:
                errors.append(error)

    await asyncio.gather(*(client() for _ in range(clients)))
    return RoundResult(time.perf_counter() - started, latencies, len(errors),
                       errors[:ERROR_SAMPLES])


async def http_load(request: PreparedRequest, clients: int, seconds: float) -> RoundResult:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def send() -> str | None:
            try:
                async with session.post(request.url, data=request.body,
                                        headers=request.headers) as response:
                    payload = await response.read()
            except (TimeoutError, aiohttp.ClientError) as exc:
                await asyncio.sleep(ERROR_PAUSE_S)
                return f"{type(exc).__name__}: {exc}"
            return None if response.status == 200 else (
                f"HTTP {response.status}: {payload[:200]!r}")

        return await _clients(send, clients, seconds)


def image_infer_request(model: str, image: bytes) -> Any:
    """An OIP ModelInfer request of one encoded image, as raw input contents."""
    from contract._proto import grpc_predict_v2_pb2 as pb
    from contract.oip import IMAGE, INPUT_DATATYPES

    # OIP raw BYTES: each element behind its 4-byte little-endian length.
    raw = len(image).to_bytes(4, "little") + image
    return pb.ModelInferRequest(
        model_name=model,
        inputs=[pb.ModelInferRequest.InferInputTensor(
            name=IMAGE, datatype=INPUT_DATATYPES[IMAGE], shape=[1])],
        raw_input_contents=[raw])


async def grpc_load(target: str, request: Any, clients: int, seconds: float) -> RoundResult:
    """As `http_load`, for OIP ModelInfer `request` on the gRPC `target` (host:port)."""
    import grpc

    from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc

    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)

        async def send() -> str | None:
            try:
                await stub.ModelInfer(request, timeout=REQUEST_TIMEOUT_S)
            except grpc.aio.AioRpcError as exc:
                return f"{exc.code().name}: {exc.details()}"
            return None

        return await _clients(send, clients, seconds)


def run_round(request: PreparedRequest, clients: int, seconds: float) -> RoundResult:
    """`clients` concurrent HTTP clients for `seconds` (requests in flight at the end
    complete)."""
    return asyncio.run(http_load(request, clients, seconds))


def run_grpc_round(target: str, request: Any, clients: int, seconds: float) -> RoundResult:
    return asyncio.run(grpc_load(target, request, clients, seconds))
