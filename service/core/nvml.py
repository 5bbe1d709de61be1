"""GPU readings through NVML (nvidia-ml-py's `pynvml`): which GPUs there are, their memory in
use and utilisation. Used by the /metrics gauges and by `make bench-gpu`'s sampler. Where no
NVIDIA driver is, there are no readings, and nothing fails. No torch: the serving path must
not import it to look at a GPU.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("convzoo.nvml")


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    memory_used_bytes: int
    memory_total_bytes: int
    utilisation: float  # 0..1, the share of the last sample period a kernel ran


@functools.cache
def _nvml() -> Any | None:
    """pynvml, initialised once; None where the library or the driver is missing."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception as exc:  # no package, no libnvidia-ml, no driver: no GPU to read
        log.debug("NVML unavailable: %s", exc)
        return None


def driver_missing() -> str | None:
    """Why there is certainly no usable NVIDIA GPU here (NVML has no driver or no device), or
    None: there may be one (NVML sees a GPU, or nvidia-ml-py is not installed to ask)."""
    try:
        import pynvml
    except ImportError:
        return None
    nvml = _nvml()
    if nvml is None:
        try:
            pynvml.nvmlInit()
        except Exception as exc:
            return f"no NVIDIA driver (NVML: {exc})"
        return None
    if nvml.nvmlDeviceGetCount() == 0:
        return "the NVIDIA driver sees no GPU"
    return None


def read_gpus() -> list[GpuReading]:
    """One reading per GPU the driver shows; [] without NVML."""
    nvml = _nvml()
    if nvml is None:
        return []
    readings = []
    for index in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        name = nvml.nvmlDeviceGetName(handle)
        readings.append(GpuReading(
            index=index, name=name.decode() if isinstance(name, bytes) else str(name),
            memory_used_bytes=int(memory.used), memory_total_bytes=int(memory.total),
            utilisation=nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100.0))
    return readings
