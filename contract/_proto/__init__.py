"""Generated protobuf and gRPC stubs of the Open Inference Protocol (`inference` package).

Generated from `contract/protos/grpc_predict_v2.proto`; do not edit the `*_pb2*` files by hand.
Regenerate them from the repository root with

    .venv/bin/python contract/generate_protos.py

(grpcio-tools' protoc, the import made package-relative, a private descriptor pool so that
tritonclient's identically named messages can live in the same process). The server
(`service.grpc`) and the SDK (`clients`) both use these modules.
"""
