"""Parameters and multiply-adds, computed from the model itself.

Mult-adds follow the MobileNet paper's convention: one per multiply-accumulate in
convolutions and fully-connected layers (batch norm, activations and pooling are not
counted). They are counted with forward hooks on one real forward pass, so whatever the
builder produces is what gets measured.
"""

from __future__ import annotations

import torch
from torch import nn

from model_store.forward_hooks import run_with_forward_hooks
from model_store.specs import ModelSpec


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_mult_adds(model: nn.Module, channels: int, size: int) -> int:
    total = 0

    def on_conv(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output[0].numel() * (module.in_channels // module.groups) * kh * kw

    def on_linear(module: nn.Linear, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        rows = output[0].numel() // module.out_features
        total += module.in_features * module.out_features * rows

    hooks = [(module, on_conv) for module in model.modules() if isinstance(module, nn.Conv2d)]
    hooks += [(module, on_linear) for module in model.modules() if isinstance(module, nn.Linear)]
    run_with_forward_hooks(model, hooks, channels, size)
    return total


def profile(spec: ModelSpec, model: nn.Module | None = None) -> dict[str, float]:
    """{"params_m", "mult_adds_m"} of the variant at its own input resolution."""
    model = model if model is not None else spec.build()
    return {
        "params_m": count_params(model) / 1e6,
        "mult_adds_m": count_mult_adds(model, spec.input.channels, spec.input.size) / 1e6,
    }
