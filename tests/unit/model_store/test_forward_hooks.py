"""One forward pass with hooks: each hook sees its module's call in that pass, the pass runs
in eval mode on a zero image, and the hooks are gone afterwards, also when the pass fails."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model_store.forward_hooks import run_with_forward_hooks


def test_each_hook_sees_its_module_once_and_is_removed_after_the_pass():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(18, 4))
    model.train()
    seen: list[tuple[str, tuple[int, ...], tuple[int, ...], bool]] = []

    def recorder(name: str):
        def record(module, inputs, output) -> None:
            seen.append((name, tuple(inputs[0].shape), tuple(output.shape), module.training))
        return record

    run_with_forward_hooks(model, [(model[0], recorder("conv")), (model[3], recorder("fc"))],
                           channels=3, size=5)
    assert seen == [("conv", (1, 3, 5, 5), (1, 2, 3, 3), False),
                    ("fc", (1, 18), (1, 4), False)]
    model(torch.zeros(1, 3, 5, 5))
    assert len(seen) == 2  # the hooks lived for that pass only


def test_the_hooks_are_removed_when_the_pass_fails():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(7, 4))  # wrong width
    calls: list[str] = []
    with pytest.raises(RuntimeError):
        run_with_forward_hooks(model, [(model[0], lambda *_: calls.append("conv"))],
                               channels=3, size=5)
    assert calls == ["conv"]
    model[0](torch.zeros(1, 3, 5, 5))
    assert calls == ["conv"]
