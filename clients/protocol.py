"""What each SDK call sends and how its answer is read, for REST and for gRPC, without I/O.

Each operation is a generator: it yields the calls it needs (`RestCall` or `GrpcCall`), is
sent each call's decoded answer, and returns the SDK's result. The sync and async clients
drive the same generators through their own transports (`clients.transport`), so the
request/response mapping is written once per protocol, not once per client flavour.

REST bodies are JSON with images in base64 (`image`, `images`). Over gRPC every call is an
Open Inference Protocol ModelInfer on a model, with an IMAGE (BYTES) input and options as
request parameters: `top_k`; `crops` for multi-crop; model `ensemble` with `models` or
`ensemble`, `method` and `weights`; model `select` with `family`, `latency_budget_ms` and
`min_top1`; embed asks for the `features` output alone, with `normalize`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from clients.errors import ConvZooError
from clients.images import shrink_for_model
from clients.results import ClassifyResult, DecodeNeeds, EmbedResult, ModelInfo, Prediction
from contract._proto import grpc_predict_v2_pb2 as pb
from contract.oip import (
    CHOSEN,
    ENSEMBLE_MODEL,
    FEATURES,
    IMAGE,
    INDICES,
    INPUT_DATATYPES,
    LABELS,
    OUTPUT_DATATYPES,
    SCORES,
    SELECT_MODEL,
    TIMING_PREFIX,
    WARNING,
    WEIGHTS,
    details_from_parameters,
    parameter_value,
    set_parameter,
)

T = TypeVar("T")


@dataclass(frozen=True)
class RestCall:
    method: str
    path: str
    json: dict[str, Any] | None = None


@dataclass(frozen=True)
class GrpcCall:
    rpc: str  # a method of GRPCInferenceServiceStub
    request: Any


Operation = Generator[Any, Any, T]


def _options(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def _b64(image: bytes) -> str:
    return base64.b64encode(image).decode("ascii")


class RestProtocol:
    def classify(self, image: bytes, model: str | None, top_k: int, timeout_s: float | None
                 ) -> Operation[ClassifyResult]:
        body = yield RestCall("POST", "/classify", _options(
            image=_b64(image), model=model, top_k=top_k, timeout_s=timeout_s))
        return ClassifyResult.from_json(body)

    def classify_batch(self, images: Sequence[bytes], model: str | None, top_k: int,
                       timeout_s: float | None) -> Operation[list[ClassifyResult]]:
        body = yield RestCall("POST", "/classify_batch", _options(
            images=[_b64(i) for i in images], model=model, top_k=top_k, timeout_s=timeout_s))
        return [ClassifyResult.from_json(r) for r in body["results"]]

    def embed(self, images: Sequence[bytes], model: str | None, normalize: bool,
              timeout_s: float | None) -> Operation[EmbedResult]:
        body = yield RestCall("POST", "/embed", _options(
            images=[_b64(i) for i in images], model=model, normalize=normalize,
            timeout_s=timeout_s))
        return EmbedResult.from_json(body)

    def ensemble(self, image: bytes, models: Sequence[str] | None, ensemble: str | None,
                 weights: Sequence[float] | None, method: str, top_k: int, crops: int | None,
                 timeout_s: float | None) -> Operation[ClassifyResult]:
        body = yield RestCall("POST", "/ensemble", _options(
            image=_b64(image), models=list(models) if models else None, ensemble=ensemble,
            weights=list(weights) if weights else None, method=method, top_k=top_k,
            crops=crops, timeout_s=timeout_s))
        return ClassifyResult.from_json(body)

    def multicrop(self, image: bytes, model: str | None, crops: int, top_k: int,
                  timeout_s: float | None) -> Operation[ClassifyResult]:
        body = yield RestCall("POST", "/multicrop", _options(
            image=_b64(image), model=model, crops=crops, top_k=top_k, timeout_s=timeout_s))
        return ClassifyResult.from_json(body)

    def select(self, image: bytes, family: str, latency_budget_ms: float | None,
               min_top1: float | None, top_k: int, timeout_s: float | None
               ) -> Operation[ClassifyResult]:
        body = yield RestCall("POST", "/select", _options(
            image=_b64(image), family=family, latency_budget_ms=latency_budget_ms,
            min_top1=min_top1, top_k=top_k, timeout_s=timeout_s))
        return ClassifyResult.from_json(body)

    def models(self) -> Operation[list[ModelInfo]]:
        body = yield RestCall("GET", "/models")
        return [ModelInfo.from_json(m) for m in body["models"]]

    def decode_needs(self) -> Operation[DecodeNeeds]:
        body = yield RestCall("GET", "/models")
        return DecodeNeeds(
            default_model=body["default_model"],
            sides={m["name"]: {int(k): int(v) for k, v in
                               (m.get("input") or {}).get("decode_sides", {}).items()}
                   for m in body["models"]},
            families={m["name"]: m.get("family", "") for m in body["models"]})


# --- gRPC (Open Inference Protocol) ------------------------------------------------------

def infer_request(model: str | None, images: Sequence[bytes], outputs: Sequence[str] = (),
                  **parameters: Any) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model or "")
    for name in outputs:
        request.outputs.add(name=name)
    tensor = request.inputs.add(name=IMAGE, datatype=INPUT_DATATYPES[IMAGE], shape=[len(images)])
    tensor.contents.bytes_contents.extend(images)
    for key, value in parameters.items():
        if value is not None:
            set_parameter(request.parameters, key, value)
    return request


def _response_parameters(response: pb.ModelInferResponse) -> tuple[dict[str, Any],
                                                                     dict[str, float]]:
    """A response's parameters, and its stage timings (`timing_ms.<stage>`) apart."""
    parameters = {key: parameter_value(value) for key, value in response.parameters.items()}
    timing = {key.removeprefix(TIMING_PREFIX): value for key, value in parameters.items()
              if key.startswith(TIMING_PREFIX)}
    return parameters, timing


def embedding_from_infer(response: pb.ModelInferResponse) -> EmbedResult:
    """The `features` output of a ModelInfer response (typed FP32 contents) as one result."""
    output = next((o for o in response.outputs if o.name == FEATURES), None)
    if output is None or len(output.shape) != 2:
        raise ConvZooError(f"ModelInfer response lacks a 2-D {FEATURES} output")
    rows, dim = output.shape
    values = list(output.contents.fp32_contents)
    if len(values) != rows * dim:
        raise ConvZooError(f"ModelInfer response has {len(values)} features for shape "
                           f"[{rows}, {dim}]")
    parameters, timing = _response_parameters(response)
    return EmbedResult(
        model=response.model_name, weights=str(parameters.get(WEIGHTS, "unknown")),
        dim=dim, normalized=bool(parameters.get("normalized", True)),
        embeddings=[values[row * dim:(row + 1) * dim] for row in range(rows)],
        timing_ms=timing, warning=parameters.get(WARNING))


def results_from_infer(response: pb.ModelInferResponse) -> list[ClassifyResult]:
    """One ClassifyResult per image of a ModelInfer response (typed contents, as the SDK's
    requests get: raw output contents answer only raw inputs)."""
    outputs = {output.name: output for output in response.outputs}
    missing = [n for n in OUTPUT_DATATYPES if n not in outputs]
    if missing:
        raise ConvZooError(f"ModelInfer response lacks output(s) {missing}")
    rows, k = (list(outputs[SCORES].shape) + [0, 0])[:2]
    scores = list(outputs[SCORES].contents.fp32_contents)
    indices = list(outputs[INDICES].contents.int64_contents)
    labels = list(outputs[LABELS].contents.bytes_contents)
    if not len(scores) == len(indices) == len(labels) == rows * k:
        raise ConvZooError(f"ModelInfer response has {len(scores)} scores, {len(indices)} "
                           f"indices and {len(labels)} labels for shape [{rows}, {k}]")
    parameters, timing = _response_parameters(response)
    # What a composite call adds, as REST's JSON has it (`chosen` repeats the selection's).
    details = details_from_parameters({
        key: value for key, value in parameters.items()
        if key not in (WEIGHTS, WARNING, CHOSEN) and not key.startswith(TIMING_PREFIX)
        and value is not None})
    return [ClassifyResult(
        model=response.model_name, weights=str(parameters.get(WEIGHTS, "unknown")),
        predictions=[Prediction(int(indices[j]), labels[j].decode(), float(scores[j]))
                     for j in range(row * k, (row + 1) * k)],
        timing_ms=timing, warning=parameters.get(WARNING), details=details)
        for row in range(rows)]


class GrpcProtocol:
    def classify(self, image: bytes, model: str | None, top_k: int, timeout_s: float | None
                 ) -> Operation[ClassifyResult]:
        response = yield GrpcCall("ModelInfer", infer_request(model, [image], top_k=top_k))
        return results_from_infer(response)[0]

    def classify_batch(self, images: Sequence[bytes], model: str | None, top_k: int,
                       timeout_s: float | None) -> Operation[list[ClassifyResult]]:
        response = yield GrpcCall("ModelInfer", infer_request(model, images, top_k=top_k))
        return results_from_infer(response)

    def embed(self, images: Sequence[bytes], model: str | None, normalize: bool,
              timeout_s: float | None) -> Operation[EmbedResult]:
        response = yield GrpcCall("ModelInfer", infer_request(
            model, images, outputs=[FEATURES], normalize=normalize))
        return embedding_from_infer(response)

    def ensemble(self, image: bytes, models: Sequence[str] | None, ensemble: str | None,
                 weights: Sequence[float] | None, method: str, top_k: int, crops: int | None,
                 timeout_s: float | None) -> Operation[ClassifyResult]:
        response = yield GrpcCall("ModelInfer", infer_request(
            ENSEMBLE_MODEL, [image], models=list(models) if models else None,
            ensemble=ensemble,
            weights=list(weights) if weights else None, method=method, top_k=top_k,
            crops=crops))
        return results_from_infer(response)[0]

    def multicrop(self, image: bytes, model: str | None, crops: int, top_k: int,
                  timeout_s: float | None) -> Operation[ClassifyResult]:
        response = yield GrpcCall("ModelInfer", infer_request(model, [image], crops=crops,
                                                              top_k=top_k))
        return results_from_infer(response)[0]

    def select(self, image: bytes, family: str, latency_budget_ms: float | None,
               min_top1: float | None, top_k: int, timeout_s: float | None
               ) -> Operation[ClassifyResult]:
        response = yield GrpcCall("ModelInfer", infer_request(
            SELECT_MODEL, [image], family=family,
            latency_budget_ms=None if latency_budget_ms is None else float(latency_budget_ms),
            min_top1=None if min_top1 is None else float(min_top1), top_k=top_k))
        return results_from_infer(response)[0]

    def decode_needs(self) -> Operation[DecodeNeeds]:
        """From every model's metadata: its `decode_side.<crops>` properties; the default
        model is the one whose metadata an empty name gets."""
        index = yield GrpcCall("RepositoryIndex", pb.RepositoryIndexRequest())
        sides, families = {}, {}
        for entry in index.models:
            meta = yield GrpcCall("ModelMetadata", pb.ModelMetadataRequest(name=entry.name))
            properties = dict(meta.properties)
            families[entry.name] = properties.get("family", "")
            sides[entry.name] = {int(key.split(".", 1)[1]): int(value)
                                 for key, value in properties.items()
                                 if key.startswith("decode_side.")}
        default = yield GrpcCall("ModelMetadata", pb.ModelMetadataRequest(name=""))
        return DecodeNeeds(default.name, sides, families)

    def models(self) -> Operation[list[ModelInfo]]:
        index = yield GrpcCall("RepositoryIndex", pb.RepositoryIndexRequest())
        infos = []
        for entry in index.models:
            meta = yield GrpcCall("ModelMetadata", pb.ModelMetadataRequest(name=entry.name))
            properties = dict(meta.properties)
            infos.append(ModelInfo(
                name=entry.name, family=properties.get("family", ""),
                weights=properties.get("weights", "unknown"), ready=entry.state == "READY",
                input_size=int(properties.get("input_size", 0)),
                num_classes=int(properties.get("num_classes", 0)),
                details={"platform": meta.platform, "state": entry.state,
                         "reason": entry.reason, "labels": properties.get("labels")}))
        return infos


# --- the optional client-side shrink ------------------------------------------------------

class DecodeNeedsCache:
    """What `decode_needs` answered, fetched once per client."""

    needs: DecodeNeeds | None = None


def shrunk(protocol: RestProtocol | GrpcProtocol, cache: DecodeNeedsCache,
           images: Sequence[bytes], side: Callable[[DecodeNeeds], int | None],
           operation: Callable[[list[bytes]], Operation[T]]) -> Operation[T]:
    """`operation` on the images shrunk for the side `side` picks from the server's decode
    needs (fetched on first use); unshrunk when the needs name no side."""
    if cache.needs is None:
        cache.needs = yield from protocol.decode_needs()
    min_side = side(cache.needs)
    if min_side:
        images = [shrink_for_model(image, min_side) for image in images]
    return (yield from operation(list(images)))
