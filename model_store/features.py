"""The features output: what a classifier's final layer sees, found in the model itself.

The features of an image are the input of the network's final classifier layer: the
penultimate-layer activations after global pooling (ResNet's 2048 pooled channels, VGG's
fc7, LeNet-5's F6). That layer is found generically, by running the model once with forward
hooks on every layer that has weights and taking the last one to produce `num_classes`
outputs, so no per-architecture table can fall out of date. A final layer that sees a
feature map rather than a vector (the 1x1-convolution classifiers of SqueezeNet and
MobileNet v1) gets its input globally averaged: SqueezeNet's 13x13x512 map becomes 512
features, MobileNet v1's already pooled 1x1 map its 1024 (alpha 1) channels.

`with_features` wraps a classifier so that it returns `(logits, features)`, which
`model_store.store.export_onnx` exports as the graph's two outputs (`model_store.outputs`).
A forward pre-hook on the final layer records its input; in the traced graph that input is
simply a second output, computed once with the logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model_store.forward_hooks import run_with_forward_hooks
from model_store.specs import ModelSpec


@dataclass(frozen=True)
class FinalLayer:
    """The classifier's final layer: its module path and the width of its (pooled) input."""

    path: str  # e.g. "fc", "classifier.6", "classifier", "conv_preds"
    dim: int


class NoFinalLayer(RuntimeError):
    pass


def find_final_layer(model: nn.Module, channels: int, size: int, num_classes: int
                     ) -> FinalLayer:
    """The last layer with weights that produces `num_classes` outputs in one forward pass."""
    calls: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []

    def recorder(path: str):
        def record(_module, inputs, output) -> None:
            calls.append((path, tuple(inputs[0].shape), tuple(output.shape)))
        return record

    run_with_forward_hooks(model, [(module, recorder(path))
                                   for path, module in model.named_modules()
                                   if isinstance(module, (nn.Linear, nn.Conv2d))],
                           channels, size)
    for path, input_shape, output_shape in reversed(calls):
        if len(output_shape) >= 2 and output_shape[1] == num_classes:
            return FinalLayer(path=path, dim=input_shape[1])
    raise NoFinalLayer(f"no layer of {type(model).__name__} produces {num_classes} outputs")


def pooled(features: torch.Tensor) -> torch.Tensor:
    """[N, C] as it is; a feature map [N, C, H, W] globally averaged to [N, C]."""
    return features.mean(dim=(2, 3)) if features.dim() == 4 else features.flatten(1)


class FeatureTap:
    """Records the input of one module of a model in each forward pass (a pre-hook).

    `reset()` before the pass, `take()` after it. Only the latest input is held, so a tap
    whose wrapper is gone keeps at most one stale tensor and never grows.
    """

    def __init__(self, model: nn.Module, path: str):
        self._seen: list[torch.Tensor] = []
        self._calls = 0
        self.handle = model.get_submodule(path).register_forward_pre_hook(self._record)

    def _record(self, _module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self._seen.append(inputs[0])
        del self._seen[:-1]
        self._calls += 1

    def reset(self) -> None:
        self._seen.clear()
        self._calls = 0

    def take(self) -> torch.Tensor:
        """The pooled input of the tapped module in the pass since `reset`."""
        if self._calls != 1:
            raise RuntimeError(f"the tapped layer ran {self._calls} times in one pass")
        features = pooled(self._seen.pop())
        self.reset()
        return features


class LogitsAndFeatures(nn.Module):
    """A network whose forward returns `(logits, features)`, as the stored graphs do."""

    final: FinalLayer

    @property
    def features_dim(self) -> int:
        return self.final.dim


class WithFeatures(LogitsAndFeatures):
    """A registry classifier, unchanged, that also returns its final layer's input."""

    def __init__(self, model: nn.Module, final: FinalLayer):
        super().__init__()
        self.model = model
        self.final = final
        self._tap = FeatureTap(model, final.path)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._tap.reset()
        logits = self.model(x)
        return logits, self._tap.take()


def with_features(model: nn.Module, spec: ModelSpec) -> LogitsAndFeatures:
    """`model` returning (logits, features); a model that already does is returned as is."""
    if isinstance(model, LogitsAndFeatures):
        return model
    final = find_final_layer(model, spec.input.channels, spec.input.size, spec.num_classes)
    return WithFeatures(model, final).eval()
