"""Multiclass and regression models: their metrics held equal to scikit-learn's (ties and missing classes
included), their labels, predictions and stored columns, Evidently's quality report of them, and the spec checks
that keep a spec's kind, target and metric consistent."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn import metrics as skm

from airloop.core.errors import ConfigError
from airloop.core.spec import load_spec
from airloop.model.context import load_model_spec
from airloop.model.task import (
    LABEL,
    PREDICTION,
    MulticlassClassification,
    Regression,
    primary_metric,
    task_for,
)
from airloop.monitor.reports import quality_snapshot
from airloop.vendor.evidently import single_values

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
FLIGHTS = ROOT / "config" / "models" / "flights_delay.yaml"
CLASSES = ["early", "on_time", "late", "very_late"]


def _spec_file(tmp_path: Path, **changes) -> Path:
    raw = yaml.safe_load(FLIGHTS.read_text())
    raw.update(changes)
    path = tmp_path / "flights_delay.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _multiclass_raw() -> dict:
    raw = yaml.safe_load(FLIGHTS.read_text())
    raw["contract"]["columns"].append({"name": "delay_class", "type": "string", "allowed": CLASSES})
    raw["target"] = {"kind": "multiclass", "column": "delay_class", "label_delay_hours": 24}
    raw["promotion"]["metric"] = "log_loss"
    raw["promotion"]["floor"] = 1.3
    return raw


@pytest.fixture
def multiclass(tmp_path) -> MulticlassClassification:
    path = tmp_path / "flights_delay.yaml"
    path.write_text(yaml.safe_dump(_multiclass_raw()))
    task = task_for(load_model_spec(path))
    assert isinstance(task, MulticlassClassification)
    return task


@pytest.fixture
def regression(tmp_path) -> Regression:
    path = _spec_file(
        tmp_path,
        target={"kind": "regression", "column": "arr_delay", "label_delay_hours": 24},
        promotion={**yaml.safe_load(FLIGHTS.read_text())["promotion"], "metric": "rmse", "floor": 60},
    )
    task = task_for(load_model_spec(path))
    assert isinstance(task, Regression)
    return task


# -- multiclass metrics against scikit-learn -----------------------------------------------------------------------


def _multiclass_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 4, 400)
    proba = rng.dirichlet(np.ones(4), 400)
    tied = np.round(proba, 1)
    tied = tied / tied.sum(axis=1, keepdims=True)
    confident = np.eye(4)[y] * 0.96 + 0.01
    return {
        "random": (y, proba),
        "ties": (y, tied),
        "all-tied": (y[:40], np.full((40, 4), 0.25)),
        "perfect": (y, confident),
        "a-class-missing": (np.where(y == 3, 0, y), proba),
        "one-class": (np.zeros(30, dtype=int), proba[:30]),
    }


MULTICLASS_CASES = _multiclass_cases()


def _sklearn_multiclass(name: str, y: np.ndarray, proba: np.ndarray) -> float:
    labels = list(range(proba.shape[1]))
    predicted = np.argmax(proba, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if name == "log_loss":
            return float(skm.log_loss(y, proba, labels=labels))
        if name == "macro_f1":
            return float(skm.f1_score(y, predicted, average="macro"))
        if name == "accuracy":
            return float(skm.accuracy_score(y, predicted))
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=labels))


@pytest.mark.parametrize("name", list(MulticlassClassification.metrics))
@pytest.mark.parametrize("case", list(MULTICLASS_CASES))
def test_multiclass_metrics_equal_scikit_learns(multiclass, case, name):
    y, proba = MULTICLASS_CASES[case]
    ours = multiclass.metric(name)(y, proba)
    theirs = _sklearn_multiclass(name, y, proba)
    if np.isnan(theirs):
        assert np.isnan(ours), (case, name, ours)
    else:
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12), (case, name)


def test_a_missing_class_leaves_ovr_auc_undefined_and_the_others_defined(multiclass):
    y, proba = MULTICLASS_CASES["a-class-missing"]
    values = multiclass.all_metrics(y, proba)
    assert np.isnan(values["roc_auc_ovr"])
    assert all(np.isfinite(values[name]) for name in ("log_loss", "macro_f1", "accuracy"))


def test_multiclass_directions(multiclass):
    directions = {name: m.higher_is_better for name, m in multiclass.metrics.items()}
    assert directions == {"log_loss": False, "macro_f1": True, "accuracy": True, "roc_auc_ovr": True}
    assert multiclass.default_metric == "log_loss"


# -- regression metrics against scikit-learn -----------------------------------------------------------------------


def _regression_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(11)
    y = rng.normal(10, 30, 300)
    return {
        "noisy": (y, y + rng.normal(0, 10, 300)),
        "perfect": (y, y.copy()),
        "constant-prediction": (y, np.full(300, y.mean())),
        "constant-target": (np.full(50, 5.0), rng.normal(5, 1, 50)),
        "constant-target-predicted": (np.full(50, 5.0), np.full(50, 5.0)),
        "ties": (np.round(y, -1), np.round(y + rng.normal(0, 5, 300), -1)),
    }


REGRESSION_CASES = _regression_cases()
SKLEARN_REGRESSION = {
    "rmse": skm.root_mean_squared_error,
    "mae": skm.mean_absolute_error,
    "r2": skm.r2_score,
}


@pytest.mark.parametrize("name", list(Regression.metrics))
@pytest.mark.parametrize("case", list(REGRESSION_CASES))
def test_regression_metrics_equal_scikit_learns(regression, case, name):
    y, predicted = REGRESSION_CASES[case]
    assert regression.metric(name)(y, predicted) == pytest.approx(
        float(SKLEARN_REGRESSION[name](y, predicted)), rel=1e-12, abs=1e-12
    )


def test_regression_directions_and_a_ceiling(regression):
    rmse = regression.metric("rmse")
    assert rmse.higher_is_better is False and regression.metric("r2").higher_is_better is True
    assert rmse.clears(40.0, 60.0) and not rmse.clears(70.0, 60.0)
    assert rmse.improvement(40.0, 50.0) == 10.0


@pytest.mark.parametrize(("kind", "expected"), [("regression", "rmse"), ("multiclass", "log_loss")])
def test_the_kinds_default_metric_when_the_policy_names_none(tmp_path, kind, expected):
    raw = _multiclass_raw()
    if kind == "regression":
        raw["target"] = {"kind": "regression", "column": "arr_delay"}
    raw["promotion"]["metric"] = None
    path = tmp_path / "flights_delay.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert primary_metric(load_model_spec(path)).name == expected


# -- what each kind predicts and stores ----------------------------------------------------------------------------


def _flights_like(rows: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    delay = rng.normal(10, 40, rows)
    classes = np.select([delay <= 0, delay <= 15, delay <= 60], CLASSES[:3], CLASSES[3])
    return pd.DataFrame({"x": delay + rng.normal(0, 10, rows), "arr_delay": delay, "delay_class": classes})


def test_multiclass_labels_are_the_contracts_class_indices(multiclass):
    frame = pd.DataFrame({"delay_class": ["late", "early", None, "very_late"]})
    rows, labels, unlabelled = multiclass.labelled(frame)
    assert labels.tolist() == [2, 0, 3] and unlabelled == 1 and len(rows) == 3
    assert multiclass.classes == CLASSES


def test_multiclass_predictions_cover_every_class_even_one_never_trained_on(multiclass):
    from sklearn.linear_model import LogisticRegression

    frame = _flights_like()
    frame = frame[frame["delay_class"] != "very_late"]  # a class the model never sees
    model = LogisticRegression(max_iter=500).fit(frame[["x"]], multiclass.labels(frame))
    proba = multiclass.predict(model, frame[["x"]])
    assert proba.shape == (len(frame), 4)
    assert np.allclose(proba.sum(axis=1), 1) and np.all(proba[:, 3] == 0)

    values = multiclass.prediction_values(proba)
    assert [c.name for c in multiclass.prediction_columns()] == [
        *multiclass.probability_columns,
        "predicted_class",
    ]
    assert multiclass.probability_columns == ["proba_early", "proba_on_time", "proba_late", "proba_very_late"]
    stored = pd.DataFrame(values)
    assert np.array_equal(multiclass.stored_predictions(stored), proba)
    assert set(stored["predicted_class"]) <= set(CLASSES)
    assert list(stored["predicted_class"]) == list(np.asarray(CLASSES)[np.argmax(proba, axis=1)])
    assert multiclass.drift_prediction(proba) == list(stored["predicted_class"])


def test_regression_stores_and_reads_back_the_predicted_number(regression):
    from sklearn.linear_model import LinearRegression

    frame = _flights_like()
    model = LinearRegression().fit(frame[["x"]], regression.labels(frame))
    predicted = regression.predict(model, frame[["x"]])
    stored = pd.DataFrame(regression.prediction_values(predicted))
    assert [c.name for c in regression.prediction_columns()] == ["prediction"]
    assert np.array_equal(regression.stored_predictions(stored), predicted)
    assert regression.all_metrics(regression.labels(frame), predicted)["r2"] > 0.5
    figures = regression.label_figures(regression.labels(frame))
    assert set(figures) == {"target_mean", "target_std"}


def test_class_names_become_distinct_sql_names(tmp_path):
    raw = _multiclass_raw()
    raw["contract"]["columns"][-1]["allowed"] = ["On time", "on-time", "", "Very late!"]
    path = tmp_path / "flights_delay.yaml"
    path.write_text(yaml.safe_dump(raw))
    task = task_for(load_spec(path))
    assert task.probability_columns == ["proba_on_time", "proba_1", "proba_2", "proba_very_late"]


# -- Evidently's quality report of each kind -----------------------------------------------------------------------


def test_evidently_reports_multiclass_quality_on_the_tasks_frames(multiclass):
    y, proba = MULTICLASS_CASES["random"]
    frame = multiclass.quality_frame(y, proba)
    assert list(frame.columns) == [LABEL, *CLASSES] and set(frame[LABEL]) == set(CLASSES)
    figures = single_values(
        quality_snapshot(multiclass, frame, frame).dict(), multiclass.quality_metric_names
    )
    assert figures["accuracy"] == pytest.approx(multiclass.metric("accuracy")(y, proba))
    assert figures["log_loss"] == pytest.approx(multiclass.metric("log_loss")(y, proba), rel=1e-6)


def test_evidently_reports_regression_quality_on_the_tasks_frames(regression):
    y, predicted = REGRESSION_CASES["noisy"]
    frame = regression.quality_frame(y, predicted)
    assert list(frame.columns) == [LABEL, PREDICTION]
    figures = single_values(
        quality_snapshot(regression, frame, frame).dict(), regression.quality_metric_names
    )
    assert figures["rmse"] == pytest.approx(regression.metric("rmse")(y, predicted))
    assert figures["mae"] == pytest.approx(regression.metric("mae")(y, predicted))
    assert figures["r2"] == pytest.approx(regression.metric("r2")(y, predicted))


# -- specs that mix kinds fail, naming the file and the field ------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "metric", "expected"),
    [
        (
            {"kind": "regression", "column": "arr_delay"},
            "roc_auc",
            "'roc_auc' is not a metric of a regression",
        ),
        ({"kind": "multiclass", "column": "dest"}, None, "a multiclass target needs its classes"),
        ({"kind": "regression", "column": "carrier"}, None, "a regression target needs a numeric column"),
        ({"kind": "binary", "column": "arr_delay"}, None, "exactly one of 'threshold'"),
        ({"kind": "binary", "column": "origin", "positive_class": "SFO"}, None, "'SFO' is not among"),
        ({"kind": "ordinal", "column": "arr_delay"}, None, "target.kind must be one of binary, multiclass"),
    ],
)
def test_a_spec_that_mixes_kinds_fails_naming_file_and_field(tmp_path, target, metric, expected):
    promotion = {**yaml.safe_load(FLIGHTS.read_text())["promotion"], "metric": metric}
    path = _spec_file(tmp_path, target=target, promotion=promotion)
    with pytest.raises(ConfigError) as raised:
        load_model_spec(path)
    assert str(path) in str(raised.value) and expected in str(raised.value)


def test_a_binary_target_may_name_its_positive_class(tmp_path):
    path = _spec_file(tmp_path, target={"kind": "binary", "column": "origin", "positive_class": "JFK"})
    task = task_for(load_model_spec(path))
    labels = task.labels(pd.DataFrame({"origin": ["JFK", "EWR", "LGA", "JFK"]}))
    assert labels.tolist() == [1, 0, 0, 1] and task.describe() == "origin == 'JFK'"


def test_a_spec_without_a_kind_is_binary_as_before(tmp_path):
    raw = yaml.safe_load(FLIGHTS.read_text())
    raw["target"].pop("kind", None)
    path = tmp_path / "flights_delay.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert load_spec(path).target.kind == "binary"
