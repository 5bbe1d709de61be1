"""The load generator every system gets: N concurrent aiohttp clients, each posting the same
prepared request in a loop for a fixed time, timing each answer.

A request's body is encoded once, before the round (the peers' multipart and Triton bodies
included), so the client spends the same few microseconds per request whatever the encoding,
and only the servers' work differs. A request counts as served when its answer is 200 and its
body has been read; anything else (another status, a broken connection, a time-out) is an
error, and the first few are kept so that the report can say what went wrong.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np

REQUEST_TIMEOUT_S = 120.0
ERROR_SAMPLES = 3


@dataclass(frozen=True)
class PreparedRequest:
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
    def images_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds

    def percentile_ms(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def figures(self) -> dict:
        p50, p99 = self.percentile_ms(50), self.percentile_ms(99)
        return {"images_per_s": round(self.images_per_s, 2), "served": len(self.latencies_ms),
                "p50_ms": None if p50 is None else round(p50, 1),
                "p99_ms": None if p99 is None else round(p99, 1),
                "errors": self.errors, "error_samples": self.error_samples,
                "seconds": round(self.seconds, 3)}


async def _load(request: PreparedRequest, clients: int, seconds: float) -> RoundResult:
    import aiohttp

    latencies: list[float] = []
    errors: list[str] = []
    connector = aiohttp.TCPConnector(limit=clients)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                try:
                    async with session.post(request.url, data=request.body,
                                            headers=request.headers) as response:
                        payload = await response.read()
                    if response.status == 200:
                        latencies.append((time.perf_counter() - sent) * 1000)
                        continue
                    errors.append(f"HTTP {response.status}: {payload[:200]!r}")
                except (TimeoutError, aiohttp.ClientError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.05)  # a server that is down must not spin the loop

        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return RoundResult(elapsed, latencies, len(errors), errors[:ERROR_SAMPLES])


def run_round(request: PreparedRequest, clients: int, seconds: float) -> RoundResult:
    """`clients` concurrent clients for `seconds` (requests in flight at the end complete)."""
    return asyncio.run(_load(request, clients, seconds))
