"""Metrics in numpy, the definitions of scikit-learn's (tested equal on the same inputs, ties and missing classes
included), fast enough to bootstrap, and NaN where scikit-learn would warn and return nothing meaningful (a
sample holding one class).

Each takes labels and predictions as float64 arrays: for binary classification labels 0/1 and the probability of
the positive class; for multiclass, class indices and an n x K matrix of probabilities; for regression, numbers.
numpy is imported on the first call: loading a spec (as every DAG file does when parsed) needs the names of the
metrics, not their arithmetic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties get average ranks); NaN when only one class is present."""
    positives = int(y_true.sum())
    negatives = len(y_true) - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = _average_ranks(score)
    return float((ranks[y_true == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def average_precision(y_true: np.ndarray, score: np.ndarray) -> float:
    """Average precision: sum over thresholds of (recall step) x precision; NaN without positives."""
    import numpy as np

    positives = int(y_true.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-score, kind="mergesort")
    sorted_score = score[order]
    # One point per distinct score: tied rows enter the ranking together.
    last_of_tie = np.r_[np.flatnonzero(np.diff(sorted_score)), len(score) - 1]
    true_positives = np.cumsum(y_true[order])[last_of_tie]
    precision = true_positives / (last_of_tie + 1)
    recall = true_positives / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(y_true: np.ndarray, score: np.ndarray) -> float:
    """Mean negative log-likelihood, probabilities clipped away from 0 and 1."""
    import numpy as np

    eps = np.finfo(np.float64).eps
    p = np.clip(score, eps, 1 - eps)
    return float(-np.mean(y_true * np.log(p) + (1 - y_true) * np.log(1 - p)))


def brier(y_true: np.ndarray, score: np.ndarray) -> float:
    """Mean squared error of the probabilities."""
    import numpy as np

    return float(np.mean((score - y_true) ** 2))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    import numpy as np

    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    starts_tie = np.r_[True, ordered[1:] != ordered[:-1]]
    tie_group = np.cumsum(starts_tie) - 1
    starts = np.flatnonzero(starts_tie)
    ends = np.r_[starts[1:], len(values)]
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = ((starts + 1 + ends) / 2.0)[tie_group]
    return ranks


# -- multiclass: labels are class indices 0..K-1, predictions an n x K matrix of class probabilities -------------


def multiclass_log_loss(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class, probabilities clipped away from 0 and 1."""
    import numpy as np

    eps = np.finfo(np.float64).eps
    p = np.clip(proba, eps, 1 - eps)
    return float(-np.mean(np.log(p[np.arange(len(y_true)), y_true.astype(int)])))


def roc_auc_ovr(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The mean over classes of each class's ROC AUC against the others; NaN when a class is absent (as
    scikit-learn's ``roc_auc_score(..., multi_class="ovr", labels=all classes)``)."""
    import numpy as np

    scores = [roc_auc((y_true == k).astype(np.float64), proba[:, k]) for k in range(proba.shape[1])]
    return float(np.mean(scores))


def macro_f1(y_true: np.ndarray, proba: np.ndarray) -> float:
    """F1 of each class (2 TP / (2 TP + FP + FN)) averaged over the classes that are true or predicted, the
    prediction being the most probable class (the first, on a tie)."""
    import numpy as np

    y, predicted = y_true.astype(int), np.argmax(proba, axis=1)
    scores = []
    for k in np.union1d(y, predicted):
        tp = np.sum((predicted == k) & (y == k))
        wrong = np.sum((predicted == k) != (y == k))
        scores.append(2 * tp / (2 * tp + wrong))
    return float(np.mean(scores))


def accuracy(y_true: np.ndarray, proba: np.ndarray) -> float:
    """The share of rows whose most probable class is the true one."""
    import numpy as np

    return float(np.mean(np.argmax(proba, axis=1) == y_true.astype(int)))


# -- regression: labels and predictions are numbers ---------------------------------------------------------------


def rmse(y_true: np.ndarray, predicted: np.ndarray) -> float:
    """Root mean squared error."""
    import numpy as np

    return float(np.sqrt(np.mean((predicted - y_true) ** 2)))


def mae(y_true: np.ndarray, predicted: np.ndarray) -> float:
    """Mean absolute error."""
    import numpy as np

    return float(np.mean(np.abs(predicted - y_true)))


def r2(y_true: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination; for a constant target 1 when predicted exactly, else 0 (scikit-learn's
    ``force_finite``)."""
    import numpy as np

    residual = float(np.sum((y_true - predicted) ** 2))
    total = float(np.sum((y_true - np.mean(y_true)) ** 2))
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return 1 - residual / total
