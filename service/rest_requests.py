"""REST's request models: the options of each route, parsed once from the query string,
multipart form fields or a JSON body, into the data plane's typed requests.

Each field is parsed by the shared argument parser of its kind (`service.core.arguments`, the
same as OIP's), so a wrong value gets the same 400 and message over every protocol; pydantic
holds the fields, their defaults and their documentation, and the OpenAPI document
(`service.openapi`) is generated from these models, so it cannot drift from what the routes
accept. Images are not fields: they are taken from the body apart (multipart files, base64
strings, a raw body) and never pass through pydantic, so a large image is not validated or
copied twice. Options a route does not take are ignored, as they always were.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema

from service.core.arguments import (
    flag_argument,
    integer_argument,
    model_argument,
    name_list,
    number_list,
    optional_number,
    optional_text,
    timeout_argument,
)
from service.core.crops import CROP_SCHEMES, check_crop_scheme
from service.core.ensemble import METHODS
from service.core.errors import InvalidArgument
from service.core.requests import (
    DEFAULT_MULTICROP,
    DEFAULT_TOP_K,
    ClassifyRequest,
    EmbedRequest,
    EnsembleRequest,
    FrontierRequest,
    MulticropRequest,
    SelectRequest,
    deadline_for,
)
from service.frontier_plot import PLOT_FORMATS, check_format

_NAMES = {"type": "string", "description": "a JSON list, or names separated by commas"}


def _parsed(parse, schema: dict[str, Any], description: str) -> Any:
    """A field parsed by `parse`, documented as `schema`."""
    return (BeforeValidator(parse), WithJsonSchema({**schema, "description": description}),
            Field(description=description))


Model = Annotated[str | None, *_parsed(
    model_argument, {"type": "string"},
    "model name (GET /models lists them); default: the default model")]
TopK = Annotated[int, *_parsed(
    lambda value: integer_argument(value, "top_k"), {"type": "integer", "minimum": 1},
    f"classes returned per image (default {DEFAULT_TOP_K})")]
TimeoutS = Annotated[float | None, *_parsed(
    timeout_argument, {"type": "number", "minimum": 0.001},
    "deadline in seconds: work still queued past it is dropped (504)")]
Crops = Annotated[int, *_parsed(
    check_crop_scheme, {"type": "integer", "enum": list(CROP_SCHEMES)}, "crop scheme")]
Members = Annotated[tuple[str, ...] | None, *_parsed(
    lambda value: name_list(value, "models"), _NAMES, "ensemble members")]
EnsembleName = Annotated[str | None, *_parsed(
    lambda value: optional_text(value, "ensemble"), {"type": "string"},
    "a configured ensemble's name")]
MemberWeights = Annotated[tuple[float, ...] | None, *_parsed(
    lambda value: number_list(value, "weights"), _NAMES, "one weight per member")]
Method = Annotated[str | None, *_parsed(
    lambda value: optional_text(value, "method"), {"type": "string", "enum": list(METHODS)},
    "how member probabilities combine")]
Family = Annotated[str | None, *_parsed(
    lambda value: optional_text(value, "family"), {"type": "string"},
    "model family, e.g. mobilenet_v1")]
BudgetMs = Annotated[float | None, *_parsed(
    lambda value: optional_number(value, "latency_budget_ms"), {"type": "number"},
    "the most accurate variant within this latency")]
MinTop1 = Annotated[float | None, *_parsed(
    lambda value: optional_number(value, "min_top1"), {"type": "number"},
    "the fastest variant at least this accurate (top-1, percent)")]
AllowUntrained = Annotated[bool, *_parsed(
    lambda value: flag_argument(value, "allow_untrained"), {"type": "boolean"},
    "let random-init variants be chosen")]
Normalize = Annotated[bool, *_parsed(
    lambda value: True if value is None else flag_argument(value, "normalize"),
    {"type": "boolean"}, "L2-normalise each embedding (default true)")]
Format = Annotated[str, *_parsed(
    check_format, {"type": "string", "enum": ["json", *PLOT_FORMATS]}, "response format")]


class Options(BaseModel):
    """A route's options; unknown ones are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore", arbitrary_types_allowed=True)


class ClassifyOptions(Options):
    model: Model = None
    top_k: TopK = DEFAULT_TOP_K
    timeout_s: TimeoutS = None

    def request(self, images: tuple[bytes, ...]) -> ClassifyRequest:
        return ClassifyRequest(images=images, model=self.model, top_k=self.top_k,
                               deadline=deadline_for(self.timeout_s))


class EmbedOptions(Options):
    model: Model = None
    normalize: Normalize = True
    timeout_s: TimeoutS = None

    def request(self, images: tuple[bytes, ...]) -> EmbedRequest:
        return EmbedRequest(images=images, model=self.model, normalize=self.normalize,
                            deadline=deadline_for(self.timeout_s))


class MulticropOptions(ClassifyOptions):
    crops: Crops = DEFAULT_MULTICROP

    def request(self, images: tuple[bytes, ...]) -> MulticropRequest:
        return MulticropRequest(images=images, model=self.model, crops=self.crops,
                                top_k=self.top_k, deadline=deadline_for(self.timeout_s))


class EnsembleOptions(Options):
    models: Members = None
    ensemble: EnsembleName = None
    weights: MemberWeights = None
    method: Method = None
    top_k: TopK = DEFAULT_TOP_K
    crops: Crops = 1
    timeout_s: TimeoutS = None

    def request(self, images: tuple[bytes, ...]) -> EnsembleRequest:
        return EnsembleRequest(images=images, models=self.models, ensemble=self.ensemble,
                               weights=self.weights, method=self.method, crops=self.crops,
                               top_k=self.top_k, deadline=deadline_for(self.timeout_s))


class SelectOptions(Options):
    family: Family = None
    latency_budget_ms: BudgetMs = None
    min_top1: MinTop1 = None
    top_k: TopK = DEFAULT_TOP_K
    allow_untrained: AllowUntrained = False
    timeout_s: TimeoutS = None

    def request(self, images: tuple[bytes, ...]) -> SelectRequest:
        return SelectRequest(images=images, family=self.family,
                             latency_budget_ms=self.latency_budget_ms, min_top1=self.min_top1,
                             allow_untrained=self.allow_untrained, top_k=self.top_k,
                             deadline=deadline_for(self.timeout_s))


class FrontierQuery(Options):
    family: Family = None
    format: Format = "json"
    allow_untrained: AllowUntrained = False

    def request(self) -> FrontierRequest:
        return FrontierRequest(family=self.family, allow_untrained=self.allow_untrained)


OptionsT = TypeVar("OptionsT", bound=Options)


def parse_options(model: type[OptionsT], values: dict[str, Any]) -> OptionsT:
    """`values` (query, form fields or JSON keys) as `model`, or InvalidArgument.

    The field parsers raise InvalidArgument themselves; what pydantic still refuses after
    them is said in its words."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error.get("loc", ())) or "request"
        raise InvalidArgument(f"{where}: {error.get('msg', 'invalid')}") from None
