"""The kind of model: binary classification's metrics (held equal to scikit-learn's), which way each improves, the
labels, what a prediction stores, and the spec check that keeps a policy's metric the kind's."""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from airloop.core.errors import ConfigError
from airloop.core.spec import load_spec, load_specs
from airloop.local.demo.replay import day_frame
from airloop.model import metrics
from airloop.model.context import load_model_spec, load_model_specs
from airloop.model.task import BinaryClassification, Metric, check_spec, primary_metric, task_for

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
FLIGHTS = ROOT / "config" / "models" / "flights_delay.yaml"

#: airloop's metric -> scikit-learn's (labels given, so that one class alone is still scored where it can be).
SKLEARN = {
    "roc_auc": skm.roc_auc_score,
    "average_precision": skm.average_precision_score,
    "log_loss": lambda y, p: skm.log_loss(y, p, labels=[0, 1]),
    "brier": lambda y, p: skm.brier_score_loss(y, p, labels=[0, 1]),
}


@pytest.fixture(scope="module")
def spec():
    return load_spec(FLIGHTS)


@pytest.fixture(scope="module")
def task(spec) -> BinaryClassification:
    found = task_for(spec)
    assert isinstance(found, BinaryClassification)
    return found


def _with_metric(spec, metric: str | None):
    return spec.model_copy(update={"promotion": spec.promotion.model_copy(update={"metric": metric})})


def _sklearn(name: str, y: np.ndarray, p: np.ndarray) -> tuple[float, bool]:
    """scikit-learn's value, and whether it warned that the value means nothing on this sample (ROC AUC of one
    class: UndefinedMetricWarning; average precision without positives: a UserWarning, and 0)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = float(SKLEARN[name](y, p))
    return value, any(issubclass(w.category, UndefinedMetricWarning | UserWarning) for w in caught)


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.4).astype(int)
    perfect_y = np.array([0, 0, 0, 1, 1])
    return {
        "random": (y, rng.random(500)),
        "many-ties": (y, np.round(rng.random(500), 1)),
        "ties-across-classes": (np.array([0, 1, 0, 1, 1, 0]), np.array([0.3, 0.3, 0.7, 0.7, 0.9, 0.1])),
        "all-tied": (y[:50], np.full(50, 0.3)),
        "rare-positives": ((rng.random(400) < 0.02).astype(int), rng.random(400)),
        "perfect": (perfect_y, np.array([0.0, 0.1, 0.2, 0.8, 1.0])),
        "inverted": (perfect_y, np.array([1.0, 0.9, 0.8, 0.2, 0.0])),
        "only-negatives": (np.zeros(20, dtype=int), rng.random(20)),
        "only-positives": (np.ones(20, dtype=int), rng.random(20)),
    }


CASES = _cases()


@pytest.mark.parametrize("name", list(BinaryClassification.metrics))
@pytest.mark.parametrize("case", list(CASES))
def test_every_metric_equals_scikit_learns(task, case, name):
    y, p = CASES[case]
    ours = task.metric(name)(y, p)
    theirs, undefined = _sklearn(name, y, p)
    if undefined:
        assert np.isnan(ours), f"{name} on {case}: scikit-learn finds it undefined, airloop gives {ours}"
    else:
        assert ours == pytest.approx(theirs, abs=1e-12, rel=1e-12)


def test_the_undefined_cases_are_the_single_class_ones(task):
    # Not every single-class sample is undefined: AP of positives alone is 1, log loss and Brier always exist.
    assert np.isnan(metrics.roc_auc(*(a.astype(float) for a in CASES["only-negatives"])))
    assert np.isnan(metrics.roc_auc(*(a.astype(float) for a in CASES["only-positives"])))
    assert np.isnan(metrics.average_precision(*(a.astype(float) for a in CASES["only-negatives"])))
    assert task.metric("average_precision")(*CASES["only-positives"]) == 1.0
    for case in ("only-negatives", "only-positives"):
        assert np.isfinite(task.metric("log_loss")(*CASES[case])) and np.isfinite(
            task.metric("brier")(*CASES[case])
        )


def test_perfect_and_inverted_scores_are_the_extremes(task):
    perfect, inverted = task.all_metrics(*CASES["perfect"]), task.all_metrics(*CASES["inverted"])
    assert perfect["roc_auc"] == perfect["average_precision"] == 1.0 and perfect["brier"] < 0.05
    assert inverted["roc_auc"] == 0.0 and inverted["brier"] > 0.8
    # Probabilities of exactly 0 and 1 are clipped: a confidently wrong row costs much, but not infinitely.
    assert np.isfinite(inverted["log_loss"]) and inverted["log_loss"] > 10 > perfect["log_loss"]
    eps = np.finfo(np.float64).eps
    assert task.metric("log_loss")([1], [0.0]) == pytest.approx(-np.log(eps))


def test_all_metrics_are_every_metric_on_any_array_like(task):
    y, p = CASES["many-ties"]
    every = task.all_metrics(list(y), pd.Series(p))
    assert set(every) == {"roc_auc", "average_precision", "log_loss", "brier"}
    for name, value in every.items():
        assert value == pytest.approx(_sklearn(name, y, p)[0], abs=1e-12)


@pytest.mark.parametrize(
    ("name", "higher_is_better"),
    [("roc_auc", True), ("average_precision", True), ("log_loss", False), ("brier", False)],
)
def test_which_way_each_metric_improves(task, name, higher_is_better):
    assert task.metric(name).higher_is_better is higher_is_better
    assert task.metric(name).name == name


def test_improvement_and_floor_of_a_higher_is_better_metric(task):
    auc = task.metric("roc_auc")
    assert auc.improvement(0.75, 0.70) == pytest.approx(0.05)
    assert auc.improvement(0.70, 0.75) == pytest.approx(-0.05)
    assert auc.clears(0.61, 0.60) and auc.clears(0.60, 0.60) and not auc.clears(0.59, 0.60)


def test_improvement_and_ceiling_of_a_loss(task):
    loss = task.metric("log_loss")
    assert loss.improvement(0.40, 0.45) == pytest.approx(0.05)  # lower is better: a positive improvement
    assert loss.improvement(0.45, 0.40) == pytest.approx(-0.05)
    # A loss's floor is a ceiling: values at or below it clear it.
    assert loss.clears(0.59, 0.60) and loss.clears(0.60, 0.60) and not loss.clears(0.61, 0.60)


def test_a_metric_is_called_with_float_arrays():
    seen = []

    def compute(y, p):
        seen.append((y.dtype, p.dtype))
        return 0.0

    Metric("m", compute, higher_is_better=True, label="M")([0, 1], [1, 0])
    assert seen == [(np.float64, np.float64)]


def test_labels_are_the_target_above_its_threshold(task, spec):
    assert spec.target.threshold == 15
    rows = pd.DataFrame({"arr_delay": [-5.0, 15.0, 15.5, 300.0, 14.99]})
    assert task.labels(rows).tolist() == [0, 0, 1, 1, 0]  # strictly above: 15 is on time
    assert task.labels(rows).dtype == "int64"
    assert task.describe() == "arr_delay > 15"


def test_rows_without_a_target_are_excluded_and_counted(task):
    frame = day_frame(date(2013, 3, 1)).head(10).copy()
    frame.loc[[0, 3], "arr_delay"] = np.nan
    frame.loc[1, "arr_delay"] = 15.0  # not > 15
    frame.loc[2, "arr_delay"] = 15.5
    rows, labels, unlabelled = task.labelled(frame)
    assert unlabelled == 2 and len(rows) == len(labels) == 8
    assert labels.iloc[0] == 0 and labels.iloc[1] == 1
    assert set(labels.unique()) <= {0, 1}
    assert labels.name == "label" and list(rows.index) == list(range(8))
    assert rows["arr_delay"].notna().all()


def test_label_figures_give_the_positive_rate(task):
    assert task.label_figures(pd.Series([0, 1, 1, 0])) == {"positive_rate": 0.5}
    assert task.label_figures(np.array([1, 1, 1, 0])) == {"positive_rate": 0.75}


def test_prediction_values_are_the_probability_and_the_label_at_one_half(task):
    values = task.prediction_values(np.array([0.1, 0.4999, 0.5, 0.93]))
    assert set(values) == {"probability", "predicted_label"} and task.score_column == "probability"
    np.testing.assert_array_equal(values["probability"], [0.1, 0.4999, 0.5, 0.93])
    assert values["probability"].dtype == np.float64
    assert values["predicted_label"].tolist() == [False, False, True, True]


def test_prediction_columns_are_new_objects_each_time(task):
    first, second = task.prediction_columns(), task.prediction_columns()
    assert [c.name for c in first] == ["probability", "predicted_label"]
    assert all(c.nullable is False for c in first)
    assert all(a is not b for a, b in zip(first, second, strict=True))


def test_predict_is_the_positive_class_probability(task):
    class Fitted:
        def predict_proba(self, features):
            return np.column_stack([1 - features["x"], features["x"]])

    np.testing.assert_array_equal(task.predict(Fitted(), pd.DataFrame({"x": [0.2, 0.9]})), [0.2, 0.9])


def test_the_primary_metric_is_the_policys_else_the_kinds_default(spec):
    assert primary_metric(spec).name == "roc_auc"
    assert primary_metric(_with_metric(spec, "brier")).name == "brier"
    assert primary_metric(_with_metric(spec, None)).name == BinaryClassification.default_metric == "roc_auc"
    assert primary_metric(spec.model_copy(update={"promotion": None})).name == "roc_auc"


@pytest.mark.parametrize("metric", [None, "roc_auc", "average_precision", "log_loss", "brier"])
def test_check_spec_accepts_the_kinds_metrics(spec, metric):
    check_spec(_with_metric(spec, metric), FLIGHTS)
    check_spec(spec.model_copy(update={"promotion": None}), FLIGHTS)


def test_check_spec_refuses_another_kinds_metric_naming_file_and_field(spec, tmp_path):
    path = tmp_path / "flights_delay.yaml"
    with pytest.raises(ConfigError) as err:
        check_spec(_with_metric(spec, "rmse"), path)
    message = str(err.value)
    assert message.startswith(f"{path}: field 'promotion.metric': 'rmse' is not a metric of a binary model")
    assert "roc_auc, average_precision, log_loss, brier" in message


def test_a_spec_with_another_kinds_metric_does_not_load(tmp_path):
    raw = yaml.safe_load(FLIGHTS.read_text())
    raw["promotion"]["metric"] = "accuracy"
    path = tmp_path / "flights_delay.yaml"
    path.write_text(yaml.safe_dump(raw))
    # The schema alone accepts any name: the kind of model decides.
    assert load_spec(path).promotion.metric == "accuracy"
    with pytest.raises(ConfigError, match=r"flights_delay\.yaml: field 'promotion\.metric': 'accuracy'"):
        load_model_spec(path)
    folder = load_model_specs(tmp_path)
    assert folder.specs == [] and len(folder.errors) == 1 and str(path) in str(folder.errors[0])
    assert load_specs(tmp_path).errors == []
