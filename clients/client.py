"""`ConvZooClient` (sync) and `AsyncConvZooClient`: the typed entry points of the SDK.

Both speak REST (`transport="rest"`, httpx) or gRPC (`transport="grpc"`, the Open Inference
Protocol) with the same methods and results. Options common to both: a default `timeout`
(seconds, per call, overridable per call; it bounds retries too), a `retry` policy
(exponential backoff on unavailable/overloaded), TLS (`tls=True`; `root_certificates=` for
gRPC, `verify=` for REST), an API key sent as `authorization: Bearer <key>`, and
`resize_for_model=True`, which shrinks camera photos before sending them to what the model
(or crop scheme, ensemble, family) will use, read from the server's model list once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from clients.images import ImageInput, to_image_bytes
from clients.protocol import (
    DecodeNeedsCache,
    GrpcProtocol,
    Operation,
    RestProtocol,
    T,
    shrunk,
)
from clients.results import ClassifyResult, DecodeNeeds, EmbedResult, ModelInfo
from clients.transport import (
    AsyncGrpcTransport,
    AsyncRestTransport,
    GrpcTransport,
    RestTransport,
    RetryPolicy,
    run_async,
    run_sync,
)

Transport = Literal["rest", "grpc"]
DEFAULT_REST_URL = "http://localhost:3000"
DEFAULT_GRPC_TARGET = "localhost:3001"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
_UNSET: Any = object()


def rest_url(url: str | None, tls: bool) -> str:
    if url is None:  # the default server, over https when TLS is asked for
        url = DEFAULT_REST_URL.replace("http://", "https://") if tls else DEFAULT_REST_URL
    url = url.rstrip("/")
    if "://" not in url:
        return f"{'https' if tls else 'http'}://{url}"
    if tls and url.startswith("http://"):
        raise ValueError(f"tls=True but the URL {url} is plain http; use https://")
    return url


def grpc_target(url: str | None, tls: bool) -> tuple[str, bool]:
    """host:port, and whether to use TLS (a grpcs:// or https:// URL asks for it)."""
    url = url or DEFAULT_GRPC_TARGET
    scheme, _, rest = url.rpartition("://")
    if scheme in ("grpcs", "https"):
        tls = True
    elif scheme not in ("", "grpc", "http"):
        raise ValueError(f"unsupported scheme {scheme!r} in gRPC target {url}")
    return rest.rstrip("/"), tls


def _certificates(root_certificates: bytes | str | Path | None) -> bytes | None:
    if root_certificates is None or isinstance(root_certificates, bytes):
        return root_certificates
    return Path(root_certificates).read_bytes()


def _image_list(images: ImageInput | Sequence[ImageInput]) -> list[ImageInput]:
    """One image or several as a list (a path, bytes or a PIL image is one image)."""
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]


class _Options:
    """The constructor arguments both clients share, checked once."""

    def __init__(self, url: str | None, transport: Transport, timeout: float | None,
                 retry: RetryPolicy | None, tls: bool,
                 root_certificates: bytes | str | Path | None, verify: Any,
                 api_key: str | None, max_message_bytes: int) -> None:
        if transport not in ("rest", "grpc"):
            raise ValueError(f"transport must be 'rest' or 'grpc', got {transport!r}")
        self.transport = transport
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.protocol = RestProtocol() if transport == "rest" else GrpcProtocol()
        self.headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.metadata = tuple(self.headers.items())
        if transport == "rest":
            self.url = rest_url(url, tls)
            self.verify = verify
        else:
            self.url, self.tls = grpc_target(url, tls)
            self.root_certificates = _certificates(root_certificates)
            self.max_message_bytes = max_message_bytes

    def timeout_for(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is _UNSET else timeout


class _ClientBase:
    """Options and transport, built the same way for the blocking and the asyncio client."""

    _rest_transport: type
    _grpc_transport: type

    def __init__(self, url: str | None = None, *, transport: Transport = "rest",
                 timeout: float | None = DEFAULT_TIMEOUT_S, retry: RetryPolicy | None = None,
                 tls: bool = False, root_certificates: bytes | str | Path | None = None,
                 verify: Any = True, api_key: str | None = None,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 resize_for_model: bool = False) -> None:
        self.options = _Options(url, transport, timeout, retry, tls, root_certificates, verify,
                                api_key, max_message_bytes)
        # Shrink photos before sending to what the model needs (see clients.images).
        self.resize_for_model = resize_for_model
        self._decode_needs = DecodeNeedsCache()
        o = self.options
        self._transport = (
            self._rest_transport(o.url, o.headers, o.verify) if transport == "rest"
            else self._grpc_transport(o.url, o.metadata, o.tls, o.root_certificates,
                                      o.max_message_bytes))

    def _sending(self, images: Sequence[ImageInput],
                 side: Callable[[DecodeNeeds], int | None],
                 operation: Callable[[list[bytes]], Operation[T]]) -> Operation[T]:
        """`operation` on the images' bytes, shrunk first when `resize_for_model` is on, to
        the side `side` picks from the server's decode needs."""
        encoded = [to_image_bytes(image) for image in images]
        if not self.resize_for_model:
            return operation(encoded)
        return shrunk(self.options.protocol, self._decode_needs, encoded, side, operation)

    # The side each call's photos are decoded for, from the server's decode needs.
    @staticmethod
    def _model_side(model: str | None, crops: int = 1
                    ) -> Callable[[DecodeNeeds], int | None]:
        return lambda needs: needs.side_for([model or needs.default_model], crops)

    @staticmethod
    def _members_side(models: Sequence[str] | None, crops: int | None
                      ) -> Callable[[DecodeNeeds], int | None]:
        return lambda needs: needs.side_for(list(models) if models else None, crops or 1)

    @staticmethod
    def _family_side(family: str) -> Callable[[DecodeNeeds], int | None]:
        return lambda needs: needs.side_for(None, 1, family)


class ConvZooClient(_ClientBase):
    """Blocking client. Use as a context manager, or call `close()`."""

    _rest_transport = RestTransport
    _grpc_transport = GrpcTransport

    def _run(self, operation: Operation[T], timeout: float | None) -> T:
        return run_sync(operation, self._transport.send, self.options.retry, timeout)

    def classify(self, image: ImageInput, model: str | None = None, top_k: int = 5, *,
                 timeout: float | None = _UNSET) -> ClassifyResult:
        timeout = self.options.timeout_for(timeout)
        return self._run(self._sending(
            [image], self._model_side(model),
            lambda sent: self.options.protocol.classify(sent[0], model, top_k, timeout)),
            timeout)

    def classify_batch(self, images: Sequence[ImageInput], model: str | None = None,
                       top_k: int = 5, *, timeout: float | None = _UNSET
                       ) -> list[ClassifyResult]:
        timeout = self.options.timeout_for(timeout)
        return self._run(self._sending(
            images, self._model_side(model),
            lambda sent: self.options.protocol.classify_batch(sent, model, top_k, timeout)),
            timeout)

    def embed(self, images: ImageInput | Sequence[ImageInput], model: str | None = None,
              normalize: bool = True, *, timeout: float | None = _UNSET) -> EmbedResult:
        """The features of one image or several (one batch), L2-normalised unless
        `normalize=False`; `result.embeddings[i]` is image i's."""
        timeout = self.options.timeout_for(timeout)
        return self._run(self._sending(
            _image_list(images), self._model_side(model),
            lambda sent: self.options.protocol.embed(sent, model, normalize, timeout)),
            timeout)

    def ensemble(self, image: ImageInput, models: Sequence[str] | None = None,
                 ensemble: str | None = None, weights: Sequence[float] | None = None,
                 method: str = "mean", top_k: int = 5, crops: int | None = None, *,
                 timeout: float | None = _UNSET) -> ClassifyResult:
        timeout = self.options.timeout_for(timeout)
        return self._run(self._sending(
            [image], self._members_side(models, crops),
            lambda sent: self.options.protocol.ensemble(
                sent[0], models, ensemble, weights, method, top_k, crops, timeout)), timeout)

    def multicrop(self, image: ImageInput, model: str | None = None, crops: int = 10,
                  top_k: int = 5, *, timeout: float | None = _UNSET) -> ClassifyResult:
        timeout = self.options.timeout_for(timeout)
        return self._run(self._sending(
            [image], self._model_side(model, crops),
            lambda sent: self.options.protocol.multicrop(sent[0], model, crops, top_k,
                                                          timeout)), timeout)

    def select(self, image: ImageInput, family: str, latency_budget_ms: float | None = None,
               min_top1: float | None = None, top_k: int = 5, *,
               timeout: float | None = _UNSET) -> ClassifyResult:
        timeout = self.options.timeout_for(timeout)
        return self._run(self._sending(
            [image], self._family_side(family),
            lambda sent: self.options.protocol.select(
                sent[0], family, latency_budget_ms, min_top1, top_k, timeout)), timeout)

    def models(self, *, timeout: float | None = _UNSET) -> list[ModelInfo]:
        return self._run(self.options.protocol.models(), self.options.timeout_for(timeout))

    def close(self) -> None:
        self._transport.close()

    def __enter__(self) -> ConvZooClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncConvZooClient(_ClientBase):
    """asyncio client, the same methods as `ConvZooClient` as coroutines. Use as an async
    context manager, or await `close()`."""

    _rest_transport = AsyncRestTransport
    _grpc_transport = AsyncGrpcTransport

    async def _run(self, operation: Operation[T], timeout: float | None) -> T:
        return await run_async(operation, self._transport.send, self.options.retry, timeout)

    async def classify(self, image: ImageInput, model: str | None = None, top_k: int = 5, *,
                       timeout: float | None = _UNSET) -> ClassifyResult:
        timeout = self.options.timeout_for(timeout)
        return await self._run(self._sending(
            [image], self._model_side(model),
            lambda sent: self.options.protocol.classify(sent[0], model, top_k, timeout)),
            timeout)

    async def classify_batch(self, images: Sequence[ImageInput], model: str | None = None,
                             top_k: int = 5, *, timeout: float | None = _UNSET
                             ) -> list[ClassifyResult]:
        timeout = self.options.timeout_for(timeout)
        return await self._run(self._sending(
            images, self._model_side(model),
            lambda sent: self.options.protocol.classify_batch(sent, model, top_k, timeout)),
            timeout)

    async def embed(self, images: ImageInput | Sequence[ImageInput], model: str | None = None,
                    normalize: bool = True, *, timeout: float | None = _UNSET
                    ) -> EmbedResult:
        timeout = self.options.timeout_for(timeout)
        return await self._run(self._sending(
            _image_list(images), self._model_side(model),
            lambda sent: self.options.protocol.embed(sent, model, normalize, timeout)),
            timeout)

    async def ensemble(self, image: ImageInput, models: Sequence[str] | None = None,
                       ensemble: str | None = None, weights: Sequence[float] | None = None,
                       method: str = "mean", top_k: int = 5, crops: int | None = None, *,
                       timeout: float | None = _UNSET) -> ClassifyResult:
        timeout = self.options.timeout_for(timeout)
        return await self._run(self._sending(
            [image], self._members_side(models, crops),
            lambda sent: self.options.protocol.ensemble(
                sent[0], models, ensemble, weights, method, top_k, crops, timeout)), timeout)

    async def multicrop(self, image: ImageInput, model: str | None = None, crops: int = 10,
                        top_k: int = 5, *, timeout: float | None = _UNSET) -> ClassifyResult:
        timeout = self.options.timeout_for(timeout)
        return await self._run(self._sending(
            [image], self._model_side(model, crops),
            lambda sent: self.options.protocol.multicrop(sent[0], model, crops, top_k,
                                                          timeout)), timeout)

    async def select(self, image: ImageInput, family: str,
                     latency_budget_ms: float | None = None, min_top1: float | None = None,
                     top_k: int = 5, *, timeout: float | None = _UNSET) -> ClassifyResult:
        timeout = self.options.timeout_for(timeout)
        return await self._run(self._sending(
            [image], self._family_side(family),
            lambda sent: self.options.protocol.select(
                sent[0], family, latency_budget_ms, min_top1, top_k, timeout)), timeout)

    async def models(self, *, timeout: float | None = _UNSET) -> list[ModelInfo]:
        return await self._run(self.options.protocol.models(),
                               self.options.timeout_for(timeout))

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncConvZooClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
