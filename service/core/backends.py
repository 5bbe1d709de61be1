"""Backends: run a batch of preprocessed images through a stored model.

ONNX Runtime is the default (TensorRT or CUDA provider on a GPU, CPU provider otherwise: on
these CPUs it is 2-5x faster than eager PyTorch). PyTorch is the alternative, in fp16 and
channels-last on a GPU. Both take float32 NCHW numpy and return float32 logits.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from model_store import registry
from model_store.store import StoredModel
from service.core.config import usable_cores


class Backend(Protocol):
    name: str
    device: str

    def run(self, batch: np.ndarray) -> np.ndarray: ...


def cuda_available() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    return device


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, stored: StoredModel, device: str = "auto", threads: int | None = None,
                 tensorrt: bool = False, spinning: bool = False):
        import onnxruntime as ort

        self.device = resolve_device(device)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or usable_cores()
        # ORT's threads busy-wait between parallel sections by default: about 1 ms faster on
        # an idle machine, but in a server they burn the cores that decoding and HTTP need.
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spinning else "0")
        providers: list = ["CPUExecutionProvider"]
        if self.device == "cuda":
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if tensorrt:
                providers.insert(0, "TensorrtExecutionProvider")
        self.session = ort.InferenceSession(str(stored.onnx_path), options, providers=providers)
        self.providers = self.session.get_providers()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": batch})[0]


class TorchBackend:
    name = "pytorch"

    def __init__(self, stored: StoredModel, device: str = "auto", threads: int | None = None):
        import torch
        from safetensors.torch import load_file

        self.device = resolve_device(device)
        if threads:
            torch.set_num_threads(threads)
        model = registry.get(stored.record["name"]).build().eval()
        model.load_state_dict(load_file(str(stored.weights_path)), strict=True)
        self.half = self.device == "cuda"
        if self.half:
            model = model.to("cuda", memory_format=torch.channels_last).half()
        self.model = model
        self.providers = [f"torch-{self.device}{'-fp16-channels-last' if self.half else ''}"]

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(batch)
            if self.half:
                tensor = tensor.to("cuda", non_blocking=True).half().contiguous(
                    memory_format=torch.channels_last)
            return self.model(tensor).float().cpu().numpy()


def create_backend(kind: str, stored: StoredModel, device: str, threads: int | None,
                   spinning: bool = False) -> Backend:
    if kind == "onnxruntime":
        return OnnxRuntimeBackend(stored, device, threads, spinning=spinning)
    if kind == "pytorch":
        return TorchBackend(stored, device, threads)
    raise ValueError(f"unknown backend {kind!r}; use onnxruntime or pytorch")
