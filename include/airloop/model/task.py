"""The kind of model: everything that depends on what is predicted, in one place.

A :class:`Task` says how labels are made from the target, how a fitted pipeline predicts, which metrics exist
and which way each improves, what a prediction stores in the warehouse (and how it is read back), what
prediction drift is measured on, how Evidently is told about labels and predictions, and which quality figures
monitoring reports. Every stage asks the model's task (:func:`task_for`) instead of knowing the kind itself.

* **binary**: the label is ``column > threshold`` or ``column == positive_class``; a prediction is the probability
  of the positive class (and the predicted label at 0.5); ROC AUC, average precision, log loss, Brier score.
* **multiclass**: the label is the class in ``column``, among the contract's ``allowed`` classes (their order is
  the class index); a prediction is a probability per class (and the most probable class); log loss, macro F1,
  accuracy, one-vs-rest ROC AUC.
* **regression**: the label is ``column``; a prediction is a number; RMSE, MAE, R².
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import sqlalchemy as sa

from airloop.core.errors import ConfigError
from airloop.core.spec import BinaryTarget, ModelSpec, MulticlassTarget, RegressionTarget, TargetSpec
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
    #: Whether the prediction drift is measured on a number (else on a class).
    prediction_is_numeric: ClassVar[bool]
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
        """The labels of rows whose target is known, as the model is fitted on them."""

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
    def stored_predictions(self, rows: pd.DataFrame) -> np.ndarray:
        """What :meth:`predict` gave, read back from rows holding the stored prediction columns."""

    @abstractmethod
    def drift_prediction(self, predicted: np.ndarray) -> Any:
        """The one column prediction drift is measured on (a number or a class per row)."""

    @abstractmethod
    def quality_frame(self, labels: Any, predicted: np.ndarray) -> pd.DataFrame:
        """Labels and predictions as Evidently's quality report takes them (see :meth:`quality_report_items`)."""

    @abstractmethod
    def quality_report_items(self) -> tuple[dict[str, Any], list[Any]]:
        """Evidently's view of :meth:`quality_frame`: the ``DataDefinition`` keyword arguments, and the report's
        metrics (Evidently is imported when called)."""

    @abstractmethod
    def label_figures(self, labels: Any) -> dict[str, float]:
        """Figures of a set of labels (a series or an array) worth logging beside the metrics."""

    @abstractmethod
    def describe(self) -> str:
        """The target in a few words, for run parameters and pages."""

    def logged_labels(self, labels: pd.Series) -> Any:
        """The labels as a logged dataset holds them."""
        return labels.to_numpy()


class BinaryClassification(Task):
    """Two classes; predictions are the probability of the positive one."""

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
    prediction_is_numeric = True
    #: The stored probability of the positive class.
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
    target: BinaryTarget

    def labels(self, rows: pd.DataFrame) -> pd.Series:
        values = rows[self.target.column]
        if self.target.threshold is not None:
            return (values.astype(float) > self.target.threshold).astype("int64")
        return (values.astype(str) == str(self.target.positive_class)).astype("int64")

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

    def stored_predictions(self, rows: pd.DataFrame) -> np.ndarray:
        return rows[self.score_column].to_numpy(dtype="float64")

    def drift_prediction(self, predicted: np.ndarray) -> Any:
        return list(predicted)

    def quality_frame(self, labels: Any, predicted: np.ndarray) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        return pd.DataFrame({LABEL: np.asarray(labels, dtype="int64"), PREDICTION: list(predicted)})

    def quality_report_items(self) -> tuple[dict[str, Any], list[Any]]:
        from evidently import BinaryClassification as EvidentlyBinary
        from evidently.presets import ClassificationPreset

        definition = {
            "numerical_columns": [PREDICTION],
            "categorical_columns": [LABEL],
            "classification": [EvidentlyBinary(target=LABEL, prediction_probas=PREDICTION, pos_label=1)],
        }
        return definition, [ClassificationPreset()]

    def label_figures(self, labels: Any) -> dict[str, float]:
        import numpy as np

        return {"positive_rate": float(np.mean(np.asarray(labels, dtype=np.float64)))}

    def describe(self) -> str:
        if self.target.threshold is not None:
            return f"{self.target.column} > {self.target.threshold:g}"
        return f"{self.target.column} == {self.target.positive_class!r}"

    def logged_labels(self, labels: pd.Series) -> Any:
        return labels.to_numpy(dtype=bool)


class MulticlassClassification(Task):
    """Three or more classes (the contract's ``allowed`` values of the target column, in that order); predictions
    are a probability per class."""

    kind = "multiclass"
    metrics = {
        "log_loss": Metric("log_loss", metrics.multiclass_log_loss, higher_is_better=False, label="log loss"),
        "macro_f1": Metric("macro_f1", metrics.macro_f1, higher_is_better=True, label="macro F1"),
        "accuracy": Metric("accuracy", metrics.accuracy, higher_is_better=True, label="accuracy"),
        "roc_auc_ovr": Metric("roc_auc_ovr", metrics.roc_auc_ovr, higher_is_better=True, label="AUC (OvR)"),
    }
    default_metric = "log_loss"
    undefined_because = "a class is missing from it"
    pyfunc_predict_fn = "predict_proba"
    prediction_is_numeric = False
    predicted_column = "predicted_class"
    quality_metric_names = {
        "Accuracy": "accuracy",
        "Precision": "precision",
        "Recall": "recall",
        "F1Score": "f1",
        "RocAuc": "roc_auc",
        "LogLoss": "log_loss",
    }
    target: MulticlassTarget

    def __init__(self, target: MulticlassTarget, classes: list[str]) -> None:
        super().__init__(target)
        #: The class names (as text), in the order of the contract: a class's index is its label.
        self.classes = classes
        self.probability_columns = _column_names("proba", classes)

    def labels(self, rows: pd.DataFrame) -> pd.Series:
        index = {name: i for i, name in enumerate(self.classes)}
        return rows[self.target.column].astype(str).map(index).astype("int64")

    def predict(self, pipeline: Any, features: pd.DataFrame) -> np.ndarray:
        import numpy as np

        # The pipeline knows the classes it was fitted on, a subset of the contract's when some never occurred:
        # the others get probability 0.
        fitted = pipeline.predict_proba(features)
        proba = np.zeros((len(features), len(self.classes)))
        proba[:, np.asarray(pipeline.classes_, dtype=int)] = fitted
        return proba

    def prediction_columns(self) -> list[sa.Column[Any]]:
        return [
            *(sa.Column(name, sa.Float, nullable=False) for name in self.probability_columns),
            sa.Column(self.predicted_column, sa.Text, nullable=False),
        ]

    def prediction_values(self, predicted: np.ndarray) -> dict[str, Any]:
        import numpy as np

        proba = np.asarray(predicted, dtype=np.float64)
        values: dict[str, Any] = {name: proba[:, k] for k, name in enumerate(self.probability_columns)}
        values[self.predicted_column] = np.asarray(self.classes, dtype=object)[np.argmax(proba, axis=1)]
        return values

    def stored_predictions(self, rows: pd.DataFrame) -> np.ndarray:
        return rows[self.probability_columns].to_numpy(dtype="float64")

    def drift_prediction(self, predicted: np.ndarray) -> Any:
        import numpy as np

        return list(np.asarray(self.classes, dtype=object)[np.argmax(predicted, axis=1)])

    def quality_frame(self, labels: Any, predicted: np.ndarray) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        names = np.asarray(self.classes, dtype=object)[np.asarray(labels, dtype="int64")]
        frame = pd.DataFrame({LABEL: names})
        for k, name in enumerate(self.classes):
            frame[name] = np.asarray(predicted)[:, k]
        return frame

    def quality_report_items(self) -> tuple[dict[str, Any], list[Any]]:
        from evidently import MulticlassClassification as EvidentlyMulticlass
        from evidently.presets import ClassificationPreset

        definition = {
            "numerical_columns": list(self.classes),
            "categorical_columns": [LABEL],
            "classification": [EvidentlyMulticlass(target=LABEL, prediction_probas=list(self.classes))],
        }
        return definition, [ClassificationPreset()]

    def label_figures(self, labels: Any) -> dict[str, float]:
        import numpy as np

        values = np.asarray(labels, dtype="int64")
        shares = np.bincount(values, minlength=len(self.classes)) / max(len(values), 1)
        return {
            f"share_{name}": float(share)
            for name, share in zip(_column_names("", self.classes), shares, strict=True)
        }

    def describe(self) -> str:
        return f"{self.target.column} in ({', '.join(self.classes)})"


class Regression(Task):
    """A number; predictions are numbers."""

    kind = "regression"
    metrics = {
        "rmse": Metric("rmse", metrics.rmse, higher_is_better=False, label="RMSE"),
        "mae": Metric("mae", metrics.mae, higher_is_better=False, label="MAE"),
        "r2": Metric("r2", metrics.r2, higher_is_better=True, label="R²"),
    }
    default_metric = "rmse"
    undefined_because = "it is empty"
    pyfunc_predict_fn = "predict"
    prediction_is_numeric = True
    predicted_column = "prediction"
    quality_metric_names = {
        "RMSE": "rmse",
        "MAE": "mae",
        "R2Score": "r2",
        "MeanError": "mean_error",
        "AbsMaxError": "abs_max_error",
    }
    target: RegressionTarget

    def labels(self, rows: pd.DataFrame) -> pd.Series:
        return rows[self.target.column].astype("float64")

    def predict(self, pipeline: Any, features: pd.DataFrame) -> np.ndarray:
        return pipeline.predict(features)

    def prediction_columns(self) -> list[sa.Column[Any]]:
        return [sa.Column(self.predicted_column, sa.Float, nullable=False)]

    def prediction_values(self, predicted: np.ndarray) -> dict[str, Any]:
        import numpy as np

        return {self.predicted_column: np.asarray(predicted, dtype=np.float64)}

    def stored_predictions(self, rows: pd.DataFrame) -> np.ndarray:
        return rows[self.predicted_column].to_numpy(dtype="float64")

    def drift_prediction(self, predicted: np.ndarray) -> Any:
        return list(predicted)

    def quality_frame(self, labels: Any, predicted: np.ndarray) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        return pd.DataFrame({LABEL: np.asarray(labels, dtype="float64"), PREDICTION: list(predicted)})

    def quality_report_items(self) -> tuple[dict[str, Any], list[Any]]:
        from evidently import Regression as EvidentlyRegression
        from evidently.presets import RegressionPreset

        definition = {
            "numerical_columns": [LABEL, PREDICTION],
            "regression": [EvidentlyRegression(target=LABEL, prediction=PREDICTION)],
        }
        return definition, [RegressionPreset()]

    def label_figures(self, labels: Any) -> dict[str, float]:
        import numpy as np

        values = np.asarray(labels, dtype=np.float64)
        return {"target_mean": float(np.mean(values)), "target_std": float(np.std(values))}

    def describe(self) -> str:
        return f"{self.target.column} (a number)"


def task_for(spec: ModelSpec) -> Task:
    """The task of ``spec``'s target kind."""
    target = spec.target
    if isinstance(target, MulticlassTarget):
        classes = [str(c) for c in spec.contract.column(target.column).allowed or []]
        return MulticlassClassification(target, classes)
    if isinstance(target, RegressionTarget):
        return Regression(target)
    return BinaryClassification(target)


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


def _column_names(prefix: str, classes: list[str]) -> list[str]:
    """SQL-safe, distinct column names for ``classes`` (``<prefix>_<class>``; a class that does not make one by
    itself is named by its index)."""
    names: list[str] = []
    for index, name in enumerate(classes):
        safe = re.sub(r"[^a-z0-9_]+", "_", name.lower()).strip("_")[:40]
        candidate = "_".join(part for part in (prefix, safe) if part)
        if not safe or candidate in names:
            candidate = "_".join(part for part in (prefix, str(index)) if part)
        names.append(candidate)
    return names
