"""The image folder: classes and files as found, the checks on it, its digest and split."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from model_store.finetune.dataset import (
    check_class_sizes,
    digest,
    min_images_per_class,
    scan,
    split,
)
from model_store.finetune.digits_folder import write_digits_folder
from model_store.finetune.errors import FinetuneError


def make_folder(root, layout: dict[str, int]):
    for label, count in layout.items():
        (root / label).mkdir(parents=True)
        for i in range(count):
            (root / label / f"{i:02d}.bin").write_bytes(f"{label}{i}".encode())
    return root


def test_classes_and_files_are_sorted_and_hidden_ones_ignored(tmp_path):
    make_folder(tmp_path, {"cat": 2, "ant": 3})
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.bin").write_bytes(b"x")
    (tmp_path / "ant" / ".DS_Store").write_bytes(b"x")
    (tmp_path / "ant" / "deeper").mkdir()
    (tmp_path / "ant" / "deeper" / "00.bin").write_bytes(b"y")
    (tmp_path / "loose.bin").write_bytes(b"z")
    folder = scan(tmp_path)
    assert folder.classes == ("ant", "cat")
    assert [folder.relative(i) for i in range(len(folder.files))] == [
        "ant/00.bin", "ant/01.bin", "ant/02.bin", "ant/deeper/00.bin", "cat/00.bin",
        "cat/01.bin"]
    assert folder.labels.tolist() == [0, 0, 0, 0, 1, 1]
    assert folder.counts() == {"ant": 4, "cat": 2}


def test_fewer_than_two_classes_is_refused(tmp_path):
    make_folder(tmp_path, {"only": 5})
    with pytest.raises(FinetuneError, match=r"1 class folder\(s\) \(only\).*at least two"):
        scan(tmp_path)
    with pytest.raises(FinetuneError, match="not a folder"):
        scan(tmp_path / "missing")


def test_an_empty_class_is_refused(tmp_path):
    make_folder(tmp_path, {"a": 5})
    (tmp_path / "b").mkdir()
    with pytest.raises(FinetuneError, match="class folder 'b' has no files"):
        scan(tmp_path)


@pytest.mark.parametrize(("holdout", "need"), [(0.2, 5), (0.5, 2), (0.1, 10), (0.8, 5)])
def test_images_a_class_needs(holdout, need):
    assert min_images_per_class(holdout) == need


def test_too_small_classes_are_named(tmp_path):
    folder = scan(make_folder(tmp_path, {"a": 5, "b": 3, "c": 4}))
    with pytest.raises(FinetuneError) as refused:
        check_class_sizes(folder, 0.2)
    assert str(refused.value) == (
        "too few files to split: 'b' has 3, 'c' has 4; holding out 0.2 needs at least 5 per "
        "class (one held out, one to train on)")
    check_class_sizes(folder, 0.5)  # 2 per class suffice at half


def test_every_class_is_in_both_parts_of_a_minimal_split(tmp_path):
    folder = scan(make_folder(tmp_path, {"a": 5, "b": 5, "c": 7}))
    train, held_out = split(folder.labels, 0.2, seed=3)
    assert set(folder.labels[train]) == set(folder.labels[held_out]) == {0, 1, 2}
    assert sorted([*train, *held_out]) == list(range(17))


def test_digest_follows_content_and_labels_not_location(tmp_path):
    one = scan(make_folder(tmp_path / "one", {"a": 5, "b": 5}))
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    two = scan(tmp_path / "two")
    everything = range(10)
    assert digest(one, everything) == digest(two, everything)
    assert digest(one, everything) != digest(one, range(9))
    (tmp_path / "two" / "a" / "00.bin").write_bytes(b"changed")
    assert digest(one, everything) != digest(scan(tmp_path / "two"), everything)
    shutil.move(tmp_path / "one" / "a" / "04.bin", tmp_path / "one" / "b" / "05.bin")
    relabelled = scan(tmp_path / "one")
    assert digest(relabelled, everything) != digest(two, everything)


def test_digits_folder_is_split_as_lenet5_is(tmp_path):
    from model_store.training.lenet5 import digits_as_images, held_out_split

    assert write_digits_folder(tmp_path) == 1797
    folder = scan(tmp_path)
    assert folder.classes == tuple(str(d) for d in range(10))
    _, held_out = split(folder.labels, 0.2, seed=0)
    # The same images: compare pixels, not positions (the folder is ordered by class).
    images, _ = digits_as_images()
    lenet_held_out = {np.asarray(images[i]).tobytes() for i in held_out_split()[1]}
    from PIL import Image

    ours = {np.asarray(Image.open(folder.files[i])).tobytes() for i in held_out}
    assert len(ours) == len(lenet_held_out) == 360  # the 8x8 digits are distinct images
    assert ours == lenet_held_out
