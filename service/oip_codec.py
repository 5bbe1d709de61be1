"""Open Inference Protocol (KServe v2) tensors to and from the data plane's requests and results.

The one converters module of the OIP adapters: the gRPC servicer (`service.grpc`) and the OIP
REST routes (`service.oip_rest`) turn their wire form into `Tensor`s here, `infer_call` turns
a ModelInfer request into the data plane's typed request (`service.core.requests`; checked
against the signature before any work), and `output_tensors` and `response_parameters` turn
the typed results back. It owns the signature every registry model has under OIP (input IMAGE,
encoded image files as BYTES, or PIXELS, preprocessed FP32; outputs SCORES, INDICES, LABELS,
each [batch, k], or the `features` output alone, FP32 [batch, dim], when a request names it:
names in `contract.oip`), the numpy side of the datatypes, the raw encodings
(little-endian elements; BYTES elements each behind a 4-byte little-endian length) and the
protobuf and JSON forms of tensors, parameters, metadata and the repository index. It runs
nothing: the adapters call the data plane. Spec: https://github.com/kserve/open-inference-protocol
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from contract._proto import grpc_predict_v2_pb2 as pb
from contract.oip import (
    ALL_OUTPUT_DATATYPES,
    CALL_PARAMETERS,
    CHOSEN,
    CONVZOO_PARAMETERS,
    DEFAULT_TOP_K,
    ENSEMBLE_MODEL,
    FEATURES,
    FEATURES_DATATYPE,
    IMAGE,
    INDICES,
    INPUT_DATATYPES,
    MODEL_VERSION,
    OUTPUT_DATATYPES,
    PIXELS,
    SCORES,
    SELECT_MODEL,
    TIMING_PREFIX,
    WARNING,
    WEIGHTS,
    detail_parameters,
    parameters_from_proto,
    set_parameter,
)
from service.core.arguments import (
    flag_argument,
    integer_argument,
    name_list,
    number_list,
    optional_number,
    optional_text,
    timeout_argument,
)
from service.core.catalogue import IndexEntry, Signature
from service.core.crops import check_crop_scheme
from service.core.errors import InvalidArgument, ModelNotFound
from service.core.requests import (
    ClassifyRequest,
    EmbedRequest,
    EnsembleRequest,
    MulticropRequest,
    PixelsRequest,
    Request,
    SelectRequest,
    deadline_for,
)
from service.core.results import Embedding, Result, SelectResult

SERVER_NAME = "convzoo"
# RepositoryIndex is served, but not the rest of the model_repository extension (load,
# unload), so that one is not claimed.
EXTENSIONS = ("binary_tensor_data",)

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"), "UINT64": np.dtype("<u8"), "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"), "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
# Where each datatype's elements live in InferTensorContents (FP16 only travels raw).
CONTENTS_FIELDS = {
    "BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents",
    "UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents",
    "INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents",
    "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents",
}
# The models take one input and give three outputs: a request with thousands (10,000 inputs
# made a 90 KB error, issue 14) is refused before any of them is converted or listed.
MAX_INPUTS = 16
_LENGTH = struct.Struct("<I")


@dataclass
class Tensor:
    """One OIP tensor. BYTES data is an object array of `bytes`."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InferCall:
    """What a ModelInfer request asks for: the data plane's request, and the outputs wanted
    (in the order asked)."""

    request: Request
    outputs: list[str]
    # The model named (None: the default), for the metric label until the model that ran
    # is known.
    requested: str | None


# --- raw encodings -----------------------------------------------------------------------

def encode_bytes_elements(elements: Iterable[bytes]) -> bytes:
    """OIP raw BYTES: each element as a 4-byte little-endian length, then its bytes."""
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def decode_bytes_elements(raw: bytes, name: str) -> list[bytes]:
    elements, offset = [], 0
    view = memoryview(raw)
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise InvalidArgument(f"input {name}: raw BYTES data ends inside an element's "
                                  "4-byte length prefix")
        (length,) = _LENGTH.unpack_from(raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise InvalidArgument(f"input {name}: raw BYTES element of {length} bytes runs "
                                  f"past the end of the data ({len(raw) - offset} left)")
        elements.append(bytes(view[offset:offset + length]))
        offset += length
    return elements


def _dtype(datatype: str, name: str) -> np.dtype:
    try:
        return DATATYPES[datatype]
    except KeyError:
        raise InvalidArgument(f"input {name}: unknown datatype {datatype!r}; OIP datatypes "
                              f"are {', '.join(DATATYPES)}") from None


def _checked_shape(shape: Iterable[int], name: str) -> tuple[int, ...]:
    shape = tuple(shape)
    # JSON can put anything in a shape (found by fuzzing: `[{}]` was a 500).
    if not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise InvalidArgument(f"input {name}: shape must be a list of integers, got "
                              f"{str(list(shape))[:100]}")
    if any(d < 0 for d in shape):
        raise InvalidArgument(f"input {name}: shape {list(shape)} has a negative dimension")
    return shape


def tensor_from_raw(name: str, datatype: str, shape: Iterable[int], raw: bytes,
                    parameters: dict[str, Any] | None = None) -> Tensor:
    shape = _checked_shape(shape, name)
    dtype = _dtype(datatype, name)
    count = math.prod(shape)
    if datatype == "BYTES":
        elements = decode_bytes_elements(raw, name)
        if len(elements) != count:
            raise InvalidArgument(f"input {name}: shape {list(shape)} holds {count} elements "
                                  f"but the raw data has {len(elements)}")
        data = np.empty(count, dtype=object)
        data[:] = elements
    else:
        if len(raw) != count * dtype.itemsize:
            raise InvalidArgument(f"input {name}: shape {list(shape)} of {datatype} needs "
                                  f"{count * dtype.itemsize} bytes, got {len(raw)}")
        data = np.frombuffer(raw, dtype=dtype)
    return Tensor(name, datatype, shape, data.reshape(shape), parameters or {})


def tensor_to_raw(tensor: Tensor) -> bytes:
    if tensor.datatype == "BYTES":
        return encode_bytes_elements(tensor.data.ravel().tolist())
    return np.ascontiguousarray(tensor.data, dtype=DATATYPES[tensor.datatype]).tobytes()


def tensor_from_elements(name: str, datatype: str, shape: Iterable[int],
                         elements: Iterable[Any], parameters: dict[str, Any] | None = None
                         ) -> Tensor:
    """A tensor from typed elements (protobuf contents or JSON data, nested or flat)."""
    shape = _checked_shape(shape, name)
    dtype = _dtype(datatype, name)
    count = math.prod(shape)
    if datatype == "BYTES":
        flat = list(_flatten(elements))
        data = np.empty(len(flat), dtype=object)
        data[:] = flat
    else:
        try:
            data = np.asarray(elements, dtype=dtype).ravel()
        except (TypeError, ValueError, OverflowError) as exc:  # 300 or inf as UINT8: Overflow
            raise InvalidArgument(f"input {name}: data is not {datatype}: {exc}") from None
    if data.size != count:
        raise InvalidArgument(f"input {name}: shape {list(shape)} holds {count} elements but "
                              f"{data.size} were given")
    return Tensor(name, datatype, shape, data.reshape(shape), parameters or {})


def _flatten(elements: Iterable[Any]) -> Iterable[Any]:
    for element in elements:
        if isinstance(element, (list, tuple)):
            yield from _flatten(element)
        else:
            yield element


# --- the models' OIP signature -----------------------------------------------------------

def server_metadata() -> dict[str, Any]:
    try:
        version = metadata.version("convzoo")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {"name": SERVER_NAME, "version": version, "extensions": list(EXTENSIONS)}


def check_version(name: str, version: str | None) -> None:
    if version and version != MODEL_VERSION:
        raise ModelNotFound(f"model {name} has no version {version!r}; it has version "
                            f"{MODEL_VERSION}", model=name)


def model_metadata(signature: Signature) -> dict[str, Any]:
    """A model's OIP metadata: its signature and properties."""
    size, channels = signature.input_size, signature.channels
    return {
        "name": signature.name,
        "versions": [MODEL_VERSION],
        "platform": signature.platform,
        "inputs": [{"name": IMAGE, "datatype": INPUT_DATATYPES[IMAGE], "shape": [-1]},
                   {"name": PIXELS, "datatype": INPUT_DATATYPES[PIXELS],
                    "shape": [-1, channels, size, size]}],
        # The second dimension is the request's top_k; the features' is the model's width
        # (listed where the stored graph has that output).
        "outputs": [{"name": n, "datatype": d, "shape": [-1, -1]}
                    for n, d in OUTPUT_DATATYPES.items()] + (
            [] if signature.features_dim is None else
            [{"name": FEATURES, "datatype": FEATURES_DATATYPE,
              "shape": [-1, signature.features_dim]}]),
        "properties": {"family": signature.family, "labels": signature.labels,
                       "num_classes": str(signature.num_classes), "input_size": str(size),
                       "weights": signature.weights,
                       **{f"decode_side.{scheme}": str(side)
                          for scheme, side in signature.decode_sides.items()}},
    }


def repository_index(entries: list[IndexEntry]) -> list[dict[str, str]]:
    return [{"name": entry.name, "version": MODEL_VERSION, "state": entry.state,
             "reason": entry.reason} for entry in entries]


# --- request -> data-plane request; results -> response ----------------------------------

def infer_call(known_model: Callable[[str], object], model: str, version: str | None,
               inputs: list[Tensor], parameters: dict[str, Any], outputs: list[str],
               transport_timeout_s: float | None = None) -> InferCall:
    """Checks a ModelInfer request against the signature (before any work) and says what to
    run; `outputs` are the requested output names, none meaning all of them;
    `transport_timeout_s` is the transport's own bound (a gRPC deadline, OIP REST's header),
    which the `timeout_s` parameter can only shorten. `known_model(name)` raises
    ModelNotFound for an unknown model."""
    pseudo_model = model if model in (ENSEMBLE_MODEL, SELECT_MODEL) else None
    if model and not pseudo_model:
        known_model(model)  # an unknown model is NOT_FOUND, whatever else is wrong
    if model:
        check_version(model, version)
    if len(outputs) > MAX_INPUTS:
        raise InvalidArgument(f"{len(outputs)} outputs requested; the outputs are "
                              f"{', '.join(ALL_OUTPUT_DATATYPES)}")
    outputs = list(dict.fromkeys(outputs)) or list(OUTPUT_DATATYPES)
    unknown_outputs = [n for n in outputs if n not in ALL_OUTPUT_DATATYPES]
    if unknown_outputs:
        raise InvalidArgument(f"unknown output(s) {unknown_outputs}; outputs are "
                              f"{', '.join(ALL_OUTPUT_DATATYPES)}")
    embed = FEATURES in outputs
    if embed and len(outputs) > 1:
        raise InvalidArgument(f"output {FEATURES} is asked alone; ask for "
                              f"{', '.join(OUTPUT_DATATYPES)} in another request")
    if "normalize" in parameters and not embed:
        raise InvalidArgument(f"parameter normalize applies to the {FEATURES} output only")
    allowed = CALL_PARAMETERS[pseudo_model]
    misplaced = sorted(k for k in parameters if k in CONVZOO_PARAMETERS and k not in allowed)
    if misplaced:
        raise InvalidArgument(f"parameter(s) {misplaced} do not apply to model "
                              f"{model or '(default)'}; it takes {', '.join(allowed)} "
                              f"(ensembles: model {ENSEMBLE_MODEL!r}, selection: model "
                              f"{SELECT_MODEL!r})")
    # Parameters arrive typed (a gRPC double can be inf): parsed like REST's options.
    top_k = integer_argument(parameters.get("top_k", DEFAULT_TOP_K), "top_k")
    deadline = deadline_for(transport_timeout_s, timeout_argument(parameters.get("timeout_s")))
    names = [t.name for t in inputs]
    unknown = sorted(set(names) - {IMAGE, PIXELS})
    if unknown:
        raise InvalidArgument(f"unknown input(s) {unknown}; inputs are {IMAGE} (BYTES, "
                              f"encoded image files) or {PIXELS} (FP32, preprocessed)")
    if len(inputs) != 1:
        raise InvalidArgument(f"send exactly one input, {IMAGE} or {PIXELS}; got {names}")
    tensor = inputs[0]
    expected = INPUT_DATATYPES[tensor.name]
    if tensor.datatype != expected:
        raise InvalidArgument(f"input {tensor.name} must be {expected}, got {tensor.datatype}")
    common = {"top_k": top_k, "deadline": deadline}
    if embed and (pseudo_model or "crops" in parameters or tensor.name == PIXELS):
        raise InvalidArgument(f"output {FEATURES} comes from one model's encoded images "
                              f"({IMAGE}), without crops, ensembles or selection")
    if tensor.name == PIXELS:
        if pseudo_model or "crops" in parameters:
            what = pseudo_model or "multi-crop"
            raise InvalidArgument(f"{what} takes encoded images ({IMAGE}), not {PIXELS}: "
                                  "each member or crop has its own preprocessing")
        return InferCall(PixelsRequest(pixels=tensor.data, model=model or None, **common),
                         outputs, model or None)
    images = tuple(bytes(e) for e in tensor.data.ravel())
    if pseudo_model == ENSEMBLE_MODEL:
        request: Request = EnsembleRequest(
            images=images, models=name_list(parameters.get("models"), "models"),
            ensemble=optional_text(parameters.get("ensemble"), "ensemble"),
            weights=number_list(parameters.get("weights"), "weights"),
            method=optional_text(parameters.get("method"), "method"),
            crops=_crops(parameters.get("crops", 1)), **common)
        return InferCall(request, outputs, request.ensemble or ENSEMBLE_MODEL)
    if pseudo_model == SELECT_MODEL:
        if "family" not in parameters:
            raise InvalidArgument("model 'select' needs the parameter 'family'")
        request = SelectRequest(
            images=images, family=optional_text(parameters["family"], "family"),
            latency_budget_ms=optional_number(parameters.get("latency_budget_ms"),
                                              "latency_budget_ms"),
            min_top1=optional_number(parameters.get("min_top1"), "min_top1"),
            allow_untrained=flag_argument(parameters.get("allow_untrained"),
                                          "allow_untrained"), **common)
        return InferCall(request, outputs, SELECT_MODEL)
    if embed:
        normalize = parameters.get("normalize")
        return InferCall(EmbedRequest(
            images=images, model=model or None, deadline=deadline,
            normalize=True if normalize is None else flag_argument(normalize, "normalize")),
            outputs, model or None)
    if "crops" in parameters:
        return InferCall(MulticropRequest(images=images, model=model or None,
                                          crops=_crops(parameters["crops"]),
                                          **common), outputs, model or None)
    return InferCall(ClassifyRequest(images=images, model=model or None, **common), outputs,
                     model or None)


def _crops(value: Any) -> int:
    # An integer first: a gRPC double can be inf or NaN, which is said as such.
    return check_crop_scheme(integer_argument(value, "crops"))


def output_tensors(results: Sequence[Result], names: list[str]) -> list[Tensor]:
    """The named outputs (of SCORES, INDICES, LABELS; or FEATURES, alone) of the results, in
    the order named."""
    if names == [FEATURES]:
        vectors = np.stack([r.vector for r in results if isinstance(r, Embedding)])
        return [Tensor(FEATURES, FEATURES_DATATYPE, vectors.shape,
                       vectors.astype(np.float32, copy=False))]
    rows = [r.predictions for r in results]
    shape = (len(rows), len(rows[0]) if rows else 0)
    tensors = []
    for name in names:
        if name == SCORES:
            data = np.array([[p.score for p in row] for row in rows], dtype=np.float32)
        elif name == INDICES:
            data = np.array([[p.index for p in row] for row in rows], dtype=np.int64)
        else:
            data = np.empty(shape, dtype=object)
            for i, row in enumerate(rows):
                data[i, :] = [p.label.encode() for p in row]
        tensors.append(Tensor(name, OUTPUT_DATATYPES[name], shape, data.reshape(shape)))
    return tensors


def response_parameters(results: Sequence[Result]) -> dict[str, Any]:
    """The weights status (pretrained, random-init or fine-tuned), for random-init the
    warning, what a composite call or an embedding adds (`details`: lists and objects as
    JSON text, contract.oip), and the first image's stage timings as `timing_ms.<stage>`
    (OIP parameters are scalars)."""
    first = results[0]
    parameters: dict[str, Any] = {WEIGHTS: first.weights}
    if first.warning:
        parameters[WARNING] = first.warning
    parameters.update(detail_parameters(first.details()))
    if isinstance(first, SelectResult):
        parameters[CHOSEN] = first.selection.chosen.name
    for stage, value in first.timing_ms.items():
        parameters[f"{TIMING_PREFIX}{stage}"] = value
    return parameters


# --- protobuf form -----------------------------------------------------------------------

def parameters_to_proto(values: dict[str, Any], target: Any) -> None:
    for key, value in values.items():
        set_parameter(target, key, value)


def _check_input_count(count: int) -> None:
    if count > MAX_INPUTS:
        raise InvalidArgument(f"{count} inputs; send exactly one input, {IMAGE} (BYTES, "
                              f"encoded image files) or {PIXELS} (FP32, preprocessed)")


def inputs_from_proto(request: pb.ModelInferRequest) -> list[Tensor]:
    _check_input_count(len(request.inputs))
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(f"raw_input_contents has {len(raw)} entries for "
                              f"{len(request.inputs)} inputs; send one per input")
    tensors = []
    for i, proto in enumerate(request.inputs):
        parameters = parameters_from_proto(proto.parameters)
        if raw:
            if proto.HasField("contents"):
                raise InvalidArgument(f"input {proto.name}: contents and raw_input_contents "
                                      "are both set; use one")
            tensors.append(tensor_from_raw(proto.name, proto.datatype, proto.shape, raw[i],
                                           parameters))
            continue
        if proto.datatype not in CONTENTS_FIELDS:
            _dtype(proto.datatype, proto.name)
            raise InvalidArgument(f"input {proto.name}: {proto.datatype} travels only in "
                                  "raw_input_contents")
        elements = getattr(proto.contents, CONTENTS_FIELDS[proto.datatype])
        tensors.append(tensor_from_elements(proto.name, proto.datatype, proto.shape, elements,
                                            parameters))
    return tensors


def infer_response_to_proto(model: str, request_id: str, outputs: list[Tensor],
                            parameters: dict[str, Any], raw: bool) -> pb.ModelInferResponse:
    """Raw output contents answer raw inputs, as tritonclient (which sends raw) expects."""
    response = pb.ModelInferResponse(model_name=model, model_version=MODEL_VERSION,
                                     id=request_id)
    parameters_to_proto(parameters, response.parameters)
    for tensor in outputs:
        proto = response.outputs.add(name=tensor.name, datatype=tensor.datatype,
                                     shape=tensor.shape)
        if raw:
            response.raw_output_contents.append(tensor_to_raw(tensor))
        else:
            getattr(proto.contents, CONTENTS_FIELDS[tensor.datatype]).extend(
                tensor.data.ravel().tolist())
    return response


def model_metadata_to_proto(info: dict[str, Any]) -> pb.ModelMetadataResponse:
    """`model_metadata`'s dict as the protobuf response."""
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=info["name"], versions=info["versions"], platform=info["platform"],
        inputs=[tensor(**t) for t in info["inputs"]],
        outputs=[tensor(**t) for t in info["outputs"]], properties=info["properties"])


# --- JSON form (OIP REST, with Triton's binary tensor data extension) --------------------

def _image_from_json(element: Any, index: int) -> bytes:
    """IMAGE elements in JSON are base64 strings: OIP JSON carries BYTES as text."""
    if not isinstance(element, str):
        raise InvalidArgument(f"input {IMAGE}[{index}]: expected a base64 string, got "
                              f"{type(element).__name__}")
    if element.startswith("data:") and "," in element:
        element = element.split(",", 1)[1]
    try:
        return base64.b64decode(element, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(f"input {IMAGE}[{index}]: not valid base64") from None


def inputs_from_json(body: dict[str, Any], binary: bytes) -> list[Tensor]:
    """Input tensors of an OIP JSON request; `binary` is what followed the JSON header."""
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgument("request needs a non-empty 'inputs' list")
    _check_input_count(len(inputs))
    tensors, offset = [], 0
    for i, item in enumerate(inputs):
        if not isinstance(item, dict):
            raise InvalidArgument(f"inputs[{i}] must be an object")
        name, datatype = item.get("name"), item.get("datatype")
        shape, parameters = item.get("shape"), dict(parameters_from_json(item))
        if not isinstance(name, str) or not isinstance(datatype, str) or not isinstance(
                shape, list):
            raise InvalidArgument(f"inputs[{i}] needs 'name', 'datatype' and 'shape'")
        size = parameters.pop("binary_data_size", None)
        if size is not None:
            if not isinstance(size, int) or size < 0 or offset + size > len(binary):
                raise InvalidArgument(f"input {name}: binary_data_size {size!r} does not fit "
                                      f"the {len(binary) - offset} binary bytes left")
            tensors.append(tensor_from_raw(name, datatype, shape,
                                           binary[offset:offset + size], parameters))
            offset += size
            continue
        data = item.get("data")
        if not isinstance(data, list):
            raise InvalidArgument(f"input {name}: 'data' must be a list (or send it as "
                                  "binary data with a binary_data_size parameter)")
        if datatype == "BYTES":
            flat = list(_flatten(data))
            data = ([_image_from_json(e, j) for j, e in enumerate(flat)] if name == IMAGE
                    else [e.encode() if isinstance(e, str) else e for e in flat])
        tensors.append(tensor_from_elements(name, datatype, shape, data, parameters))
    if offset != len(binary):
        raise InvalidArgument(f"{len(binary) - offset} bytes of binary data are not claimed "
                              "by any input's binary_data_size")
    return tensors


def parameters_from_json(body: dict[str, Any]) -> dict[str, Any]:
    parameters = body.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidArgument("'parameters' must be an object")
    return parameters


def requested_outputs_from_json(body: dict[str, Any]) -> tuple[list[str], dict[str, bool]]:
    """Requested output names, and which of them the client asked for as binary data."""
    default_binary = bool(parameters_from_json(body).get("binary_data_output", False))
    names, binary = [], {}
    for i, item in enumerate(body.get("outputs") or []):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise InvalidArgument(f"outputs[{i}] must be an object with a 'name'")
        names.append(item["name"])
        binary[item["name"]] = bool(parameters_from_json(item).get("binary_data",
                                                                  default_binary))
    for name in ALL_OUTPUT_DATATYPES:
        binary.setdefault(name, default_binary)
    return names, binary


def infer_response_to_json(model: str, request_id: str | None, outputs: list[Tensor],
                           parameters: dict[str, Any], binary: dict[str, bool]
                           ) -> tuple[dict[str, Any], bytes]:
    """The JSON response and the binary data that follows it (empty when none)."""
    body: dict[str, Any] = {"model_name": model, "model_version": MODEL_VERSION,
                            "parameters": parameters, "outputs": []}
    if request_id:
        body["id"] = request_id
    chunks = []
    for tensor in outputs:
        entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype,
                                 "shape": list(tensor.shape)}
        if binary.get(tensor.name):
            chunk = tensor_to_raw(tensor)
            entry["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        elif tensor.datatype == "BYTES":
            entry["data"] = [e.decode() for e in tensor.data.ravel()]
        else:
            entry["data"] = tensor.data.ravel().tolist()
        body["outputs"].append(entry)
    return body, b"".join(chunks)
