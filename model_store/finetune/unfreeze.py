"""Training the backbone's last N stages together with the head (`--unfreeze N`).

The seed's rule of thumb (shared/seeds/004, "Transfer Learning"): the more labelled data,
the fewer layers to freeze. The frozen stages never change, so, as the seed suggests, their
output is computed once per image, during the embedding pass, and training runs only the
unfrozen stages and the head on those cached inputs: the frozen layers are swapped for
identities and a pre-hook hands the cached batch to the first unfrozen layer. Only the
unfrozen part costs anything per epoch. The embedding pass runs the backbone through ONNX
Runtime as a graph exported for the run (`export_frozen`: the stored weights, with the
features and the first unfrozen layer's input as outputs, checked against PyTorch), because
eager PyTorch runs these networks several times slower on a CPU (EfficientNet-Lite0: about
7 against 37 images a second here), and one pass then gives both.

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
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from model_store.finetune.network import FineTunedNet
from model_store.finetune.stages import Stage
from model_store.store import ONNX_OPSET, PARITY_TOLERANCE

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


class _FrozenPart(nn.Module):
    """The network's forward, returning its features and the first unfrozen layer's input:
    the head is traced but unused, so the exported graph holds the backbone only."""

    def __init__(self, net: FineTunedNet, first: nn.Module):
        super().__init__()
        self.net = net
        self._seen: list[torch.Tensor] = []
        self.handle = first.register_forward_pre_hook(
            lambda _module, inputs: self._seen.append(inputs[0]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._seen.clear()
        _, features = self.net(x)
        return features, self._seen[0]


class FrozenGraph:
    """The exported backbone, run by ONNX Runtime: a batch to (features, stage inputs)."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        features, stage_inputs = self.session.run(None, {"input": batch})
        return features, stage_inputs


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

    def export_frozen(self, channels: int, size: int, path: Path) -> FrozenGraph:
        """The backbone as an ONNX graph at `path` with two outputs, the features and the
        first unfrozen layer's input, checked against PyTorch on random inputs."""
        # In inference mode: the exporter restores the wrapper's mode on every submodule
        # afterwards, and a new module starts in training mode (BatchNorm would then learn).
        frozen = _FrozenPart(self.net, self.first).eval()
        try:
            torch.onnx.export(frozen, (torch.zeros(1, channels, size, size),), str(path),
                              dynamo=False, input_names=["input"],
                              output_names=["features", "stage_input"],
                              dynamic_axes={"input": {0: "batch"}, "features": {0: "batch"},
                                            "stage_input": {0: "batch"}},
                              opset_version=ONNX_OPSET)
        finally:
            frozen.handle.remove()
        graph = FrozenGraph(path)
        check = np.random.default_rng(0).standard_normal((2, channels, size, size)
                                                          ).astype(np.float32)
        with torch.no_grad():
            _, features = self.net(torch.from_numpy(check))
        expected = (features.numpy(), self.stage_inputs(check))
        for name, wanted, got in zip(("features", "stage inputs"), expected, graph(check),
                                     strict=True):
            diff = float(np.max(np.abs(got - wanted)))
            if diff > PARITY_TOLERANCE * max(1.0, float(np.max(np.abs(wanted)))):
                raise RuntimeError(f"the exported backbone's {name} disagree with PyTorch "
                                   f"(max |diff| {diff})")
        return graph

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
                total += loss.item() * len(batch)
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
