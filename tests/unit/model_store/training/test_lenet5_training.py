"""LeNet-5 trained here on scikit-learn's digits: accuracy, reproducibility, evaluation.

One real 30-epoch training per module (about 25 s of CPU in a process of its own, on one
thread with torch's plain kernels); determinism is checked on two short runs so the suite
stays fast. That the figure the docs state is the one a fresh training gives is
tests/integration/test_accuracy_docs.py.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np
import pytest
import torch

from model_store.training.lenet5 import (
    REPRODUCIBLE_ENVIRONMENT,
    digits_as_images,
    evaluate,
    held_out_set,
    held_out_split,
    main,
    reproducible_torch,
    train_lenet5,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained() -> tuple[dict[str, torch.Tensor], dict]:
    return train_lenet5(seed=0)


def test_digits_are_8x8_grayscale_white_on_black() -> None:
    images, labels = digits_as_images()
    assert len(images) == len(labels) == 1797
    assert {image.mode for image in images} == {"L"}
    assert {image.size for image in images} == {(8, 8)}
    pixels = np.stack([np.asarray(image) for image in images])
    assert pixels.min() == 0 and pixels.max() == 255
    # White ink on black: the corners are background and near 0, the ink is bright.
    corners = pixels[:, [0, -1]][:, :, [0, -1]]
    assert corners.mean() < 5
    assert pixels.mean() > 50


def test_held_out_accuracy_at_least_97_percent(trained) -> None:
    _, report = trained
    assert report["held_out_accuracy"] >= 0.97


def test_report_describes_the_run(trained) -> None:
    _, report = trained
    assert report["held_out_size"] == 360
    assert report["train_size"] == 1437
    assert report["epochs"] == 30
    assert report["seed"] == 0
    assert report["dataset"] == "sklearn.datasets.load_digits"
    assert report["split"] == "stratified 80/20, random_state=0"


def test_report_records_everything_the_weights_depend_on(trained) -> None:
    _, report = trained
    assert report["threads"] == 1 and report["deterministic_algorithms"] is True
    assert report["cpu_capability"] == "DEFAULT"  # the variable reached torch
    assert report["environment"] == REPRODUCIBLE_ENVIRONMENT
    assert report["data_order"].startswith("torch.randperm")
    assert (report["batch_size"], report["learning_rate"], report["max_shift"]) == (32, 2e-3, 2)
    for name in ("torch", "numpy", "scikit-learn", "pillow"):
        assert report["versions"][name] == metadata.version(name), name
    assert report["machine"] and report["versions"]["python"]


def test_the_training_process_refuses_an_environment_that_is_not_pinned(tmp_path,
                                                                       monkeypatch) -> None:
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), "--epochs", "1"])
    assert exit_info.value.code == 2
    assert not list(tmp_path.iterdir())


def _nnpack_enabled() -> bool:
    # torch.backends.nnpack has a setter that returns the previous value, and no getter.
    (enabled,) = torch.backends.nnpack.set_flags(False)
    torch.backends.nnpack.set_flags(enabled)
    return enabled


def _torch_settings() -> tuple:
    return (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(),
            torch.backends.mkldnn.enabled, _nnpack_enabled())


def test_reproducible_torch_restores_the_settings_it_changes() -> None:
    before = _torch_settings()
    with reproducible_torch():
        assert _torch_settings() == (1, True, False, False)
    assert _torch_settings() == before


def test_evaluate_reproduces_the_reported_accuracy(trained) -> None:
    state_dict, report = trained
    assert evaluate(state_dict) == report["held_out_accuracy"]


def test_split_is_fixed_stratified_and_disjoint() -> None:
    train_idx, held_out_idx = held_out_split()
    again_train, again_held_out = held_out_split()
    np.testing.assert_array_equal(train_idx, again_train)
    np.testing.assert_array_equal(held_out_idx, again_held_out)
    assert not set(train_idx) & set(held_out_idx)
    assert len(train_idx) + len(held_out_idx) == 1797

    _, labels = digits_as_images()
    _, held_out_labels = held_out_set()
    np.testing.assert_array_equal(held_out_labels, labels[held_out_idx])
    # Stratified: each digit's share of the held-out set is within one image of its 20%.
    counts = np.bincount(labels, minlength=10)
    held_out_counts = np.bincount(held_out_labels, minlength=10)
    assert np.all(np.abs(held_out_counts - 0.2 * counts) <= 1)


def test_same_seed_gives_identical_weights() -> None:
    first, first_report = train_lenet5(seed=1, epochs=1)
    second, second_report = train_lenet5(seed=1, epochs=1)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name
    assert first_report == second_report


def test_different_seeds_give_different_weights() -> None:
    first, _ = train_lenet5(seed=1, epochs=1)
    second, _ = train_lenet5(seed=2, epochs=1)
    assert not torch.equal(first["features.0.weight"], second["features.0.weight"])
