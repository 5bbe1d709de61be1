"""The linear head: one affine map of raw features that reproduces scikit-learn's model."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from model_store.finetune.head import confusion, fit_head, top1


def blobs(classes: int, per_class: int = 30, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    labels = np.repeat(np.arange(classes), per_class)
    # Features on very different scales, as real activations are: the folded standardisation
    # must carry them.
    features = (centres[labels] + rng.normal(0, 1, (len(labels), dim))) * rng.uniform(
        0.01, 100, dim) + rng.normal(0, 50, dim)
    return features, labels


def reference(features, labels):
    scaler = StandardScaler().fit(features)
    model = LogisticRegression(C=1.0, max_iter=1000).fit(scaler.transform(features), labels)
    return scaler, model


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_folded_head_gives_scikit_learns_probabilities(classes):
    features, labels = blobs(classes)
    head = fit_head(features, labels, classes)
    assert head.weight.shape == (classes, 16) and head.bias.shape == (classes,)
    scaler, model = reference(features, labels)
    logits = head.logits(features)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    expected = model.predict_proba(scaler.transform(features))
    np.testing.assert_allclose(probabilities, expected, atol=1e-7)
    assert np.array_equal(logits.argmax(1), model.predict(scaler.transform(features)))


def test_every_class_must_be_in_the_training_labels():
    features, labels = blobs(3)
    with pytest.raises(ValueError, match="cover 2 of 3 classes"):
        fit_head(features[labels < 2], labels[labels < 2], 3)


def test_top1_and_confusion_count_rows_as_true_classes():
    logits = np.array([[2.0, 1, 0], [0, 3, 1], [0, 3, 1], [5, 0, 1]])
    labels = np.array([0, 1, 2, 2])
    assert top1(logits, labels) == 0.5
    assert confusion(logits, labels, 3) == [[1, 0, 0], [0, 1, 0], [1, 1, 0]]
