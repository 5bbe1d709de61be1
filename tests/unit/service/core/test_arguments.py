"""The shared argument parser: every input that reached a 500 through Python's lenient json
module (issue 14) is an InvalidArgument here, in bounded time; ordinary documents parse as
json.loads parses them."""

from __future__ import annotations

import json
import time

import pytest

from service.core import arguments
from service.core.arguments import (
    finite_number,
    integer_argument,
    optional_number,
    parse_json,
    parse_json_object,
    text_argument,
)
from service.core.errors import InvalidArgument


@pytest.mark.parametrize("body", [
    b'{"image": "aGVsbG8=", "top_k": 5, "crops": 10.0, "models": ["a", "b"]}',
    b'{"inputs": [{"name": "PIXELS", "datatype": "FP32", "shape": [1, 3, 2, 2],'
    b' "data": [[[[0.5, -1e-3], [1e30, 2]], [[0, 0], [0, 0]], [[1, 1], [1, 1]]]]}]}',
    b'{"emoji": "\\ud83d\\ude00", "escaped": "a\\\\ud800b", "big": 18446744073709551615}',
    b'{"deep": ' + b"[" * 31 + b"]" * 31 + b"}",  # 32 levels, the object's included
])
def test_ordinary_documents_parse_as_json_loads_does(body):
    assert parse_json(body, "body") == json.loads(body)


@pytest.mark.parametrize("body, message", [
    (b'{"top_k": 1e400}', "out of range"),
    (b'{"top_k": -1e400}', "out of range"),
    (b'{"top_k": Infinity}', "Infinity is not a JSON number"),
    (b'{"top_k": -Infinity}', "-Infinity is not a JSON number"),
    (b'{"top_k": NaN}', "NaN is not a JSON number"),
    (b'{"value": ' + b"1" * 30 + b"}", "out of range"),
    (b'{"value": 18446744073709551616}', "out of range"),
    (b'{"value": -' + b"9" * 5000 + b"}", "out of range"),  # json.loads: ValueError
    (b'{"model": "\\ud800"}', "lone UTF-16 surrogate"),
    (b'{"\\udfff": 1}', "lone UTF-16 surrogate"),
    (b'["\\ud83d"]', "lone UTF-16 surrogate"),
    (b'{"deep": ' + b"[" * 32 + b"]" * 32 + b"}", "deeper than 32"),
    (b"[" * 100_000 + b"]" * 100_000, "deeper than 32"),  # json.loads: RecursionError
    (b"[" * 900 + b"]" * 900, "deeper than 32"),  # under json's recursion limit
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{", "not valid JSON"),
])
def test_what_json_loads_lets_through_is_a_400(body, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_json(body, "body")


@pytest.mark.parametrize("body, message", [
    (b"[" + b"[]," * 100_000 + b"[]]", "arrays and objects"),
    (b"[" + b'"",' * 100_000 + b'""]', "strings"),
    (b"[" + b"0," * arguments.JSON_MAX_VALUES + b"0]", "binary_data_size"),
])
def test_documents_that_expand_past_the_bounds_are_refused_before_parsing(body, message):
    started = time.perf_counter()
    with pytest.raises(InvalidArgument, match=message):
        parse_json(body, "body")
    # A few C scans of the body, no parsing (json.loads of 21M lists took 6 s).
    assert time.perf_counter() - started < 1.0


def test_a_deep_document_is_refused_without_recursion():
    # 32 MiB of brackets: json.loads would recurse; the parser answers at once.
    body = b"[" * (16 << 20) + b"]" * (16 << 20)
    with pytest.raises(InvalidArgument):
        parse_json(body, "body")


def test_an_object_is_required_where_asked():
    with pytest.raises(InvalidArgument, match="must be a JSON object"):
        parse_json_object(b"[1]", "body")
    assert parse_json_object(b'{"a": 1}', "body") == {"a": 1}


@pytest.mark.parametrize("value, expected", [
    (5, 5), (5.0, 5), ("5", 5), (" 7 ", 7), (-3, -3), (10**30, 10**30)])
def test_integer_arguments(value, expected):
    assert integer_argument(value, "top_k") == expected


@pytest.mark.parametrize("value", [
    float("inf"), float("-inf"), float("nan"), 2.5, True, None, "five", "1e400", "inf",
    "9" * 5000, [1], {"a": 1}])
def test_non_integers_are_refused_by_name(value):
    with pytest.raises(InvalidArgument, match="top_k must be an integer"):
        integer_argument(value, "top_k")


def test_integer_bounds():
    assert integer_argument(3, "crops", 1, 144) == 3
    with pytest.raises(InvalidArgument, match="crops must be an integer from 1 to 144, got 0"):
        integer_argument(0, "crops", 1, 144)


@pytest.mark.parametrize("value, expected", [(1, 1.0), ("2.5", 2.5), (1e300, 1e300)])
def test_finite_numbers(value, expected):
    assert finite_number(value, "timeout_s") == expected


@pytest.mark.parametrize("value", [
    float("inf"), float("nan"), "inf", "-Infinity", "nan", "1e400", 10**400, True, "x", None])
def test_non_finite_numbers_are_refused_by_name(value):
    with pytest.raises(InvalidArgument, match="timeout_s must be a"):
        finite_number(value, "timeout_s")


@pytest.mark.parametrize("value, expected", [(None, None), ("", None), ("40", 40.0), (2.5, 2.5)])
def test_optional_numbers(value, expected):
    assert optional_number(value, "latency_budget_ms") == expected


@pytest.mark.parametrize("value, message", [
    (float("nan"), "must be a finite number"), ("inf", "must be a finite number"),
    (True, "must be a number"), ("x", "must be a number")])
def test_optional_numbers_are_refused_as_finite_number_refuses_them(value, message):
    with pytest.raises(InvalidArgument, match=f"latency_budget_ms {message}"):
        optional_number(value, "latency_budget_ms")


def test_text_arguments():
    assert text_argument("lenet5", "model") == "lenet5"
    with pytest.raises(InvalidArgument, match="model must be a string"):
        text_argument(5, "model")
    with pytest.raises(InvalidArgument, match="surrogate"):
        text_argument("\ud800", "model")


def test_messages_show_client_values_at_a_bounded_length():
    with pytest.raises(InvalidArgument) as caught:
        integer_argument("x" * 100_000, "top_k")
    assert len(caught.value.message) < 200
