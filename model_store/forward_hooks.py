"""One forward pass of a model with forward hooks that live for that pass only: how the model
store inspects what a builder made (its mult-adds, `model_store.profiling`; its final layer,
`model_store.features`) from the model itself rather than from a per-architecture table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

# (module, its inputs, its output) -> None, as `nn.Module.register_forward_hook` calls it
ForwardHook = Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]


def run_with_forward_hooks(model: nn.Module, hooks: Iterable[tuple[nn.Module, ForwardHook]],
                           channels: int, size: int) -> None:
    """`model` in eval mode run once, without gradients, on one zero image of `channels` x
    `size` x `size`, each hook registered on its module for that pass and removed after it
    (also when the pass fails)."""
    handles = []
    try:
        for module, hook in hooks:
            handles.append(module.register_forward_hook(hook))
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, size, size))
    finally:
        for handle in handles:
            handle.remove()
