"""Backends: run a batch of preprocessed images through a stored model.

ONNX Runtime is the default: TensorRT, CUDA or CPU provider as `service.core.providers`
chooses from what ONNX Runtime itself offers and grants (no torch), the fp16 variant on the
GPU providers when asked, and I/O binding (buffers bound once per batch size). On these CPUs
it is 2-5x faster than eager PyTorch. PyTorch is the alternative, in fp16 and channels-last
on a GPU. Both take float32 NCHW numpy; `run` returns float32 logits, `run_outputs` the
logits and the features (`model_store.outputs`) of the same single run, which the batcher
uses so that classify and embed share batches.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from model_store.outputs import FEATURES, LOGITS
from service.core import nvml
from service.core.config import PROVIDER_KEYS, ServingConfig, TensorRTConfig, usable_cores
from service.core.outputs import ModelOutputs
from service.core.providers import (
    ExecutionInfo,
    available_providers,
    cuda_options,
    device_of,
    judge_granted,
    plan_providers,
    tensorrt_cache_folder,
    tensorrt_options,
    usable_providers,
)

if TYPE_CHECKING:
    from model_store.repository import StoredModel

log = logging.getLogger("convzoo.backends")

STORED_INPUT_NAME = "input"  # every stored model.onnx's input (model_store.store.export_onnx)


class Backend(Protocol):
    name: str
    device: str
    providers: list[str]
    execution: ExecutionInfo

    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def run_outputs(self, batch: np.ndarray) -> ModelOutputs: ...


def output_positions(session: Any) -> tuple[int, int | None]:
    """Where a session's logits and features are among its outputs (features None for a
    graph stored before that output existed). Logits are output 0 in every stored graph."""
    names = [output.name for output in session.get_outputs()]
    logits = names.index(LOGITS) if LOGITS in names else 0
    return logits, names.index(FEATURES) if FEATURES in names else None


class IoBoundRunner:
    """Runs a session through I/O binding: per batch size, an input and an output buffer on
    the session's device, bound once (per thread: a model's instances run batches at the same
    time). A batch is then one host-to-device copy into the bound input, the run, and one copy
    of the logits back; nothing is allocated per run. On the CPU the input is bound where the
    batch already lies (no copy at all)."""

    def __init__(self, session: Any, device: str, device_id: int = 0):
        self.session = session
        self.device = device
        self.device_id = device_id
        self.input_name = session.get_inputs()[0].name
        outputs = session.get_outputs()
        logits, features = output_positions(session)
        # (name, width) of each output bound: logits, then the features where the graph has them
        self.outputs = [(outputs[logits].name, int(outputs[logits].shape[1]))]
        if features is not None:
            self.outputs.append((outputs[features].name, int(outputs[features].shape[1])))
        self._local = threading.local()

    def _bound(self, shape: tuple[int, ...]) -> tuple[Any, Any, list[Any]]:
        import onnxruntime as ort

        buffers = getattr(self._local, "buffers", None)
        if buffers is None:
            buffers = self._local.buffers = {}
        if shape not in buffers:
            binding = self.session.io_binding()
            input_value = None
            if self.device == "cuda":
                input_value = ort.OrtValue.ortvalue_from_shape_and_type(
                    shape, np.float32, "cuda", self.device_id)
                binding.bind_ortvalue_input(self.input_name, input_value)
            output_values = []
            for name, width in self.outputs:
                value = ort.OrtValue.ortvalue_from_shape_and_type(
                    (shape[0], width), np.float32, self.device, self.device_id)
                binding.bind_ortvalue_output(name, value)
                output_values.append(value)
            buffers[shape] = (binding, input_value, output_values)
        return buffers[shape]

    def run(self, batch: np.ndarray) -> ModelOutputs:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        binding, input_value, output_values = self._bound(batch.shape)
        if input_value is None:
            binding.bind_cpu_input(self.input_name, batch)
        else:
            input_value.update_inplace(batch)
        self.session.run_with_iobinding(binding)
        if input_value is not None:
            binding.synchronize_outputs()  # the GPU's work is done before the copy back
        # On the CPU numpy() is a view of the bound output, which the next batch of this
        # size overwrites while callers may still read this one: hand out a copy.
        values = [value.numpy().copy() for value in output_values]
        return ModelOutputs(values[0], values[1] if len(values) > 1 else None)


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, stored: StoredModel, device: str = "auto", threads: int | None = None,
                 spinning: bool = False, *, providers: tuple[str, ...] = PROVIDER_KEYS,
                 precision: str = "fp32", io_binding: bool = True,
                 tensorrt: TensorRTConfig | None = None, max_batch_size: int = 16):
        import onnxruntime as ort

        asked = plan_providers(device, providers, available_providers())
        # Only what can be created here goes into the real session: the fp16 variant and the
        # TensorRT profile are for a GPU that is there.
        usable, why = usable_providers(tuple(asked))
        fp16 = precision == "fp16" and device_of(usable) == "cuda"
        model_path = self._model_file(stored, fp16)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or usable_cores()
        # ORT's threads busy-wait between parallel sections by default: about 1 ms faster on
        # an idle machine, but in a server they burn the cores that decoding and HTTP need.
        options.add_session_config_entry("session.intra_op.allow_spinning",
                                         "1" if spinning else "0")
        session = ort.InferenceSession(str(model_path), options, providers=[
            self._with_options(name, stored, fp16, tensorrt, max_batch_size) for name in usable])
        granted = session.get_providers()
        fallback = judge_granted(device, asked, granted, why)
        if precision == "fp16" and not fp16:
            fallback = "; ".join(filter(None, [
                fallback, "precision fp16 runs on the CUDA and TensorRT providers only: "
                          "running fp32 on the CPU"]))
        self.session = session
        self.providers = granted
        self.device = device_of(granted)
        self.execution = ExecutionInfo(
            device_asked=device, device=self.device, providers_asked=tuple(asked),
            providers=tuple(granted), precision_asked=precision,
            precision="fp16" if fp16 else "fp32",
            io_binding=io_binding, model_file=model_path.name, fallback=fallback)
        if fallback:
            # Expected on a machine with no GPU at all; a GPU that is there and unused is not.
            level = logging.INFO if nvml.driver_missing() else logging.WARNING
            log.log(level, "%s: %s", stored.record["name"], fallback)
        self.input_name = session.get_inputs()[0].name
        self._positions = output_positions(session)
        self._bound = IoBoundRunner(session, self.device) if io_binding else None

    @staticmethod
    def _model_file(stored: StoredModel, fp16: bool) -> Path:
        if not fp16:
            return stored.onnx_path
        from model_store.fp16 import fp16_variant

        return fp16_variant(stored)

    @staticmethod
    def _with_options(provider: str, stored: StoredModel, fp16: bool,
                      tensorrt: TensorRTConfig | None, max_batch_size: int
                      ) -> str | tuple[str, dict[str, Any]]:
        if provider == "CUDAExecutionProvider":
            return provider, cuda_options()
        if provider == "TensorrtExecutionProvider":
            settings = tensorrt or TensorRTConfig()
            if settings.engine_cache or settings.timing_cache:
                tensorrt_cache_folder(settings, stored.path).mkdir(parents=True, exist_ok=True)
            return provider, tensorrt_options(settings, stored.path, fp16, STORED_INPUT_NAME,
                                              _item_shape(stored), max_batch_size)
        return provider

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_outputs(batch).logits

    def run_outputs(self, batch: np.ndarray) -> ModelOutputs:
        if self._bound is not None:
            return self._bound.run(batch)
        values = self.session.run(None, {self.input_name: batch})
        logits, features = self._positions
        return ModelOutputs(values[logits], None if features is None else values[features])


def _item_shape(stored: StoredModel) -> tuple[int, int, int]:
    """(C, H, W) of one input image, from the import record (the batch axis is dynamic)."""
    spec = stored.record["input"]
    return (1 if spec.get("grayscale") else 3, int(spec["size"]), int(spec["size"]))


class TorchBackend:
    name = "pytorch"

    def __init__(self, stored: StoredModel, device: str = "auto", threads: int | None = None):
        import torch
        from safetensors.torch import load_file

        from model_store import registry

        self.device = device
        if device == "auto":  # this backend is torch: asking torch is right here
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if threads:
            torch.set_num_threads(threads)
        from model_store.features import with_features

        spec = registry.get(stored.record["name"])
        model = spec.build().eval()
        model.load_state_dict(load_file(str(stored.weights_path)), strict=True)
        model = with_features(model, spec)  # (logits, features), as the stored graphs give
        self.half = self.device == "cuda"
        if self.half:
            model = model.to("cuda", memory_format=torch.channels_last).half()
        self.model = model
        self.providers = [f"torch-{self.device}{'-fp16-channels-last' if self.half else ''}"]
        self.execution = ExecutionInfo(
            device_asked=device, device=self.device, providers_asked=tuple(self.providers),
            providers=tuple(self.providers), precision_asked="fp16" if self.half else "fp32",
            precision="fp16" if self.half else "fp32", io_binding=False,
            model_file=stored.weights_path.name)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_outputs(batch).logits

    def run_outputs(self, batch: np.ndarray) -> ModelOutputs:
        import torch

        with torch.inference_mode():
            tensor = torch.from_numpy(batch)
            if self.half:
                tensor = tensor.to("cuda", non_blocking=True).half().contiguous(
                    memory_format=torch.channels_last)
            logits, features = self.model(tensor)
            return ModelOutputs(logits.float().cpu().numpy(), features.float().cpu().numpy())


def create_backend(kind: str, stored: StoredModel, device: str, threads: int | None,
                   spinning: bool = False) -> Backend:
    if kind == "onnxruntime":
        return OnnxRuntimeBackend(stored, device, threads, spinning)
    if kind == "pytorch":
        return TorchBackend(stored, device, threads)
    raise ValueError(f"unknown backend {kind!r}; use onnxruntime or pytorch")


def backend_for(config: ServingConfig, stored: StoredModel, model: str,
                threads: int | None = None) -> Backend:
    """The backend `config` describes for one model: its threads (`threads`, when an instance
    layout is being chosen), providers, precision, I/O binding, TensorRT cache and batch
    profile (up to the model's max batch size)."""
    threads = threads or config.threads_for(model)
    if config.backend != "onnxruntime":
        return create_backend(config.backend, stored, config.device, threads,
                              config.intra_op_spinning)
    backend = OnnxRuntimeBackend(
        stored, config.device, threads, config.intra_op_spinning,
        providers=config.providers, precision=config.precision, io_binding=config.io_binding,
        tensorrt=config.tensorrt, max_batch_size=config.batching_for(model).max_batch_size)
    log.info("%s runs on %s", model, backend.execution.to_dict())
    return backend
