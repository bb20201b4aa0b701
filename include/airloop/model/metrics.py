"""Binary classification metrics in numpy, the definitions of scikit-learn's (tested equal on the same inputs,
ties included), fast enough to bootstrap, and defined as NaN where scikit-learn would warn and return nothing
meaningful (a sample holding one class).

Each takes labels (0/1) and probabilities of the positive class as float64 arrays. numpy is imported on the first
call: loading a spec (as every DAG file does when parsed) needs the names of the metrics, not their arithmetic.
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
