"""The linear head: multinomial logistic regression on the backbone's features.

scikit-learn's `LogisticRegression` (L-BFGS, L2 penalty C = 1, on standardised features)
rather than a torch Linear trained by SGD: the problem is convex, so the fit has no learning
rate, epochs or initialisation to choose and the same features always give the same head;
it is the usual linear probe (the openai/CLIP README's linear-probe example is this same
estimator, `LogisticRegression(C=0.316, max_iter=1000)`). C is not swept: the README says
to choose it on a validation split, which would multiply the fits; scikit-learn's default
is kept, and --unfreeze (which starts from this head) is the option for more accuracy. The
standardisation is folded into the weights, so the stored head is one affine map of the raw
features, a single Gemm in the graph, and its logits are what `LinearHead.logits` computes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REGULARISATION_C = 1.0  # scikit-learn's default
MAX_ITERATIONS = 1000


@dataclass(frozen=True)
class LinearHead:
    weight: np.ndarray  # [classes, dim]
    bias: np.ndarray  # [classes]

    def logits(self, features: np.ndarray) -> np.ndarray:
        return features.astype(np.float64) @ self.weight.T + self.bias


def fit_head(features: np.ndarray, labels: np.ndarray, num_classes: int) -> LinearHead:
    """Logistic regression over `num_classes` classes, as one affine map of raw features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    present = np.unique(labels)
    if len(present) != num_classes:
        raise ValueError(f"training labels cover {len(present)} of {num_classes} classes")
    scaler = StandardScaler().fit(features)
    model = LogisticRegression(C=REGULARISATION_C, max_iter=MAX_ITERATIONS)
    model.fit(scaler.transform(features), labels)
    coef, intercept = model.coef_.astype(np.float64), model.intercept_.astype(np.float64)
    if num_classes == 2:
        # scikit-learn keeps one row for two classes, the log-odds of class 1; splitting it
        # evenly gives two logits whose softmax is the same sigmoid.
        coef = np.concatenate([-coef / 2, coef / 2])
        intercept = np.concatenate([-intercept / 2, intercept / 2])
    # logits = coef @ ((x - mean) / scale) + intercept, as one affine map of x.
    weight = coef / scaler.scale_
    bias = intercept - weight @ scaler.mean_
    return LinearHead(weight, bias)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose largest logit is the true class (counted in integers)."""
    return int((logits.argmax(axis=1) == labels).sum()) / len(labels)


def confusion(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> list[list[int]]:
    """Rows: true class; columns: predicted class; in the model's class order."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(labels, logits.argmax(axis=1), labels=list(range(num_classes)))
    return matrix.astype(int).tolist()
