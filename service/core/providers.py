"""Which ONNX Runtime execution providers a model asks for, with which options, and what it got.

ONNX Runtime says which providers its build offers (`get_available_providers`); that is not
what a machine can run: onnxruntime-gpu lists CUDA and TensorRT on a machine with no GPU, no
driver or no TensorRT libraries, and a session asked for them quietly falls back to the CPU.
So the choice is made in two steps: ask for the configured order among the offered providers
(`plan_providers`), then read back what the session got (`session.get_providers()`) and judge
it (`judge_granted`): `device: cuda` with no GPU provider is an error, `device: auto` a logged
fallback. No torch anywhere: the CUDA libraries of the registry's `nvidia-*` wheels are loaded
by ONNX Runtime's own `preload_dlls`, which `import torch` used to do as a side effect.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from service.core import nvml
from service.core.config import PROVIDER_KEYS, TensorRTConfig
from service.core.errors import DeviceUnavailable

log = logging.getLogger("convzoo.providers")

ORT_PROVIDER = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
GPU_PROVIDERS = frozenset({ORT_PROVIDER["tensorrt"], ORT_PROVIDER["cuda"]})
CPU_PROVIDER = ORT_PROVIDER["cpu"]


@dataclass(frozen=True)
class ExecutionInfo:
    """What a model asked for and what it got: logged at load, shown in GET /models/{name}."""
    device_asked: str
    device: str
    providers_asked: tuple[str, ...]
    providers: tuple[str, ...]
    precision_asked: str
    precision: str
    io_binding: bool
    model_file: str
    fallback: str | None = None  # why it runs on less than it asked for

    def to_dict(self) -> dict[str, Any]:
        info = asdict(self)
        info["providers_asked"] = list(self.providers_asked)
        info["providers"] = list(self.providers)
        return info


def available_providers() -> list[str]:
    """The providers this ONNX Runtime build offers (not necessarily usable here)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def plan_providers(device: str, order: tuple[str, ...] | list[str],
                   available: list[str]) -> list[str]:
    """ONNX Runtime provider names to ask for, best first, CPU always last.

    `device: cpu` asks for the CPU alone; `cuda` and `auto` ask for the configured GPU
    providers that this build offers. `cuda` with none offered is refused here, before any
    session is made (a CPU-only onnxruntime build, or `providers: [cpu]`)."""
    unknown = [key for key in order if key not in ORT_PROVIDER]
    if unknown:
        raise ValueError(f"unknown providers {unknown}; use {', '.join(PROVIDER_KEYS)}")
    if device == "cpu":
        return [CPU_PROVIDER]
    planned = [ORT_PROVIDER[key] for key in order
               if ORT_PROVIDER[key] in GPU_PROVIDERS and ORT_PROVIDER[key] in available]
    if device == "cuda" and not planned:
        gpu_keys = [key for key in order if ORT_PROVIDER[key] in GPU_PROVIDERS]
        raise DeviceUnavailable(
            "device: cuda is configured, but " + (
                f"this onnxruntime build offers no GPU provider (it offers {available}); "
                "install onnxruntime-gpu" if gpu_keys else
                f"the configured providers {list(order)} include no GPU provider"))
    return [*planned, CPU_PROVIDER]


def judge_granted(device: str, asked: list[str], granted: list[str],
                  why: str | None = None) -> str | None:
    """Why the session runs on less than it asked for (None: it got its first choice).

    Raises `DeviceUnavailable` when `device: cuda` got no GPU provider at all."""
    if granted and granted[0] == asked[0]:
        return None
    missing = [p for p in asked if p not in granted]
    reason = (f"asked for {asked}, got {granted}: {', '.join(missing)} not usable here: "
              f"{why or 'ONNX Runtime could not create them (its log says why)'}")
    if not GPU_PROVIDERS.intersection(granted) and device == "cuda":
        raise DeviceUnavailable(f"device: cuda is configured, but {reason}")
    return reason


@functools.cache
def usable_providers(asked: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
    """Those of `asked` that ONNX Runtime can create here, and why not all, found once per
    process: what a real session would get, known before choosing its model file (no fp16
    variant made, no TensorRT profile planned, for a GPU that is not there).

    Where NVML says there is no driver the GPU providers are not tried at all; elsewhere a
    one-node model is opened with them."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if not GPU_PROVIDERS.intersection(asked):
        return asked, None
    missing = nvml.driver_missing()
    if missing:
        return (CPU_PROVIDER,), missing
    preload_cuda_libraries()
    tensor = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [tensor],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    # IR 8 goes with opset 17 (the stored models' opset); onnx's default IR may be newer
    # than this ONNX Runtime reads.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=list(asked))
    except Exception as exc:  # ONNX Runtime retries without a failing provider; even that
        return (CPU_PROVIDER,), f"no provider of {list(asked)} could be created: {exc}"
    granted = tuple(session.get_providers())
    return granted, None if granted == asked else (
        "ONNX Runtime could not create them (their CUDA or TensorRT libraries are missing, "
        "or the GPU is unsupported: its log says which)")


def device_of(granted: list[str] | tuple[str, ...]) -> str:
    return "cuda" if GPU_PROVIDERS.intersection(granted) else "cpu"


@functools.cache
def preload_cuda_libraries() -> str:
    """Load CUDA and cuDNN from the registry's nvidia-* wheels, once, through ONNX Runtime.

    Without it the CUDA provider finds its libraries only if torch was imported first (torch
    loads the same wheels' libraries) or they are on LD_LIBRARY_PATH. ONNX Runtime prints
    what failed; that goes to our log instead of stdout. Returns that text."""
    import onnxruntime as ort

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.suppress(Exception):
        ort.preload_dlls()
    text = printed.getvalue().strip()
    if text:
        log.info("onnxruntime.preload_dlls: %s", text.replace("\n", "; "))
    return text


def cuda_options(device_id: int = 0) -> dict[str, Any]:
    """CUDA provider options: copies on the stream the model runs on (ONNX Runtime's default,
    spelled out: a bound input's copy is then ordered before the run), and cuDNN's heuristic
    algorithm search (EXHAUSTIVE, the default, searches again for every new batch shape, and
    the dynamic batcher makes many)."""
    return {"device_id": device_id, "do_copy_in_default_stream": True,
            "cudnn_conv_algo_search": "HEURISTIC"}


def tensorrt_options(settings: TensorRTConfig, model_folder: Path, fp16: bool,
                     input_name: str, item_shape: tuple[int, ...], max_batch: int,
                     device_id: int = 0) -> dict[str, Any]:
    """TensorRT provider options: engine (and timing) cache in the model store's folder, fp16
    when asked, and one dynamic-batch profile from 1 to the model's max batch size, optimised
    for the max batch (what a saturated batcher runs). Without an explicit profile TensorRT
    builds for the first shape it meets and rebuilds on every larger batch."""
    cache = tensorrt_cache_folder(settings, model_folder)

    def shape(batch: int) -> str:
        return f"{input_name}:" + "x".join(str(d) for d in (batch, *item_shape))

    options: dict[str, Any] = {
        "device_id": device_id,
        "trt_fp16_enable": fp16,
        "trt_engine_cache_enable": settings.engine_cache,
        "trt_timing_cache_enable": settings.timing_cache,
        "trt_profile_min_shapes": shape(1),
        "trt_profile_opt_shapes": shape(max_batch),
        "trt_profile_max_shapes": shape(max_batch),
    }
    if settings.engine_cache:
        options["trt_engine_cache_path"] = str(cache)
    if settings.timing_cache:
        options["trt_timing_cache_path"] = str(cache)
    return options


def tensorrt_cache_folder(settings: TensorRTConfig, model_folder: Path) -> Path:
    """`tensorrt.cache_dir`, else `tensorrt/` in the model's folder of the model store: the
    engines belong to that model file, and go when the model is deleted."""
    return Path(settings.cache_dir) if settings.cache_dir else model_folder / "tensorrt"
