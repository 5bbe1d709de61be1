"""The SDK's I/O: REST (httpx) and gRPC transports, sync and async, and the retry loop.

A transport sends one `RestCall`/`GrpcCall` and returns the decoded answer, or raises a
`ConvZooError` subclass. `run_sync`/`run_async` drive an operation (see `clients.protocol`)
through a transport: each call is retried with exponential backoff while the error is
`retryable` (unavailable or overloaded), at most `RetryPolicy.max_attempts` times, and the
whole operation, retries and pauses included, stays within the call's timeout.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import httpx

from clients.errors import (
    ConvZooError,
    DeadlineExceededError,
    UnavailableError,
    from_grpc,
    from_http,
)
from clients.protocol import GrpcCall, Operation, RestCall, T
from contract._proto import grpc_predict_v2_pb2_grpc as pb_grpc
from contract.errors import ERROR_CODE_KEY, RETRY_AFTER_KEY

MAX_ATTEMPTS_LIMIT = 10


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff: the n-th retry waits initial_backoff_s * multiplier**(n-1), at most
    max_backoff_s, at least the server's Retry-After (itself capped at max_backoff_s), plus up
    to `jitter` of that at random so that many clients do not retry in step."""

    max_attempts: int = 3
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not 1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise ValueError(f"max_attempts must be 1..{MAX_ATTEMPTS_LIMIT}, "
                             f"got {self.max_attempts}")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.multiplier < 1:
            raise ValueError("backoffs must be >= 0 and the multiplier >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be 0..1, got {self.jitter}")

    def delay_s(self, retry: int, error: ConvZooError) -> float:
        """The pause before retry number `retry` (1 for the first retry)."""
        delay = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry - 1))
        if error.retry_after_s:
            delay = max(delay, min(error.retry_after_s, self.max_backoff_s))
        return delay * (1 + random.uniform(0, self.jitter))  # noqa: S311 (not cryptographic)


NO_RETRY = RetryPolicy(max_attempts=1)


class _Attempts:
    """The retry bookkeeping of one operation, shared by the sync and async drivers."""

    def __init__(self, policy: RetryPolicy, timeout_s: float | None,
                 clock: Callable[[], float]) -> None:
        self.policy = policy
        self.timeout_s = timeout_s
        self.clock = clock
        self.deadline = None if timeout_s is None else clock() + timeout_s

    def remaining_s(self) -> float | None:
        if self.deadline is None:
            return None
        remaining = self.deadline - self.clock()
        if remaining <= 0:
            raise DeadlineExceededError(f"the call's timeout of {self.timeout_s}s passed")
        return remaining

    def pause_s(self, attempt: int, error: ConvZooError) -> float:
        """How long to wait before trying again; re-raises `error` when it should not be."""
        if not error.retryable or attempt >= self.policy.max_attempts:
            raise error
        delay = self.policy.delay_s(attempt, error)
        if self.deadline is not None and self.clock() + delay >= self.deadline:
            raise error
        return delay


def run_sync(operation: Operation[T], send: Callable[[Any, float | None], Any],
             policy: RetryPolicy, timeout_s: float | None,
             sleep: Callable[[float], None] = time.sleep,
             clock: Callable[[], float] = time.monotonic) -> T:
    attempts = _Attempts(policy, timeout_s, clock)
    call = next(operation)
    while True:
        attempt = 1
        while True:
            try:
                answer = send(call, attempts.remaining_s())
                break
            except ConvZooError as error:
                sleep(attempts.pause_s(attempt, error))
                attempt += 1
        try:
            call = operation.send(answer)
        except StopIteration as done:
            return done.value


async def run_async(operation: Operation[T], send: Callable[[Any, float | None], Any],
                    policy: RetryPolicy, timeout_s: float | None,
                    sleep: Callable[[float], Any] = asyncio.sleep,
                    clock: Callable[[], float] = time.monotonic) -> T:
    attempts = _Attempts(policy, timeout_s, clock)
    call = next(operation)
    while True:
        attempt = 1
        while True:
            try:
                answer = await send(call, attempts.remaining_s())
                break
            except ConvZooError as error:
                await sleep(attempts.pause_s(attempt, error))
                attempt += 1
        try:
            call = operation.send(answer)
        except StopIteration as done:
            return done.value


# --- REST ----------------------------------------------------------------------------------

def _seconds(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _rest_answer(response: httpx.Response) -> Any:
    if response.status_code < 400:
        return response.json()
    try:
        body = response.json()
    except ValueError:
        body = {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # ConvZoo's REST endpoints: {"error": {"code", "message"}}
        message, code = str(error.get("message", "")), error.get("code")
    else:  # the OIP routes: {"error": message, "code": code}
        message, code = str(error or response.text[:500]), body.get("code")
    raise from_http(response.status_code, message or response.reason_phrase, code,
                    _seconds(response.headers.get("retry-after")))


def _rest_failure(url: str, exc: httpx.HTTPError) -> ConvZooError:
    if isinstance(exc, httpx.TimeoutException):
        return DeadlineExceededError(f"no answer from {url} in time: {exc}")
    if isinstance(exc, httpx.TransportError):
        return UnavailableError(f"cannot reach {url}: {exc}")
    return ConvZooError(f"HTTP request to {url} failed: {exc}")


class RestTransport:
    def __init__(self, url: str, headers: dict[str, str], verify: Any) -> None:
        self.url = url
        self.client = httpx.Client(base_url=url, headers=headers, verify=verify)

    def send(self, call: RestCall, timeout_s: float | None) -> Any:
        try:
            response = self.client.request(call.method, call.path, json=call.json,
                                           timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise _rest_failure(self.url, exc) from exc
        return _rest_answer(response)

    def close(self) -> None:
        self.client.close()


class AsyncRestTransport:
    def __init__(self, url: str, headers: dict[str, str], verify: Any) -> None:
        self.url = url
        self.client = httpx.AsyncClient(base_url=url, headers=headers, verify=verify)

    async def send(self, call: RestCall, timeout_s: float | None) -> Any:
        try:
            response = await self.client.request(call.method, call.path, json=call.json,
                                                 timeout=timeout_s)
        except httpx.HTTPError as exc:
            raise _rest_failure(self.url, exc) from exc
        return _rest_answer(response)

    async def close(self) -> None:
        await self.client.aclose()


# --- gRPC ----------------------------------------------------------------------------------

def _grpc_failure(exc: grpc.RpcError) -> ConvZooError:
    # gRPC's errors are also grpc.Call objects: status code, details, trailing metadata (the
    # server's error code and Retry-After, contract.errors).
    status = exc.code()
    metadata = {key: value for key, value in exc.trailing_metadata() or ()
                if isinstance(value, str)}
    return from_grpc(status.name, exc.details() or status.name,
                     _seconds(metadata.get(RETRY_AFTER_KEY)), metadata.get(ERROR_CODE_KEY))


def grpc_channel_args(tls: bool, root_certificates: bytes | None, max_message_bytes: int
                      ) -> tuple[grpc.ChannelCredentials | None, list[tuple[str, int]]]:
    options = [("grpc.max_send_message_length", max_message_bytes),
               ("grpc.max_receive_message_length", max_message_bytes)]
    credentials = grpc.ssl_channel_credentials(root_certificates) if tls else None
    return credentials, options


class GrpcTransport:
    def __init__(self, target: str, metadata: tuple[tuple[str, str], ...], tls: bool,
                 root_certificates: bytes | None, max_message_bytes: int) -> None:
        credentials, options = grpc_channel_args(tls, root_certificates, max_message_bytes)
        self.channel = (grpc.secure_channel(target, credentials, options) if credentials
                        else grpc.insecure_channel(target, options))
        self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        self.metadata = metadata

    def send(self, call: GrpcCall, timeout_s: float | None) -> Any:
        try:
            return getattr(self.stub, call.rpc)(call.request, timeout=timeout_s,
                                                metadata=self.metadata or None)
        except grpc.RpcError as exc:
            raise _grpc_failure(exc) from None

    def close(self) -> None:
        self.channel.close()


class AsyncGrpcTransport:
    def __init__(self, target: str, metadata: tuple[tuple[str, str], ...], tls: bool,
                 root_certificates: bytes | None, max_message_bytes: int) -> None:
        self.target = target
        self.metadata = metadata
        self.credentials, self.options = grpc_channel_args(tls, root_certificates,
                                                           max_message_bytes)
        self.channel: grpc.aio.Channel | None = None
        self.stub: pb_grpc.GRPCInferenceServiceStub | None = None

    def _connect(self) -> pb_grpc.GRPCInferenceServiceStub:
        # grpc.aio channels belong to the event loop they are made on: make it on first use.
        if self.stub is None:
            self.channel = (
                grpc.aio.secure_channel(self.target, self.credentials, self.options)
                if self.credentials else grpc.aio.insecure_channel(self.target, self.options))
            self.stub = pb_grpc.GRPCInferenceServiceStub(self.channel)
        return self.stub

    async def send(self, call: GrpcCall, timeout_s: float | None) -> Any:
        try:
            return await getattr(self._connect(), call.rpc)(
                call.request, timeout=timeout_s, metadata=self.metadata or None)
        except grpc.RpcError as exc:
            raise _grpc_failure(exc) from None

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
