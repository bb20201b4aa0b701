"""Monitoring's pure parts: the window, label arrival, the figures read from real Evidently snapshots on small
frames, the report page, the partitions a score run covers, and the drift alert built from a summary."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from airloop.alerts import drift_alert
from airloop.core.settings import project_root
from airloop.core.spec import BinaryTarget, ModelSpec, MonitoringSpec
from airloop.model.task import LABEL, PREDICTION, BinaryClassification
from airloop.monitor.frames import labels_arrived
from airloop.monitor.monitor import MonitoringError, monitoring_window
from airloop.monitor.reports import drift_snapshot, quality_snapshot, summary_snapshot, write_report_page
from airloop.score.score import partitions_to_score, shadow_due
from airloop.vendor.evidently import data_quality, drift_figures, single_values

pytestmark = pytest.mark.unit

MODEL = "flights_delay"
NUMERIC = ["temp", "distance"]
CATEGORICAL = ["origin"]
FEATURES = [*NUMERIC, *CATEGORICAL]


def _frame(rows: int, seed: int, temp_shift: float = 0.0, origins=("EWR", "JFK", "LGA")) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "temp": rng.normal(40 + temp_shift, 10, rows),
            "distance": rng.gamma(4, 250, rows),
            "origin": rng.choice(list(origins), rows).astype(object),
            PREDICTION: rng.beta(2, 6, rows),
        }
    )


@pytest.fixture(scope="module")
def summer() -> dict:
    """Temperature moved by three standard deviations and a new airport appeared; distance stayed."""
    reference, current = _frame(3000, 0), _frame(2000, 1, temp_shift=30, origins=("EWR", "JFK", "LGA", "SWF"))
    current.loc[:99, "distance"] = np.nan
    kinds = {"numeric": NUMERIC, "categorical": CATEGORICAL}
    return {
        "drift": drift_snapshot(reference, current, MonitoringSpec(), **kinds).dict(),
        "summary": summary_snapshot(reference, current, **kinds).dict(),
    }


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    from airloop.model.context import load_model_spec

    return load_model_spec(project_root() / "config" / "models" / f"{MODEL}.yaml")


def test_window_is_the_complete_days_before_the_interval_end():
    window = monitoring_window(datetime(2013, 3, 3, tzinfo=UTC), 7, "@daily")
    assert (window.first, window.last, window.label) == ("2013-02-24", "2013-03-02", "2013-02-24..2013-03-02")
    assert window.partitions[0] == "2013-02-24" and len(window.partitions) == 7
    # A naive or ISO end is UTC; an end inside a day leaves that incomplete day out.
    late = monitoring_window("2013-03-03T06:00:00", 1, "@daily")
    assert late.partitions == ["2013-03-02"] and late.end == datetime(2013, 3, 3, 6, tzinfo=UTC)
    assert monitoring_window(datetime(2013, 3, 3), 2, "@daily").end == datetime(2013, 3, 3, tzinfo=UTC)
    # Other cadences: the hourly partitions of the last 6 hours; the whole weeks in the last 14 days; too short
    # a window for a cadence is an error naming both.
    hourly = monitoring_window("2013-03-03T06:30:00", 0.25, "@hourly")
    assert hourly.partitions == [f"2013-03-03T0{h}:00" for h in range(6)]
    assert monitoring_window(datetime(2013, 3, 5, tzinfo=UTC), 14, "@weekly").partitions == [
        "2013-02-17",
        "2013-02-24",
    ]
    with pytest.raises(
        MonitoringError, match=r"no whole partition of schedule '@monthly' lies in the 7 days"
    ):
        monitoring_window(datetime(2013, 3, 5, tzinfo=UTC), 7, "@monthly")
    # The window as the contracts carry it (XCom, the drift event).
    contract = window.contract()
    assert (contract.first, contract.last, contract.label) == ("2013-02-24", "2013-03-02", window.label)
    assert datetime.fromisoformat(contract.end) == datetime(2013, 3, 3, tzinfo=UTC)


def test_labels_arrive_label_delay_hours_after_the_event(spec: ModelSpec):
    end = datetime(2013, 3, 3, tzinfo=UTC)
    delay = timedelta(hours=spec.target.label_delay_hours)
    frame = pd.DataFrame(
        {
            spec.time_column: [
                end - delay - timedelta(hours=1),
                end - delay,
                end - delay + timedelta(minutes=1),
                end - delay - timedelta(days=1),
            ],
            spec.target.column: [20.0, -3.0, 45.0, None],
        }
    )
    assert labels_arrived(frame, spec, end).tolist() == [True, True, False, False]


def test_figures_from_a_drift_snapshot_name_method_score_threshold_and_verdict(summer):
    figures = drift_figures(summer["drift"], FEATURES, PREDICTION)
    by_column = {f.column: f for f in figures.features}
    assert list(by_column) == FEATURES
    temp, distance, origin = by_column["temp"], by_column["distance"], by_column["origin"]
    # More than 1,000 reference rows: Evidently's defaults are distances, drifted at 0.1.
    assert temp.method == "Wasserstein distance (normed)" and temp.threshold == 0.1
    assert temp.drifted and temp.score > 2.5
    assert not distance.drifted and distance.score < 0.1
    assert origin.method == "Jensen-Shannon distance" and origin.drifted
    assert figures.prediction is not None and figures.prediction.column == PREDICTION
    assert not figures.prediction.drifted
    quality = data_quality(summer["summary"])
    assert quality["rows"] == 2000 and quality["missing_share"]["distance"] == pytest.approx(0.05)
    assert quality["duplicated_rows"] == 0


def test_small_references_get_p_value_tests_and_their_verdicts_read_the_right_way():
    reference, current = _frame(500, 2), _frame(400, 3, temp_shift=8)
    policy = MonitoringSpec()
    snapshot = drift_snapshot(
        reference, current, policy, numeric=NUMERIC, categorical=CATEGORICAL, prediction=None
    )
    figures = drift_figures(snapshot.dict(), FEATURES, prediction=None)
    temp = figures.features[0]
    assert temp.method == "K-S p_value" and temp.threshold == 0.05
    assert temp.drifted and temp.score < 0.05
    assert figures.prediction is None


def test_the_policy_sets_methods_and_thresholds():
    # A method the policy names is kept as named (Evidently shows the display name of those it picks itself).
    policy = MonitoringSpec(num_method="psi", cat_method="chisquare", column_threshold=0.2)
    snapshot = drift_snapshot(
        _frame(1500, 4), _frame(1500, 5), policy, numeric=NUMERIC, categorical=CATEGORICAL
    )
    figures = drift_figures(snapshot.dict(), FEATURES, PREDICTION)
    assert [(f.method, f.threshold) for f in figures.features] == [
        ("psi", 0.2),
        ("psi", 0.2),
        ("chisquare", 0.2),
    ]
    assert figures.prediction is not None
    assert (figures.prediction.method, figures.prediction.threshold) == ("psi", 0.2)


def test_a_snapshot_without_drift_verdicts_or_a_feature_is_refused(summer):
    without_tests = {**summer["drift"], "tests": []}
    with pytest.raises(ValueError, match="has no verdict: run the report with include_tests"):
        drift_figures(without_tests, FEATURES, PREDICTION)
    with pytest.raises(ValueError, match="no drift figures for wind_speed"):
        drift_figures(summer["drift"], [*FEATURES, "wind_speed"], PREDICTION)


def test_classification_figures_and_the_report_page(tmp_path):
    task = BinaryClassification(BinaryTarget(column="arr_delay", threshold=15))
    rng = np.random.default_rng(6)
    labels = (rng.random(1200) < 0.25).astype("int64")
    scores = np.clip(0.25 + 0.3 * (labels - 0.25) + rng.normal(0, 0.15, 1200), 0, 1)
    frame = pd.DataFrame({LABEL: labels, PREDICTION: scores})
    snapshot = quality_snapshot(
        task, frame.iloc[:600].reset_index(drop=True), frame.iloc[600:].reset_index(drop=True)
    )
    figures = single_values(snapshot.dict(), task.quality_metric_names)
    assert set(figures) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    assert 0.7 < figures["roc_auc"] <= 1

    drift = drift_snapshot(
        _frame(1500, 7), _frame(1500, 8), MonitoringSpec(), numeric=NUMERIC, categorical=CATEGORICAL
    )
    page = write_report_page(
        tmp_path / "evidently" / "m" / "2013-07-07..2013-07-13.html",
        "m: drift <b>",
        [("Outcome", "drift"), ("Reasons", "a\nb")],
        [("Drift", drift), ("Quality", snapshot)],
    )
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</body></html>")
    assert "<title>m: drift &lt;b&gt;</title>" in text
    assert text.count("<iframe class='evidently-ui-iframe'") == 2 and "<h2>Quality</h2>" in text
    assert not list(page.parent.glob(".*.part"))


def test_asset_event_extras_of_a_run():
    from types import SimpleNamespace

    from airloop.airflow.tasks import asset_event_extras

    events = {"batches": [SimpleNamespace(extra={"partition": "2013-01-02"}), SimpleNamespace(extra=None)]}
    assert asset_event_extras(events) == [{"partition": "2013-01-02"}, {}]
    assert asset_event_extras(None) == [] and asset_event_extras({}) == []


def test_partitions_to_score_come_from_the_events_or_the_request():
    extras = [
        {"partition": "2013-01-03", "rows": 900},
        {"partition": "2013-01-02"},
        {"partition": "2013-01-03"},
        {},
    ]
    assert partitions_to_score(extras, None) == ["2013-01-02", "2013-01-03"]
    assert partitions_to_score(extras, ["2013-02-01", "2013-02-01"]) == ["2013-02-01"]
    assert partitions_to_score([], []) == []


def test_the_drift_alert_carries_the_figures_and_escapes_them():
    top = [
        {"column": "temp", "method": "Wasserstein distance (normed)", "score": 5.111, "threshold": 0.4},
        {"column": "<dewp>", "method": "Wasserstein distance (normed)", "score": 3.56, "threshold": 0.4},
    ]
    alert = drift_alert(
        "flights_delay",
        "2013-07-07..2013-07-13",
        champion_version="3",
        drift_share=7 / 17,
        drifted_features=7,
        features=17,
        threshold_share=0.3,
        top_features=top,
        prediction={
            "column": "prediction",
            "method": "Wasserstein distance (normed)",
            "score": 0.21,
            "threshold": 0.4,
        },
        quality={
            "metric": "roc_auc",
            "current": 0.6512,
            "baseline": 0.7011,
            "drop": 0.0499,
            "labelled_rows": 6012,
        },
        reasons=["7 of 17 features drifted (41%), at least 30% is drift"],
        links={"Drift report": "file:///r.html", "MLflow run": "http://mlflow/#/runs/1"},
    )
    assert (
        alert.subject == "[airloop] flights_delay: drift in 2013-07-07..2013-07-13: 41% of features drifted, "
        "roc_auc 0.651 vs 0.701"
    )
    for body in (alert.text, alert.slack_text):
        assert "41%: 7 of 17 features drifted (drift at 30%)" in body
        assert "temp: 5.111 (Wasserstein distance (normed), threshold 0.4)" in body
        assert "roc_auc 0.6512 on 6,012 labelled rows vs 0.7011 on the champion's holdout (-0.0499)" in body
    assert "&lt;dewp&gt;" in alert.html and "&lt;dewp&gt;" in alert.slack_text
    assert '<a href="http://mlflow/#/runs/1">MLflow run</a>' in alert.html
    assert "Drift report: file:///r.html" in alert.html  # not a web link: shown, never clickable


def test_partitions_to_score_include_what_the_champion_has_not_scored():
    extras = [{"partition": "2013-01-03"}]
    assert partitions_to_score(extras, None, ["2013-01-02", "2013-01-03"]) == ["2013-01-02", "2013-01-03"]
    # 2013-01-03 was scored by a run between its event and this run: its predictions stay those that served it.
    assert partitions_to_score(extras, None, ["2013-01-02"]) == ["2013-01-02"]
    assert partitions_to_score(extras, None, []) == []
    assert partitions_to_score(extras, ["2013-02-01"], ["2013-01-02"]) == ["2013-02-01"]


def test_unscored_partitions_follow_the_ledger_and_the_predictions(airloop_home):
    from airloop.local.demo.replay import day_frame
    from airloop.model.context import ModelContext
    from airloop.model.predictions import predictions_of
    from airloop.model.registry import CHAMPION
    from airloop.score.score import unscored_partitions
    from airloop.store.db import sync_table
    from airloop.store.ledger import PASSED, LedgerEntry, replace_partition
    from airloop.store.schema import ROW_INDEX, batches_table

    ctx = ModelContext.load(MODEL, airloop_home)
    engine = ctx.warehouse
    assert unscored_partitions(ctx) == []
    sync_table(engine, batches_table(ctx.spec))
    for day, checksum in ((date(2013, 1, 2), "a" * 64), (date(2013, 1, 3), "b" * 64)):
        entry = LedgerEntry(
            partition=day.isoformat(), status=PASSED, checksum=checksum, validation_result_id="r"
        )
        replace_partition(engine, ctx.spec, day_frame(day).head(5), entry)
    assert unscored_partitions(ctx) == ["2013-01-02", "2013-01-03"]
    table = predictions_of(ctx)
    row = {
        "partition": "2013-01-02",
        "alias": CHAMPION,
        ROW_INDEX: 0,
        "model": "m",
        "version": "1",
        "probability": 0.1,
        "predicted_label": False,
        "batch_checksum": "a" * 64,
        "scored_at": pd.Timestamp.now(tz="UTC").to_pydatetime(),
    }
    with engine.begin() as conn:
        conn.execute(table.insert(), [row, {**row, "partition": "2013-01-03", "batch_checksum": "stale"}])
    # 2013-01-03 was reloaded since it was scored (its checksum changed): it is unscored again.
    assert unscored_partitions(ctx) == ["2013-01-03"]


def test_a_challenger_is_scored_in_shadow_only_when_it_is_not_the_champion():
    assert shadow_due({"champion": "3", "challenger": "4"})
    assert shadow_due({"challenger": "1"})  # refused before any champion: still worth comparing
    assert not shadow_due({"champion": "3", "challenger": "3"})
    assert not shadow_due({"champion": "3"})
    assert not shadow_due({})
