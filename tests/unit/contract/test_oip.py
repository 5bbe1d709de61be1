"""OIP parameters both sides write and read (contract.oip)."""

from __future__ import annotations

from contract._proto import grpc_predict_v2_pb2 as pb
from contract.oip import (
    detail_parameters,
    details_from_parameters,
    parameters_from_proto,
    set_parameter,
)


def test_python_values_travel_as_typed_parameters():
    request = pb.ModelInferRequest()
    for key, value in {"n": 3, "flag": True, "ratio": 0.5, "name": "x",
                       "models": ["a", "b"]}.items():
        set_parameter(request.parameters, key, value)
    assert request.parameters["flag"].WhichOneof("parameter_choice") == "bool_param"
    assert parameters_from_proto(request.parameters) == {
        "n": 3, "flag": True, "ratio": 0.5, "name": "x", "models": "a,b"}


def test_list_and_object_details_travel_as_json_and_come_back():
    details = {"crops": 10, "ensemble": None, "models": ["a", "b"],
               "selection": {"chosen": "a", "candidates": [{"name": "a"}]}}
    parameters = detail_parameters(details)
    assert "ensemble" not in parameters and parameters["crops"] == 10
    assert isinstance(parameters["selection"], str)
    assert details_from_parameters(parameters) == {k: v for k, v in details.items()
                                                   if v is not None}
