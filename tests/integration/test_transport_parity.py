"""The same answer over every transport: each SDK call, made over REST and over gRPC, sync and
async, against one real server, gives equal results field by field, timings excepted, and the
same exception (class and error code) for the same error.

"Timings" are what measures time and so differs from one call to the next: `timing_ms`, the
members' `started_ms`/`latency_ms`, and the latency figures inside a selection (its expected
and actual latencies, service and queue-wait estimates, the reason, which quotes them, and
whether a variant is on the accuracy/latency frontier, which those latencies decide). Scores
are compared to 1e-5: the same image through the same model gives the same probabilities.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

import pytest

from clients import AsyncConvZooClient, ConvZooClient
from clients.errors import ConvZooError
from clients.results import ClassifyResult, EmbedResult, ModelInfo

pytestmark = pytest.mark.integration

# Keys whose values are measured times (or derived from them), at any depth.
TIMING_KEYS = {"timing_ms", "started_ms", "latency_ms", "reason", "slowdown", "observations",
               "profiled_ms", "observed_mean_ms", "latency_source", "latency_measured",
               "unmeasured", "profiled_for_request", "overhead_observed", "on_frontier"}
LITE_PAIR = ("efficientnet_lite0", "efficientnet_lite1")

# name: (what the call does, given a client and the test's photo)
CALLS: dict[str, Callable[[Any, bytes], Any]] = {
    "classify": lambda c, image: c.classify(image, top_k=3),
    "classify lenet5": lambda c, image: c.classify(image, model="lenet5", top_k=10),
    "classify_batch": lambda c, image: c.classify_batch([image, image], top_k=2),
    "multicrop": lambda c, image: c.multicrop(image, crops=5, top_k=3),
    "ensemble of models": lambda c, image: c.ensemble(image, models=LITE_PAIR,
                                                      weights=[1, 3], method="geometric"),
    "configured ensemble": lambda c, image: c.ensemble(image, ensemble="lite-pair", crops=5),
    "select": lambda c, image: c.select(image, family="efficientnet_lite",
                                        latency_budget_ms=60_000, top_k=3),
    "embed": lambda c, image: c.embed([image, image]),
    "embed raw": lambda c, image: c.embed(image, model="efficientnet_lite1", normalize=False),
    "models": lambda c, image: c.models(),
}
ERRORS: dict[str, Callable[[Any, bytes], Any]] = {
    "unknown model": lambda c, image: c.classify(image, model="no_such_model"),
    "not an image": lambda c, image: c.classify(b"definitely not an image"),
    "top_k too large": lambda c, image: c.classify(image, top_k=100_000),
    "unknown ensemble": lambda c, image: c.ensemble(image, ensemble="no-such-ensemble"),
    "nothing fits": lambda c, image: c.select(image, family="efficientnet_lite",
                                              latency_budget_ms=0.001),
    "bad crop scheme": lambda c, image: c.multicrop(image, crops=3),
    "embed an unknown model": lambda c, image: c.embed(image, model="no_such_model"),
    "embed not an image": lambda c, image: c.embed([image, b"not an image"]),
}


def comparable(value: Any) -> Any:
    """`value` without its timings, scores rounded to what a float32 carries."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()
                if k not in TIMING_KEYS and not k.endswith("_ms")}
    if isinstance(value, (list, tuple)):
        return [comparable(v) for v in value]
    if isinstance(value, float):
        return pytest.approx(value, rel=1e-5, abs=1e-6)
    return value


def differences(left: Any, right: Any, path: str = "") -> list[str]:
    """Where two results differ, path by path: pytest's diff cuts nested dicts short."""
    if isinstance(left, dict) and isinstance(right, dict):
        return [d for key in sorted(set(left) | set(right), key=str)
                for d in differences(left.get(key), right.get(key), f"{path}.{key}")]
    if isinstance(left, list) and isinstance(right, list) and len(left) == len(right):
        return [d for index, (a, b) in enumerate(zip(left, right, strict=True))
                for d in differences(a, b, f"{path}[{index}]")]
    return [] if left == right else [f"{path}: {left!r} != {right!r}"]


def fields_of(result: Any) -> Any:
    if isinstance(result, list):
        return [fields_of(r) for r in result]
    if isinstance(result, ModelInfo):  # the listing's extras differ by transport (its doc)
        return {f.name: getattr(result, f.name) for f in fields(result) if f.name != "details"}
    assert isinstance(result, (ClassifyResult, EmbedResult))
    return comparable(asdict(result))


@pytest.fixture(params=["sync", "async"])
def call(request, server) -> Callable[[str, Callable], Any]:
    """Runs a call on a client of the transport named, sync or async."""
    def run(transport: str, operation: Callable) -> Any:
        target = server.http_url if transport == "rest" else server.grpc_target
        if request.param == "sync":
            with ConvZooClient(target, transport=transport, timeout=120) as client:
                return operation(client)

        async def run_async() -> Any:
            async with AsyncConvZooClient(target, transport=transport, timeout=120) as client:
                return await operation(client)

        return asyncio.run(run_async())

    return run


@pytest.mark.parametrize("name", CALLS)
def test_every_call_gives_the_same_result_over_rest_and_grpc(call, name, cat_jpeg):
    operation = CALLS[name]
    over_rest = call("rest", lambda client: operation(client, cat_jpeg))
    over_grpc = call("grpc", lambda client: operation(client, cat_jpeg))
    assert fields_of(over_grpc) == fields_of(over_rest), differences(
        fields_of(over_grpc), fields_of(over_rest))
    if name == "select":
        assert over_grpc.model == over_rest.model == over_rest.details["selection"]["chosen"]
        assert isinstance(over_grpc.details["selection"], dict)
    if name == "configured ensemble":
        assert over_grpc.model == over_rest.model == "lite-pair"
        assert [m["model"] for m in over_grpc.details["members"]] == list(LITE_PAIR)
    if name.startswith("embed"):
        assert over_grpc.dim == over_rest.dim == 1280
        assert len(over_grpc.embeddings) == len(over_rest.embeddings) >= 1
    if name == "ensemble of models":
        assert over_grpc.model == "ensemble" and over_grpc.details["member_weights"] == [
            0.25, 0.75]


@pytest.mark.parametrize("name", ERRORS)
def test_every_error_raises_the_same_exception_over_rest_and_grpc(call, name, cat_jpeg):
    operation = ERRORS[name]
    raised = {}
    for transport in ("rest", "grpc"):
        with pytest.raises(ConvZooError) as caught:
            call(transport, lambda client, op=operation: op(client, cat_jpeg))
        raised[transport] = caught.value
    assert type(raised["grpc"]) is type(raised["rest"])
    assert raised["grpc"].code == raised["rest"].code is not None
    assert raised["rest"].status and raised["grpc"].grpc_code
