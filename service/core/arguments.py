"""Client arguments, parsed once for every protocol: JSON bodies (REST and OIP REST) and the
options of REST (query strings, form fields, JSON), OIP REST and OIP gRPC (parameters) into
the typed values of the data plane's requests (`service.core.requests`). Each kind of value
has one parser here, whichever adapter calls it, so a wrong value gets the same message over
every protocol; what a value means (top_k against the configured maximum, a family, an
ensemble's members) is the data plane's to check.

Python's json module is more lenient than JSON, and each leniency reached code that assumed
otherwise and answered 500 (issue 14): it accepts NaN and Infinity, turns 1e400 into inf
(`int(inf)` raises OverflowError), parses integers of any length (past 4,300 digits it raises
ValueError, not JSONDecodeError), recurses in C once per nesting level (RecursionError at about
1,000), and keeps `\\ud800` as a lone surrogate, which no response can encode. `parse_json`
refuses all of these with InvalidArgument, and bounds what a body may expand into: a 63 MB
body of `[[],[],...]` is 21 million lists, 6 s of parsing with the GIL held and gigabytes of
memory, so arrays, objects, strings and numbers are counted before parsing.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from service.core.errors import InvalidArgument

# Our documents nest a handful of levels (an OIP PIXELS tensor [n, 3, h, w] as nested lists
# inside inputs[i] inside the body: 7); numpy takes at most 64 dimensions.
JSON_MAX_DEPTH = 32
# Upper bounds counted over the raw body, strings included, so that they cost a few C scans
# and no parsing. Our largest legitimate documents: 64 base64 images (a few strings), or OIP
# tensors as JSON numbers, ~150,000 a 224 x 224 image; larger tensors belong in Triton's binary
# data extension, which the OIP REST routes accept.
JSON_MAX_CONTAINERS = 100_000
JSON_MAX_STRINGS = 100_000
JSON_MAX_VALUES = 4_000_000
# JSON integers beyond the widest OIP datatypes (UINT64, INT64) are refused while parsing, so
# that every number the service sees converts to a float and fits a tensor's range check.
INTEGER_DIGITS = 20
INTEGER_LIMIT = 2**64
# A `\uD800`-`\uDFFF` escape: only these make lone surrogates (UTF-8 input cannot hold them).
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


def parse_json(body: bytes, what: str, max_depth: int = JSON_MAX_DEPTH) -> Any:
    """`body` parsed as JSON within the limits above, or InvalidArgument naming `what`."""
    _check_counts(body, what)
    try:
        value = json.loads(body, parse_constant=_refuse_constant(what),
                           parse_float=_finite_float(what), parse_int=_bounded_int(what))
    except RecursionError:
        raise InvalidArgument(f"{what} nests arrays or objects deeper than {max_depth} "
                              "levels") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    # Walking the document costs a few ms for a large tensor: only when it can be too deep or
    # hold a surrogate.
    openers = body.count(b"[") + body.count(b"{")
    surrogates = _SURROGATE_ESCAPE.search(body) is not None
    if openers > max_depth or surrogates:
        _check_document(value, what, max_depth, surrogates)
    return value


def parse_json_object(body: bytes, what: str, max_depth: int = JSON_MAX_DEPTH
                      ) -> dict[str, Any]:
    """As `parse_json`, for a body that must be a JSON object."""
    value = parse_json(body, what, max_depth)
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value


def _check_counts(body: bytes, what: str) -> None:
    containers = body.count(b"[") + body.count(b"{")
    if containers > JSON_MAX_CONTAINERS:
        raise InvalidArgument(f"{what} has more than {JSON_MAX_CONTAINERS} arrays and objects")
    if body.count(b'"') > 2 * JSON_MAX_STRINGS:
        raise InvalidArgument(f"{what} has more than {JSON_MAX_STRINGS} strings")
    if body.count(b",") >= JSON_MAX_VALUES:
        raise InvalidArgument(f"{what} has more than {JSON_MAX_VALUES} values; send large "
                              "tensors as binary data (binary_data_size)")


def _refuse_constant(what: str):
    def refuse(name: str) -> None:
        raise InvalidArgument(f"{what}: {name} is not a JSON number; numbers must be finite")
    return refuse


def _finite_float(what: str):
    def parse(text: str, _float=float) -> float:
        number = _float(text)
        if number - number:  # nan for inf: the cheapest finite test (+30% on a float tensor)
            raise InvalidArgument(f"{what}: the number {text[:40]} is out of range")
        return number
    return parse


def _bounded_int(what: str):
    def parse(text: str) -> int:
        # The length first: converting 4,300 digits or more raises ValueError, and long
        # conversions are quadratic.
        number = int(text) if len(text) <= INTEGER_DIGITS + 1 else INTEGER_LIMIT
        if not -INTEGER_LIMIT < number < INTEGER_LIMIT:
            raise InvalidArgument(f"{what}: the integer {text[:40]}"
                                  f"{'...' if len(text) > 40 else ''} is out of range")
        return number
    return parse


def _check_document(value: Any, what: str, max_depth: int, surrogates: bool) -> None:
    """Depth and string checks without recursion: a stack of (container, depth)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
            if surrogates:
                children.extend(item)  # keys
        elif isinstance(item, list):
            children = item
        else:
            if surrogates and isinstance(item, str):
                _check_text(item, what)
            continue
        if depth > max_depth:
            raise InvalidArgument(f"{what} nests arrays or objects deeper than {max_depth} "
                                  "levels")
        stack.extend((child, depth + 1) for child in children
                     if surrogates or isinstance(child, (list, dict)))


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidArgument(f"{what}: a string holds a lone UTF-16 surrogate "
                              f"({text[exc.start]!a}); strings must be valid Unicode") from None


def text_argument(value: Any, name: str) -> str:
    """A string option that a response can echo: a str holding valid Unicode."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string, got {type(value).__name__}")
    _check_text(value, name)
    return value


def finite_number(value: Any, name: str) -> float:
    """A number option (JSON number, or a numeric string from a form, query or OIP
    parameter) as a finite float."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgument(f"{name} must be a number, got {_shown(value)}") from None
    if not math.isfinite(number):
        raise InvalidArgument(f"{name} must be a finite number, got {_shown(value)}")
    return number


def integer_argument(value: Any, name: str, minimum: int | None = None,
                     maximum: int | None = None) -> int:
    """An integer option: an int, an integral float (5.0) or a string of digits, within
    [minimum, maximum] where given. Booleans are not integers here."""
    if isinstance(value, bool):
        raise InvalidArgument(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise InvalidArgument(f"{name} must be an integer, got {_shown(value)}")
        number = int(value)
    else:
        text = value.strip() if isinstance(value, str) else None
        if isinstance(value, int):
            number = value
        elif text is not None and len(text.lstrip("+-")) <= INTEGER_DIGITS:
            try:
                number = int(text)
            except ValueError:
                raise InvalidArgument(f"{name} must be an integer, got {_shown(value)}") from None
        else:
            raise InvalidArgument(f"{name} must be an integer, got {_shown(value)}")
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        low = "" if minimum is None else f" from {minimum}"
        high = "" if maximum is None else f" to {maximum}"
        raise InvalidArgument(f"{name} must be an integer{low}{high}, got {_shown(number)}")
    return number


def _shown(value: Any) -> str:
    """A client's value, shown in a message at a bounded length."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}..."


def optional_number(value: Any, name: str) -> float | None:
    """A number option that may be absent (None or an empty form field)."""
    if value is None or value == "":
        return None
    return finite_number(value, name)


def flag_argument(value: Any, name: str) -> bool:
    """A boolean option: a JSON boolean, or true/false/1/0/yes/no/on/off from a form, query
    or OIP string parameter; absent is false."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off", ""):
        return False
    raise InvalidArgument(f"{name} must be true or false, got {_shown(value)}")


def timeout_argument(value: Any, name: str = "timeout_s") -> float | None:
    """A client's timeout in seconds (absent: none), positive and finite."""
    if value is None:
        return None
    seconds = finite_number(value, name)
    if seconds <= 0:
        raise InvalidArgument(f"{name} must be positive")
    return seconds


def optional_text(value: Any, name: str) -> str | None:
    """A string option that may be absent."""
    return None if value is None else text_argument(value, name)


def model_argument(value: Any) -> str | None:
    """A model name (absent: the default model)."""
    if value is not None and not isinstance(value, str):
        raise InvalidArgument("model must be a string")
    return value or None


def name_list(value: Any, name: str) -> tuple[str, ...] | None:
    """A list of names: a JSON list of strings, or one string of names separated by commas
    (a form field, a query string, an OIP parameter)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise InvalidArgument(f"{name} must be a list, got {type(value).__name__}")
    if not all(isinstance(item, str) for item in value):
        raise InvalidArgument(f"{name} must be a list of model names, got {_shown(value)}")
    for item in value:
        _check_text(item, name)
    return tuple(value)


def number_list(value: Any, name: str) -> tuple[float, ...] | None:
    """A list of finite numbers: a JSON list, or one string of numbers separated by commas."""
    if value is None:
        return None
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise InvalidArgument(f"{name} must be a list, got {type(value).__name__}")
    if any(isinstance(item, bool) for item in value):
        raise InvalidArgument(f"{name} must be finite numbers, got {_shown(value)}")
    try:
        numbers = tuple(float(item) for item in value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidArgument(f"{name} must be numbers, got {_shown(value)}") from None
    if not all(map(math.isfinite, numbers)):
        raise InvalidArgument(f"{name} must be finite numbers, got {_shown(value)}")
    return numbers
