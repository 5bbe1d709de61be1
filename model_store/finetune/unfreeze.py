"""Training the backbone's last N stages together with the head (`--unfreeze N`).

The seed's rule of thumb (shared/seeds/004, "Transfer Learning"): the more labelled data,
the fewer layers to freeze. The frozen stages never change, so, as the seed suggests, their
output is computed once per image (`StageSplit.stage_inputs`, during the embedding pass) and
training runs only the unfrozen stages and the head on those cached inputs: the frozen
layers are swapped for identities and a pre-hook hands the cached batch to the first
unfrozen layer. Only the unfrozen part costs anything per epoch.

Training starts from the fitted linear head (a linear probe, then fine-tuning: Kumar et al.
2022, "Fine-Tuning can Distort Pretrained Features and Underperform Out-of-Distribution",
where a random head's large early gradients would otherwise disturb the pretrained stages).
BatchNorm keeps its stored running statistics and dropout stays off: the network is in
inference mode while its weights learn, since a small set's batches are poor estimates of
the statistics the backbone was trained with. AdamW, cosine decay to zero, a fixed number of
epochs: the held-out split is scored once, at the end, never used to pick an epoch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from model_store.finetune.network import FineTunedNet
from model_store.finetune.stages import Stage


DEFAULT_EPOCHS = 8


@dataclass(frozen=True)
class UnfreezeSettings:
    stages: int
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 32
    backbone_lr: float = 1e-4
    head_lr: float = 1e-3
    weight_decay: float = 1e-4

    def describe(self) -> dict:
        return asdict(self) | {"optimiser": "AdamW, cosine decay to zero",
                               "batch_norm": "stored running statistics (inference mode)",
                               "head_start": "the fitted logistic-regression head"}


class _PrefixDone(Exception):
    """Stops a forward pass once the first unfrozen layer's input is known."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value


def _set_submodule(root: nn.Module, path: str, module: nn.Module) -> nn.Module:
    parent_path, _, child = path.rpartition(".")
    parent = root.get_submodule(parent_path) if parent_path else root
    previous = parent.get_submodule(child)
    setattr(parent, child, module)
    return previous


class StageSplit:
    """A fine-tuned network cut before its last `unfreeze` stages."""

    def __init__(self, net: FineTunedNet, stages: Sequence[Stage], unfreeze: int):
        if not 1 <= unfreeze <= len(stages):
            raise ValueError(f"--unfreeze takes 1 to {len(stages)} (the backbone has "
                             f"{len(stages)} stages), not {unfreeze}")
        self.net = net
        self.frozen = [path for stage in stages[:-unfreeze] for path in stage]
        self.trainable = [path for stage in stages[-unfreeze:] for path in stage]
        self.first = net.backbone.get_submodule(self.trainable[0])

    def stage_inputs(self, batch: np.ndarray) -> np.ndarray:
        """The input of the first unfrozen layer for a batch of model inputs (the frozen
        part's output), computed without running anything after it."""
        def stop(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            raise _PrefixDone(inputs[0])

        handle = self.first.register_forward_pre_hook(stop)
        try:
            with torch.no_grad():
                self.net.backbone(torch.from_numpy(batch))
        except _PrefixDone as done:
            return done.value.numpy().copy()
        finally:
            handle.remove()
        raise RuntimeError(f"{self.trainable[0]} did not run in the backbone's forward pass")

    def parameters(self) -> list[nn.Parameter]:
        return [p for path in self.trainable
                for p in self.net.backbone.get_submodule(path).parameters()]

    @contextmanager
    def from_cache(self) -> Iterator[None]:
        """Within: `forward(cached)` runs the unfrozen part only; the network is restored after."""
        removed = {path: _set_submodule(self.net.backbone, path, nn.Identity())
                   for path in self.frozen}
        self._feed: torch.Tensor | None = None

        def feed(_module: nn.Module, _inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
            return (self._feed,)

        handle = self.first.register_forward_pre_hook(feed)
        try:
            yield
        finally:
            handle.remove()
            for path, module in removed.items():
                _set_submodule(self.net.backbone, path, module)

    def forward(self, cached: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) from cached stage inputs; inside `from_cache` only."""
        self._feed = cached
        # The frozen layers are identities now; a tiny stand-in input carries the batch size
        # to the first unfrozen layer, whose pre-hook swaps in the cached batch.
        stand_in = torch.zeros(len(cached), 3, 1, 1)
        return self.net(stand_in)


def train(split: StageSplit, inputs: np.ndarray, labels: np.ndarray, settings: UnfreezeSettings,
          seed: int, progress: bool) -> list[float]:
    """Train the unfrozen stages and the head on cached stage inputs; the mean loss per epoch."""
    net = split.net.eval()
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    stage_parameters, head_parameters = split.parameters(), list(net.head.parameters())
    for parameter in (*stage_parameters, *head_parameters):
        parameter.requires_grad_(True)
    optimiser = torch.optim.AdamW(
        [{"params": stage_parameters, "lr": settings.backbone_lr},
         {"params": head_parameters, "lr": settings.head_lr}],
        weight_decay=settings.weight_decay)
    steps = settings.epochs * -(-len(labels) // settings.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=steps)
    generator = torch.Generator().manual_seed(seed)
    cached, targets = torch.from_numpy(inputs), torch.from_numpy(labels)
    losses = []
    with split.from_cache():
        for _ in tqdm(range(settings.epochs), desc="fine-tuning", unit="epoch",
                      disable=not progress):
            order = torch.randperm(len(targets), generator=generator)
            total = 0.0
            for start in range(0, len(order), settings.batch_size):
                batch = order[start:start + settings.batch_size]
                logits, _ = split.forward(cached[batch])
                loss = F.cross_entropy(logits, targets[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                schedule.step()
                total += float(loss) * len(batch)
            losses.append(total / len(order))
    for parameter in net.parameters():
        parameter.requires_grad_(False)
    return losses


def predict(split: StageSplit, inputs: np.ndarray, batch_size: int = 64
            ) -> tuple[np.ndarray, np.ndarray]:
    """(logits, features) of the trained network on cached stage inputs."""
    logits, features = [], []
    with split.from_cache(), torch.no_grad():
        for start in range(0, len(inputs), batch_size):
            got = split.forward(torch.from_numpy(inputs[start:start + batch_size]))
            logits.append(got[0].numpy())
            features.append(got[1].numpy())
    return np.concatenate(logits), np.concatenate(features)
