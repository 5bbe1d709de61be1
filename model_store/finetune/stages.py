"""What `--unfreeze N` counts: the stages of each family's backbone, input to output.

A stage is a run of consecutive top-level layers that works at one spatial resolution (or
is one fully-connected layer), as the papers' own tables group them; `--unfreeze N` trains
the last N stages with the head. Every layer with weights that runs before the final
classifier belongs to exactly one stage, and nothing outside the stages runs between them
(tests/unit/model_store/finetune/test_stages.py checks both on every family), so the input of
the first unfrozen stage is all the frozen part hands on and can be computed once and cached.

- lenet: C1+S2, C3+S4, C5, F6.
- alexnet, vgg: the convolution blocks, each ending at a max-pool; fc6; fc7.
- squeezenet: the blocks between max-pools (the stem, then groups of fire modules).
- resnet: the stem (conv1 to the max-pool), layer1, layer2, layer3, layer4.
- googlenet: the stem; inception 3a-3b, 4a-4e, 5a-5b, each group with its max-pool.
- inception_v3: the stem to 73x73, then to 35x35; Mixed_5b-5d, Mixed_6a-6e, Mixed_7a-7c.
- inception_resnet_v2: the stem; mixed_5b and its repeats; mixed_6a and repeat_1;
  mixed_7a to conv2d_7b.
- mobilenet_v1: the groups between stride-2 layers (the stem with block 1, blocks 2-3, 4-5,
  6-11, 12-13).
- mobilenet_v2: the stem, then the seven bottleneck rows of Sandler et al. 2018, Table 2
  (the last with the final 1x1 convolution).
- efficientnet, efficientnet_lite: the stem, then the seven MBConv stages of Tan & Le 2019,
  Table 1 (the last with the 1x1 head convolution).

So `--unfreeze 1` trains fc7 of VGG, layer4 of ResNet, the last MBConv stage and head
convolution of EfficientNet-Lite.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from torch import nn

from model_store.specs import ModelSpec

Stage = tuple[str, ...]  # module paths in the backbone, in forward order

_POOLS = (nn.MaxPool2d, nn.AvgPool2d)
# Sandler et al. 2018, Table 2: the bottleneck rows repeat n = 1, 2, 3, 4, 3, 3, 1 times, so
# rows start at these indices of torchvision's `features` (0 is the stem convolution).
_MOBILENET_V2_ROWS = (1, 2, 4, 7, 11, 14, 17)


class NoStages(ValueError):
    pass


def _children(model: nn.Module, path: str = "", until: str | None = None,
              skip: Iterable[str] = ()) -> list[str]:
    """Paths of a module's direct children in order, stopping before `until`."""
    module = model.get_submodule(path) if path else model
    paths = []
    for name, _child in module.named_children():
        if name == until:
            break
        if name not in skip:
            paths.append(f"{path}.{name}" if path else name)
    return paths


def _split_before(paths: Sequence[str], starts: Iterable[str]) -> list[Stage]:
    """Consecutive groups of `paths`, a new one starting at each path in `starts`."""
    starts = set(starts)
    stages: list[list[str]] = []
    for path in paths:
        if not stages or path in starts:
            stages.append([])
        stages[-1].append(path)
    return [tuple(stage) for stage in stages]


def _split_after_pools(model: nn.Module, paths: Sequence[str]) -> list[Stage]:
    starts = [after for before, after in zip(paths, paths[1:], strict=False)
              if isinstance(model.get_submodule(before), _POOLS)]
    return _split_before(paths, starts)


def stages_of(spec: ModelSpec, model: nn.Module) -> list[Stage]:
    """The stages of `model` (built from `spec`), input to output."""
    family = spec.family
    if family == "lenet":
        return _split_after_pools(model, _children(model, "features")) + [
            ("classifier.0", "classifier.1", "classifier.2")]
    if family in ("alexnet", "vgg"):
        return _split_after_pools(model, _children(model, "features")) + [
            ("avgpool", "classifier.0", "classifier.1", "classifier.2"),  # fc6
            ("classifier.3", "classifier.4", "classifier.5")]  # fc7
    if family == "squeezenet":
        return _split_after_pools(model, _children(model, "features"))
    if family == "resnet":
        return _split_before(_children(model, until="avgpool"),
                             ("layer1", "layer2", "layer3", "layer4"))
    if spec.name == "googlenet":
        return _split_before(_children(model, until="avgpool"),
                             ("inception3a", "inception4a", "inception5a"))
    if spec.name == "inception_v3":
        return _split_before(_children(model, until="avgpool", skip=("AuxLogits",)),
                             ("Conv2d_3b_1x1", "Mixed_5b", "Mixed_6a", "Mixed_7a"))
    if spec.name == "inception_resnet_v2":
        return _split_before(_children(model, until="global_pool"),
                             ("mixed_5b", "mixed_6a", "mixed_7a"))
    if family == "mobilenet_v1":
        paths = _children(model, "features")
        return _split_before(paths, [p for p in paths
                                     if p.rsplit(".", 1)[1].startswith("conv_pad_")])
    if family == "mobilenet_v2":
        return _split_before(_children(model, "features"),
                             [f"features.{i}" for i in _MOBILENET_V2_ROWS])
    if family == "efficientnet":
        paths = _children(model, "features")
        return _split_before(paths, paths[1:-1])  # the last 1x1 conv joins the last stage
    if family == "efficientnet_lite":
        blocks = _children(model, "blocks")
        return _split_before(["conv_stem", "bn1", *blocks, "conv_head", "bn2"], blocks)
    raise NoStages(f"{spec.name}: no stages are defined for family {family!r}")
