"""The input contracts of the architectures this project trains, apart from their torch code.

The registry and the serving path read these without importing torch; the network modules
(`model_store.architectures.lenet5`) import them from here, so training and serving cannot
disagree on preprocessing.
"""

from __future__ import annotations

from model_store.specs import InputSpec

# LeNet-5: pixels scaled to [-1, 1] (black background -> -1, full ink -> +1): zero-centred
# like the paper's input, and the same HALF convention as the TF-style models in the registry.
LENET5_INPUT = InputSpec(
    size=32, resize=32, interpolation="bilinear", mean=(0.5,), std=(0.5,), grayscale=True
)
