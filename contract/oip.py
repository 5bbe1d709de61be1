"""The Open Inference Protocol as ConvZoo speaks it: names, datatypes, parameters.

Every registry model has one OIP signature: input IMAGE (encoded image files, BYTES) or
PIXELS (preprocessed, FP32 [n, C, size, size]); outputs SCORES, INDICES and LABELS, each
[n, top_k], or, when a request names it, `features` (FP32 [n, dim]: the penultimate layer's
activations, L2-normalised unless the parameter `normalize` is false). Composite features
travel as parameters of a ModelInfer request (multi-crop: `crops` on any model) or as the
pseudo-models `ensemble` and `select`. OIP parameters are scalars, so response details
that are lists or objects (an ensemble's members, a selection) travel as JSON text under the
keys in `JSON_PARAMETERS`, and stage timings as `timing_ms.<stage>`. `set_parameter` writes
a Python value into a protobuf parameter map; `parameter_value` reads one back.
Spec: https://github.com/kserve/open-inference-protocol
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

IMAGE, PIXELS = "IMAGE", "PIXELS"
INPUT_DATATYPES = {IMAGE: "BYTES", PIXELS: "FP32"}
SCORES, INDICES, LABELS = "SCORES", "INDICES", "LABELS"
OUTPUT_DATATYPES = {SCORES: "FP32", INDICES: "INT64", LABELS: "BYTES"}
# The embed output: only when a request names it, and then alone (the default outputs are the
# classification's).
FEATURES = "features"
FEATURES_DATATYPE = "FP32"
ALL_OUTPUT_DATATYPES = {**OUTPUT_DATATYPES, FEATURES: FEATURES_DATATYPE}
# The OIP datatypes, in the specification's order.
DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES")
MODEL_VERSION = "1"
DEFAULT_TOP_K = 5

# Pseudo-models: ensembles and selection over OIP (docs/grpc_oip.md).
ENSEMBLE_MODEL = "ensemble"
SELECT_MODEL = "select"
# The request parameters each kind of call takes (None: a registry model); `timeout_s`
# bounds any call, as REST's option of that name does.
CALL_PARAMETERS: dict[str | None, tuple[str, ...]] = {
    None: ("top_k", "crops", "normalize", "timeout_s"),
    ENSEMBLE_MODEL: ("top_k", "crops", "models", "ensemble", "method", "weights",
                     "timeout_s"),
    SELECT_MODEL: ("top_k", "family", "latency_budget_ms", "min_top1", "allow_untrained",
                   "timeout_s"),
}
CONVZOO_PARAMETERS = frozenset(p for names in CALL_PARAMETERS.values() for p in names)

# Response parameters.
WEIGHTS = "weights"
WARNING = "warning"
TIMING_PREFIX = "timing_ms."
# The chosen variant of a `select` call, beside the whole selection, for OIP clients that
# read one parameter (the SDK reads `selection`).
CHOSEN = "chosen"
# Response details that are lists or objects: JSON text on the wire.
JSON_PARAMETERS = frozenset({"models", "member_weights", "members", "selection"})


def set_parameter(target: Any, key: str, value: Any) -> None:
    """A Python value into an OIP InferParameter map entry: bool, int and float as
    themselves, a list of scalars as comma-separated text (a request's `models`, `weights`),
    anything else as text."""
    if isinstance(value, bool):
        target[key].bool_param = value
    elif isinstance(value, int):
        target[key].int64_param = value
    elif isinstance(value, float):
        target[key].double_param = value
    elif isinstance(value, (list, tuple)):
        target[key].string_param = ",".join(str(v) for v in value)
    else:
        target[key].string_param = str(value)


def parameter_value(parameter: Any) -> Any:
    """The value an InferParameter holds (None when none is set)."""
    choice = parameter.WhichOneof("parameter_choice")
    return getattr(parameter, choice) if choice else None


def parameters_from_proto(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """A protobuf parameter map as a dict, entries with no value left out."""
    values = {key: parameter_value(value) for key, value in parameters.items()}
    return {key: value for key, value in values.items() if value is not None}


def detail_parameters(details: Mapping[str, Any]) -> dict[str, Any]:
    """Response details as OIP parameter values: JSON text for `JSON_PARAMETERS`, None left
    out (no parameter means no value)."""
    return {key: json.dumps(value) if key in JSON_PARAMETERS else value
            for key, value in details.items() if value is not None}


def details_from_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """`detail_parameters` read back: the JSON ones decoded."""
    return {key: json.loads(value) if key in JSON_PARAMETERS and isinstance(value, str)
            else value for key, value in parameters.items()}
