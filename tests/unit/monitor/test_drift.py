"""The drift decision on hand-made figures: every way to reach no decision or no drift first, then drift."""

from __future__ import annotations

import json
import math

import pytest

from airloop.core.contracts import ColumnDrift, QualityFigures
from airloop.core.spec import MonitoringSpec
from airloop.monitor.drift import DriftDecision, DriftFigures, drift_decision

pytestmark = pytest.mark.unit

FEATURES = 10


def _policy(**overrides) -> MonitoringSpec:
    return MonitoringSpec(**{"drift_share": 0.3, "min_rows": 1000, "max_quality_drop": 0.05, **overrides})


def _drift(column: str, method: str, score: float, threshold: float, drifted: bool) -> ColumnDrift:
    return ColumnDrift(column=column, method=method, score=score, threshold=threshold, drifted=drifted)


def _column(
    name: str, drifted: bool, score: float | None = None, method: str = "Wasserstein distance (normed)"
) -> ColumnDrift:
    return _drift(name, method, score if score is not None else (0.5 if drifted else 0.02), 0.1, drifted)


def _features(drifted: int, total: int = FEATURES) -> list[ColumnDrift]:
    return [_column(f"f{i}", i < drifted) for i in range(total)]


def _quality(
    current: float | None = 0.70,
    baseline: float | None = 0.71,
    rows: int = 5000,
    metric: str = "roc_auc",
    higher_is_better: bool = True,
) -> QualityFigures:
    return QualityFigures(
        metric=metric,
        higher_is_better=higher_is_better,
        labelled_rows=rows,
        current=current,
        baseline=baseline,
    )


def _figures(
    drifted: int = 0, *, current_rows: int = 6000, reference_rows: int = 50_000, **kwargs
) -> DriftFigures:
    kwargs.setdefault("quality", _quality())
    return DriftFigures(current_rows, reference_rows, _features(drifted), **kwargs)


def test_too_few_current_rows_is_no_decision_even_when_everything_drifted():
    decision = drift_decision(_figures(drifted=FEATURES, current_rows=999), _policy())
    assert (decision.decided, decision.drifted, decision.outcome) == (False, False, "no decision")
    assert decision.reasons == ["only 999 current rows (fewer than min_rows 1,000): no decision"]


def test_too_few_reference_rows_is_no_decision():
    decision = drift_decision(_figures(drifted=FEATURES, reference_rows=10), _policy())
    assert not decision.decided and "only 10 reference rows" in decision.reasons[0]


def test_no_drift_figures_is_no_decision():
    figures = DriftFigures(current_rows=6000, reference_rows=50_000, features=[], quality=_quality(0.2, 0.8))
    decision = drift_decision(figures, _policy())
    assert not decision.decided and decision.reasons == ["no feature drift figures: no decision"]


def test_missing_labels_leave_quality_unjudged_and_do_not_block_feature_drift():
    decision = drift_decision(_figures(drifted=0, quality=None), _policy())
    assert decision.decided and not decision.drifted
    assert "quality not judged: no labelled rows" in decision.reasons


@pytest.mark.parametrize(
    ("quality", "expected"),
    [
        (_quality(current=0.40, rows=999), "only 999 rows with labels (fewer than min_rows 1,000)"),
        (_quality(current=0.40, baseline=None), "the champion has no holdout roc_auc"),
        (_quality(current=None), "roc_auc is undefined on the labelled rows"),
    ],
)
def test_quality_is_not_judged_without_enough_labels_a_baseline_or_a_defined_metric(quality, expected):
    decision = drift_decision(_figures(drifted=0, quality=quality), _policy())
    assert decision.decided and not decision.drifted
    assert any(r == f"quality not judged: {expected}" for r in decision.reasons), decision.reasons


def test_share_one_feature_below_the_threshold_is_no_drift():
    decision = drift_decision(_figures(drifted=2), _policy(drift_share=0.3))
    assert decision.decided and not decision.drifted and decision.outcome == "no drift"
    assert decision.reasons[0] == "2 of 10 features drifted (20%), below 30%: f0 0.500, f1 0.500"
    assert decision.evidence["features_needed"] == 3


def test_share_exactly_on_the_threshold_is_drift():
    decision = drift_decision(_figures(drifted=3), _policy(drift_share=0.3))
    assert decision.drifted and decision.outcome == "drift"
    assert decision.evidence["features_needed"] == 3
    assert decision.reasons[0].startswith("3 of 10 features drifted (30%), at least 30% is drift")


def test_share_on_the_threshold_is_drift_despite_floating_point():
    # 0.28 * 25 is 7.000000000000001: counted exactly, 7 drifted features of 25 are enough.
    figures = DriftFigures(6000, 50_000, _features(7, total=25), quality=_quality())
    decision = drift_decision(figures, _policy(drift_share=0.28))
    assert decision.drifted and decision.evidence["features_needed"] == 7


def test_share_that_is_not_a_whole_number_of_features_rounds_up():
    figures = DriftFigures(6000, 50_000, _features(5, total=17), quality=_quality())
    assert not drift_decision(figures, _policy(drift_share=0.3)).drifted  # 5/17 = 29.4 %
    figures = DriftFigures(6000, 50_000, _features(6, total=17), quality=_quality())
    assert drift_decision(figures, _policy(drift_share=0.3)).drifted


def test_quality_drop_just_within_the_limit_is_no_drift():
    decision = drift_decision(_figures(quality=_quality(current=0.661, baseline=0.71)), _policy())
    assert not decision.drifted
    assert any(r.startswith("quality held (drop 0.0490, at most 0.05)") for r in decision.reasons)


def test_quality_drop_beyond_the_limit_is_drift_without_feature_drift():
    decision = drift_decision(_figures(drifted=0, quality=_quality(current=0.60, baseline=0.71)), _policy())
    assert decision.drifted
    assert any(r.startswith("quality dropped by 0.1100 (more than 0.05)") for r in decision.reasons)
    assert decision.evidence["quality"]["drop"] == pytest.approx(0.11)


def test_for_a_loss_a_higher_value_is_the_drop():
    better = _quality(current=0.40, baseline=0.45, metric="log_loss", higher_is_better=False)
    worse = _quality(current=0.52, baseline=0.45, metric="log_loss", higher_is_better=False)
    assert better.drop == pytest.approx(-0.05) and worse.drop == pytest.approx(0.07)
    assert not drift_decision(_figures(quality=better), _policy()).drifted
    assert drift_decision(_figures(quality=worse), _policy()).drifted
    # The direction is the metric's, not its name's: the same figures for a score are an improvement.
    assert _quality(current=0.52, baseline=0.45, metric="log_loss").drop == pytest.approx(-0.07)


def test_prediction_drift_is_reported_but_decides_nothing():
    prediction = _drift("prediction", "Wasserstein distance (normed)", 0.9, 0.1, True)
    decision = drift_decision(_figures(drifted=0, prediction=prediction), _policy())
    assert not decision.drifted
    assert "predictions drifted (Wasserstein distance (normed) 0.900, threshold 0.1)" in decision.reasons


def test_drifted_features_rank_by_distance_past_the_threshold_whichever_way_the_method_counts():
    features = [
        _drift("small_distance", "Wasserstein distance (normed)", 0.15, 0.1, True),
        _drift("tiny_p_value", "K-S p_value", 0.0001, 0.05, True),
        _drift("large_distance", "Jensen-Shannon distance", 0.9, 0.1, True),
        _drift("zero_p_value", "chi-square p_value", 0.0, 0.05, True),
        _drift("calm", "K-S p_value", 0.6, 0.05, False),
    ]
    figures = DriftFigures(6000, 50_000, features, quality=_quality())
    assert [f.column for f in figures.drifted_features] == [
        "zero_p_value",
        "tiny_p_value",
        "large_distance",
        "small_distance",
    ]
    assert math.isinf(features[3].severity) and features[2].severity == pytest.approx(9)
    assert figures.drift_share == pytest.approx(0.8)


def test_the_decision_and_figures_survive_json():
    figures = _figures(drifted=4, prediction=_column("prediction", False))
    assert DriftFigures.from_dict(json.loads(json.dumps(figures.as_dict()))) == DriftFigures(
        figures.current_rows,
        figures.reference_rows,
        list(figures.features),
        figures.prediction,
        figures.quality,
    )
    decision = drift_decision(figures, _policy())
    data = json.loads(json.dumps(decision.as_dict()))
    assert data["outcome"] == "drift" and data["drifted"] and data["decided"]
    assert [f["column"] for f in data["evidence"]["top_features"]] == ["f0", "f1", "f2", "f3"]
    assert DriftDecision(**{k: v for k, v in data.items() if k != "outcome"}) == decision
