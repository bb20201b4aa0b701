"""The kind of model: everything that depends on what is predicted, in one place.

A :class:`Task` says how labels are made from the target, how a fitted pipeline predicts, which metrics exist
and which way each improves, what a prediction stores in the warehouse, how Evidently is told about labels and
predictions, and which quality figures monitoring reports. Every stage asks the model's task
(:func:`task_for`) instead of knowing the kind itself.

Binary classification is the one kind today: the label is ``target.column > target.threshold``, a prediction
is the probability of the positive class (and the predicted label at 0.5), judged by ROC AUC, average precision,
log loss and Brier score.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa

from airloop.core.errors import ConfigError
from airloop.core.spec import ModelSpec, TargetSpec
from airloop.model import metrics

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: The label column in frames the task builds (logged datasets, Evidently's quality frames).
LABEL = "label"
#: The prediction column in Evidently's frames.
PREDICTION = "prediction"


@dataclass(frozen=True)
class Metric:
    """A metric of a kind of model: its function (labels, predictions -> value) and which way is better."""

    name: str
    compute: Callable[[np.ndarray, np.ndarray], float]
    higher_is_better: bool
    #: How tables and pages head it.
    label: str

    def __call__(self, y_true: Any, predicted: Any) -> float:
        import numpy as np

        return self.compute(np.asarray(y_true, dtype=np.float64), np.asarray(predicted, dtype=np.float64))

    def improvement(self, new: float, old: float) -> float:
        """How much better ``new`` is than ``old``: positive is better, whichever way the metric counts."""
        return new - old if self.higher_is_better else old - new

    def clears(self, value: float, floor: float) -> bool:
        """Whether ``value`` is on the good side of ``floor`` (a ceiling for losses)."""
        return value >= floor if self.higher_is_better else value <= floor


class Task(ABC):
    """What depends on the kind of model. One instance per spec (:func:`task_for`)."""

    kind: ClassVar[str]
    metrics: ClassVar[Mapping[str, Metric]]
    default_metric: ClassVar[str]
    #: Why a metric can be undefined on a sample, for reasons shown to people.
    undefined_because: ClassVar[str]
    #: What ``mlflow.pyfunc`` models of this kind return (the flavour's ``pyfunc_predict_fn``).
    pyfunc_predict_fn: ClassVar[str]
    #: The stored prediction column that holds what the metrics judge (see :meth:`predict`).
    score_column: ClassVar[str]
    #: Evidently's quality metrics read back from its report (metric class name -> airloop's name).
    quality_metric_names: ClassVar[Mapping[str, str]]

    def __init__(self, target: TargetSpec) -> None:
        self.target = target

    def metric(self, name: str) -> Metric:
        return self.metrics[name]

    def all_metrics(self, y_true: Any, predicted: Any) -> dict[str, float]:
        """Every metric of the kind on the same labels and predictions."""
        return {name: metric(y_true, predicted) for name, metric in self.metrics.items()}

    def labelled(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, int]:
        """The rows whose target is known, their labels, and how many rows had no target (not arrived yet, or
        none exists: a cancelled flight has no arrival delay)."""
        known = frame[self.target.column].notna()
        rows = frame.loc[known].reset_index(drop=True)
        return rows, self.labels(rows).rename(LABEL), int((~known).sum())

    @abstractmethod
    def labels(self, rows: pd.DataFrame) -> pd.Series:
        """The labels of rows whose target is known."""

    @abstractmethod
    def predict(self, pipeline: Any, features: pd.DataFrame) -> np.ndarray:
        """What the metrics judge, for each row of ``features``."""

    @abstractmethod
    def prediction_columns(self) -> list[sa.Column[Any]]:
        """The columns a stored prediction has (new objects at each call)."""

    @abstractmethod
    def prediction_values(self, predicted: np.ndarray) -> dict[str, Any]:
        """The stored prediction columns' values for ``predicted`` (one per row)."""

    @abstractmethod
    def label_figures(self, labels: Any) -> dict[str, float]:
        """Figures of a set of labels (a series or an array) worth logging beside the metrics (e.g. the positive
        rate)."""

    @abstractmethod
    def describe(self) -> str:
        """The target in a few words, for run parameters and pages."""

    @abstractmethod
    def logged_labels(self, labels: pd.Series) -> Any:
        """The labels as a logged dataset holds them."""

    @abstractmethod
    def quality_report_items(self) -> tuple[dict[str, Any], list[Any]]:
        """Evidently's view of labels and predictions: the ``DataDefinition`` keyword arguments for frames of
        :data:`LABEL` and :data:`PREDICTION`, and the report's metrics (Evidently is imported when called)."""


class BinaryClassification(Task):
    """A binary target: ``column > threshold`` is the positive class; predictions are its probability."""

    kind = "binary"
    metrics = {
        "roc_auc": Metric("roc_auc", metrics.roc_auc, higher_is_better=True, label="AUC"),
        "average_precision": Metric("average_precision", metrics.average_precision, True, label="AP"),
        "log_loss": Metric("log_loss", metrics.log_loss, higher_is_better=False, label="log loss"),
        "brier": Metric("brier", metrics.brier, higher_is_better=False, label="Brier"),
    }
    default_metric = "roc_auc"
    undefined_because = "it holds one class only"
    pyfunc_predict_fn = "predict_proba"
    score_column = "probability"
    #: The probability at or above which the predicted label is positive (the spec has no decision threshold).
    decision_threshold = 0.5
    quality_metric_names = {
        "Accuracy": "accuracy",
        "Precision": "precision",
        "Recall": "recall",
        "F1Score": "f1",
        "RocAuc": "roc_auc",
        "LogLoss": "log_loss",
    }

    def labels(self, rows: pd.DataFrame) -> pd.Series:
        return (rows[self.target.column].astype(float) > self.target.threshold).astype("int64")

    def predict(self, pipeline: Any, features: pd.DataFrame) -> np.ndarray:
        return pipeline.predict_proba(features)[:, 1]

    def prediction_columns(self) -> list[sa.Column[Any]]:
        return [
            sa.Column(self.score_column, sa.Float, nullable=False),
            sa.Column("predicted_label", sa.Boolean, nullable=False),
        ]

    def prediction_values(self, predicted: np.ndarray) -> dict[str, Any]:
        import numpy as np

        probabilities = np.asarray(predicted, dtype=np.float64)
        return {self.score_column: probabilities, "predicted_label": probabilities >= self.decision_threshold}

    def label_figures(self, labels: Any) -> dict[str, float]:
        import numpy as np

        return {"positive_rate": float(np.mean(np.asarray(labels, dtype=np.float64)))}

    def describe(self) -> str:
        return f"{self.target.column} > {self.target.threshold:g}"

    def logged_labels(self, labels: pd.Series) -> Any:
        return labels.to_numpy(dtype=bool)

    def quality_report_items(self) -> tuple[dict[str, Any], list[Any]]:
        from evidently import BinaryClassification as EvidentlyBinary
        from evidently.presets import ClassificationPreset

        definition = {
            "numerical_columns": [PREDICTION],
            "categorical_columns": [LABEL],
            "classification": [EvidentlyBinary(target=LABEL, prediction_probas=PREDICTION, pos_label=1)],
        }
        return definition, [ClassificationPreset()]


_TASKS: dict[str, type[Task]] = {BinaryClassification.kind: BinaryClassification}


def task_for(spec: ModelSpec) -> Task:
    """The task of ``spec``'s target kind."""
    return _TASKS[spec.target.kind](spec.target)


def primary_metric(spec: ModelSpec) -> Metric:
    """The metric the search optimises and the gate and monitoring judge: the promotion policy's, else the
    kind's default."""
    task = task_for(spec)
    name = spec.promotion.metric if spec.promotion and spec.promotion.metric else task.default_metric
    return task.metric(name)


def check_spec(spec: ModelSpec, path: Path) -> None:
    """What the spec's schema cannot check alone: names that must be the target kind's (its metric)."""
    task = task_for(spec)
    metric = spec.promotion.metric if spec.promotion else None
    if metric is not None and metric not in task.metrics:
        raise ConfigError(
            f"{path}: field 'promotion.metric': {metric!r} is not a metric of a {task.kind} model; "
            f"valid: {', '.join(task.metrics)}"
        )
