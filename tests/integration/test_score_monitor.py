"""The score and monitor DAGs run for real with ``dag.test()`` on real 2013 flights, with a real MLflow server and
a real alert catcher (SMTP server and webhook receiver).

A champion is trained on January-February (the spec copy trains with a two-trial budget) straight from a warehouse
seeded as ingestion leaves it. Late February and a week of July are scored; monitoring late February finds no
drift, monitoring July finds drift in the weather, records it, emits the drift Asset and alerts by e-mail and
Slack with the figures. The spec copy sets the per-column threshold the flights data needs: with Evidently's
default (normed Wasserstein distance 0.1) every week of 2013 drifts against January-February, weather being
what it is (see the README's monitoring section).
"""

from __future__ import annotations

import importlib.util
import json
import time
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from asset_events import asset_event_extras
from mlflow_server import MlflowServer

from airloop.core.contracts import MonitorResult
from airloop.core.events import DriftHandledPayload, EventKind
from airloop.local.demo.replay import day_frame, days
from airloop.model.context import ModelContext
from airloop.model.predictions import predictions_of
from airloop.monitor.monitor import last_monitoring, mark_drift_handled, open_drift_events, record_drift
from airloop.promote.promote import evaluate_gate, promote_challenger
from airloop.store.db import open_warehouse, sync_table
from airloop.store.events import events_of
from airloop.store.ledger import LedgerEntry, partition_row_count, replace_partition
from airloop.store.monitoring import monitoring_history, store_result
from airloop.store.predictions import partitions_scored_by
from airloop.store.schema import batches_table
from airloop.train.train import train_challenger

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL = "flights_delay"
TRAINING = list(days(date(2013, 1, 1), date(2013, 2, 28)))
LATE_FEBRUARY = [d.isoformat() for d in days(date(2013, 2, 24), date(2013, 2, 28))]
JULY = [d.isoformat() for d in days(date(2013, 7, 7), date(2013, 7, 13))]
WEATHER = {"temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"}


def _edit_spec(models_dir: Path) -> None:
    path = models_dir / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["training"]["params"]["max_iter"] = 60
    raw["training"]["search"].update(trials=2, timeout_minutes=2)
    # Weekly weather never matches a seven-week average: Evidently's default of 0.1 flags every week of 2013.
    raw["monitoring"]["column_threshold"] = 0.4
    path.write_text(json.dumps(raw, default=str))


def _load(engine, spec, day: date) -> None:
    entry = LedgerEntry(
        partition=day.isoformat(),
        status="passed",
        checksum=f"seed-{day.isoformat()}".ljust(64, "0"),
        validation_result_id=f"{MODEL}-{day.isoformat()}",
        files=["flights.parquet"],
    )
    replace_partition(engine, spec, day_frame(day), entry)


@pytest.fixture
def stack(airflow_db, airloop_home, models_dir, catcher, tmp_path, monkeypatch):
    """Two months of flights and a week of July in the warehouse, a real MLflow server, the spec copy."""
    from mlflow import MlflowClient

    from airloop.core.settings import settings

    _edit_spec(models_dir)
    airloop_home.home.mkdir(parents=True)
    with MlflowServer(
        f"sqlite:///{tmp_path}/mlflow.db", tmp_path / "artifacts", tmp_path / "mlflow.log"
    ) as server:
        monkeypatch.setenv("AIRLOOP_MLFLOW_TRACKING_URI", server.url)
        settings.cache_clear()
        spec = ModelContext.load(MODEL).spec
        engine = open_warehouse(settings().warehouse_url)
        sync_table(engine, batches_table(spec))
        started = time.perf_counter()
        for day in [*TRAINING, *(date.fromisoformat(p) for p in JULY)]:
            _load(engine, spec, day)
        print(f"warehouse seeded: {time.perf_counter() - started:.1f} s")
        yield engine, spec, MlflowClient(server.url), catcher
        settings.cache_clear()


def _dag(name: str, retries: int | None = None):
    from airloop.core.settings import settings

    settings.cache_clear()
    module_spec = importlib.util.spec_from_file_location(f"{name}_dags", ROOT / "dags" / f"{name}.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    dag = getattr(module, f"{MODEL}_{name}")
    if retries is not None:
        for task in dag.tasks:
            task.retries = retries
    return dag


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def _timed(label: str, run):
    started = time.perf_counter()
    result = run()
    print(f"{label}: {time.perf_counter() - started:.1f} s")
    return result


def _predictions(engine, alias: str | None = None) -> list[dict]:
    table = sa.Table(f"{MODEL}_predictions", sa.MetaData(), autoload_with=engine)
    query = sa.select(table)
    if alias:
        query = query.where(table.c.alias == alias)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def _monitor(week_end: date):
    # A manual run monitors the last complete interval before its logical date: the week ending then.
    at = datetime(week_end.year, week_end.month, week_end.day, tzinfo=UTC)
    return _timed(f"monitor DAG, week before {week_end}", lambda: _dag("monitor").test(logical_date=at))


def test_score_and_monitor_real_flights(stack):
    from airloop.core.settings import settings

    engine, spec, client, catcher = stack

    # A task that fails for good alerts, here before any model exists: a partition that was never ingested.
    failed = _dag("score", retries=0).test(run_conf={"partitions": ["2013-05-01"]})
    assert failed.state == "failed" and _states(failed)["score_champion"] == "failed"
    subjects = [m["Subject"] for m in catcher.emails()]
    assert any("task flights_delay_score.score_champion failed: ScoringError" in s for s in subjects), (
        subjects
    )
    assert any("2013-05-01 (not ingested)" in h["text"] for h in catcher.webhooks())
    failure_alerts = len(catcher.emails())

    ctx = ModelContext.load(MODEL)
    trained = _timed("train + register", lambda: train_challenger(ctx, window_end="2013-02-28"))
    gate = evaluate_gate(ctx, trained)
    assert promote_challenger(ctx, gate).promoted
    assert dict(client.get_registered_model(MODEL).aliases) == {"challenger": "1", "champion": "1"}

    # Scoring: the champion's version on every prediction; the challenger is the champion, so no shadow.
    partitions = [*LATE_FEBRUARY, *JULY]
    for day in LATE_FEBRUARY:
        assert partition_row_count(engine, spec, day) > 0
    scored = _timed("score DAG", lambda: _dag("score").test(run_conf={"partitions": partitions}))
    assert scored.state == "success"
    assert _states(scored) == {
        "score_champion": "success",
        "score_challenger": "skipped",
        "alert_unrecorded_champion": "skipped",
    }
    rows = _predictions(engine)
    # What a retry of score_champion adds to its choice (the partitions scored by an earlier try of its run).
    table = predictions_of(ModelContext.load(MODEL))
    assert partitions_scored_by(engine, table, "champion", scored.run_id) == set(partitions)
    assert partitions_scored_by(engine, table, "challenger", scored.run_id) == set()
    expected = sum(partition_row_count(engine, spec, p) for p in partitions)
    assert len(rows) == expected
    assert {(r["alias"], r["version"], r["model"]) for r in rows} == {("champion", "1", MODEL)}
    assert {r["partition"] for r in rows} == set(partitions)
    assert all(0 <= r["probability"] <= 1 and r["predicted_label"] == (r["probability"] >= 0.5) for r in rows)

    # A challenger that differs from the champion is scored in shadow; re-scoring a partition adds no rows.
    copy = client.create_model_version(MODEL, f"models:/{MODEL}/1", run_id=trained.run_id)
    client.set_registered_model_alias(MODEL, "challenger", copy.version)
    again = _dag("score").test(run_conf={"partitions": [JULY[0]]})
    assert _states(again)["score_challenger"] == "success"
    shadow = _predictions(engine, "challenger")
    assert {(r["partition"], r["version"]) for r in shadow} == {(JULY[0], copy.version)}
    champion_rows = _predictions(engine, "champion")
    assert len(champion_rows) == expected
    keys = [(r["partition"], r["row_index"]) for r in champion_rows]
    assert len(set(keys)) == len(keys)
    assert len([k for k in keys if k[0] == JULY[0]]) == partition_row_count(engine, spec, JULY[0])

    # The champion alias moved by hand in the registry (not by the gate, promote or rollback) is not followed:
    # the recorded champion goes on scoring, and the move is recorded and alerted, each once.
    client.set_registered_model_alias(MODEL, "champion", copy.version)
    moved = _dag("score").test(run_conf={"partitions": [JULY[0]]})
    assert _states(moved) == {
        "score_champion": "success",
        "alert_unrecorded_champion": "success",
        "score_challenger": "skipped",
    }
    assert {r["version"] for r in _predictions(engine, "champion") if r["partition"] == JULY[0]} == {"1"}
    [noticed] = events_of(engine, MODEL, [EventKind.CHAMPION_UNRECORDED])
    assert (noticed.payload.registry_version, noticed.payload.recorded_version) == (copy.version, "1")
    [mail] = [m for m in catcher.emails() if "moved outside airloop" in m["Subject"]]
    assert f"to v{copy.version}" in mail["Subject"]
    assert any("scoring serves v1" in h["text"] for h in catcher.webhooks())
    again = _dag("score").test(run_conf={"partitions": [JULY[0]]})
    assert _states(again)["alert_unrecorded_champion"] == "skipped"
    assert len(events_of(engine, MODEL, [EventKind.CHAMPION_UNRECORDED])) == 1
    assert len([m for m in catcher.emails() if "moved outside airloop" in m["Subject"]]) == 1
    client.set_registered_model_alias(MODEL, "champion", "1")

    # Late February: no drift, so nothing is recorded or sent; the figures, report and MLflow run exist.
    quiet = _monitor(date(2013, 3, 3))
    assert quiet.state == "success"
    states = _states(quiet)
    assert states["monitor_window"] == "success"
    assert states["alert_drift"] == "skipped"
    assert asset_event_extras(f"x-airloop://{MODEL}/drift", quiet.run_id) == []  # the alias emits nothing
    february = last_monitoring(engine, MODEL)
    print(f"late February: {february['reasons']}")
    assert (february["window_first"], february["window_last"]) == ("2013-02-24", "2013-03-02")
    assert february["outcome"] == "no drift" and february["champion_version"] == "1"
    assert february["current_rows"] == sum(partition_row_count(engine, spec, p) for p in LATE_FEBRUARY)
    assert february["labelled_rows"] > 0.9 * february["current_rows"]
    assert february["drift_share"] < 0.3
    assert open_drift_events(engine, MODEL) == []
    assert len(catcher.emails()) == failure_alerts + 1  # and the moved alias's alert

    # July: drift in the weather, recorded, announced by the Asset and by both channels.
    summer = _monitor(date(2013, 7, 14))
    assert summer.state == "success", _states(summer)
    assert set(_states(summer).values()) == {"success"}
    july = last_monitoring(engine, MODEL)
    print(f"July: {july['reasons']}")
    assert july["outcome"] == "drift" and july["drifted"] and july["drift_share"] >= 0.3
    figures = july["figures"]
    top = sorted((f for f in figures["features"] if f["drifted"]), key=lambda f: -f["score"] / f["threshold"])
    assert WEATHER & {f["column"] for f in top[:3]}, top
    assert {f["method"] for f in figures["features"]} <= {
        "Wasserstein distance (normed)",
        "Jensen-Shannon distance",
    }
    # Labels arrive 24 h after departure: the window's last day is mostly unlabelled at its end.
    assert 0 < july["labelled_rows"] < july["current_rows"]
    assert figures["quality"]["labelled_rows"] == july["labelled_rows"]
    assert july["quality_metric"] == "roc_auc" and july["quality_baseline"] is not None

    [event] = open_drift_events(engine, MODEL)
    assert event.payload.window.first == "2013-07-07"
    [asset_extra] = asset_event_extras(f"x-airloop://{MODEL}/drift", summer.run_id)
    assert asset_extra["event_id"] == event.id and asset_extra["window"] == "2013-07-07..2013-07-13"

    # The report: one complete page, kept under reports_dir and logged to the monitoring run in MLflow.
    report = Path(july["report_path"])
    assert report.is_relative_to(settings().reports_dir / "evidently" / MODEL)
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</body></html>")
    assert page.count("<iframe class='evidently-ui-iframe'") == 3  # drift, data quality, classification
    run = client.get_run(july["mlflow_run_id"])
    assert run.data.tags["airloop.role"] == "monitoring" and run.data.tags["airloop.drift"] == "drift"
    assert run.data.metrics["drift/share"] == pytest.approx(july["drift_share"])
    assert [a.path for a in client.list_artifacts(run.info.run_id, "evidently")] == [
        f"evidently/{report.name}"
    ]

    # The alert, by e-mail and Slack, with the figures and the links.
    [mail] = [m for m in catcher.emails() if "drift in 2013-07-07..2013-07-13" in m["Subject"]]
    [hook] = [h for h in catcher.webhooks() if "has drifted" in h["text"]]
    share = f"{july['drift_share']:.0%}: {july['drifted_features']} of {july['features']} features drifted"
    body = mail.get_body(("html",)).get_content()
    for text in (body, hook["text"]):
        assert share in text
        assert f"{top[0]['column']}: {top[0]['score']:.3f}" in text
        assert "labelled rows vs" in text
        assert july["mlflow_run_url"] in text
        assert report.as_uri() in text

    # Monitoring July again replaces its row, keeps one drift event and sends nothing twice.
    again = _monitor(date(2013, 7, 14))
    assert again.state == "success"
    assert [r["window_first"] for r in monitoring_history(engine, MODEL)] == ["2013-07-07", "2013-02-24"]
    assert len(open_drift_events(engine, MODEL)) == 1
    assert len([m for m in catcher.emails() if "drift in" in m["Subject"]]) == 1


@pytest.mark.parametrize("warehouse_url", ["sqlite", "postgresql"], indirect=True)
def test_monitoring_rows_and_drift_events_are_written_once_per_window(warehouse_url, models_dir):
    ctx = ModelContext.load(MODEL)
    engine = ctx.warehouse
    row = {
        "model": MODEL,
        "window_first": "2013-07-07",
        "window_last": "2013-07-13",
        "champion_version": "1",
        "outcome": "drift",
        "drifted": True,
        "current_rows": 6000,
        "reference_rows": 45000,
        "labelled_rows": 5200,
        "reasons": json.dumps(["7 of 17 features drifted"]),
        "figures": json.dumps({"features": []}),
    }
    store_result(engine, row)
    second = store_result(engine, {**row, "champion_version": "2"})
    [kept] = monitoring_history(engine, MODEL)
    assert (kept["id"], kept["champion_version"]) == (second, "2")
    assert kept["reasons"] == ["7 of 17 features drifted"]

    result = MonitorResult.model_validate(_drifted_result())
    recorded = record_drift(ctx, result, airflow_run_id="r1")
    assert recorded.new and record_drift(ctx, result, airflow_run_id="r2").event_id == recorded.event_id
    [event] = open_drift_events(engine, MODEL)
    assert event.payload.airflow_run_id == "r1"
    handled = DriftHandledPayload(
        model=MODEL,
        outcome="promoted",
        version="2",
        champion_before="1",
        reasons=[],
        drift_event_id=event.id,
        window="2013-07-07..2013-07-13",
        train_run_id="retrain__r1",
        window_last="2013-07-13",
    )
    assert mark_drift_handled(engine, MODEL, handled)
    assert not mark_drift_handled(engine, MODEL, handled)
    assert open_drift_events(engine, MODEL) == []
    assert last_monitoring(engine, "another_model") is None


def _drifted_result(first: str = "2013-07-07", last: str = "2013-07-13") -> dict:
    return {
        "model": MODEL,
        "monitored": True,
        "window": {"first": first, "last": last},
        "champion_version": "1",
        "outcome": "drift",
        "drifted": True,
        "decided": True,
        "reasons": ["7 of 17 features drifted (41%), at least 30% is drift: temp 5.111"],
        "drift": {
            "share": 7 / 17,
            "drifted_features": 7,
            "features": 17,
            "threshold_share": 0.3,
            "top": [
                {
                    "column": "temp",
                    "method": "Wasserstein distance (normed)",
                    "score": 5.111,
                    "threshold": 0.4,
                    "drifted": True,
                }
            ],
        },
        "prediction": None,
        "quality": None,
        "report_url": "file:///reports/r.html",
        "mlflow_run_url": "http://127.0.0.1:5000/#/experiments/1/runs/abc",
    }


def test_a_failing_channel_is_retried_alone_and_reported(airloop_home, models_dir, catcher, monkeypatch):
    """Slack is down while the drift alert goes out: e-mail is delivered and recorded, the task fails naming
    Slack, the retry sends Slack only, the failure alert reports the outage by e-mail, and the drift event
    written before stays open."""
    from types import SimpleNamespace

    from airloop.airflow import alerting
    from airloop.airflow.notify import AlertDeliveryError

    ctx = ModelContext.load(MODEL)
    result = MonitorResult.model_validate(_drifted_result())
    record_drift(ctx, result, airflow_run_id="r1")
    ti = SimpleNamespace(
        dag_id=f"{MODEL}_monitor",
        task_id="alert_drift",
        run_id="r1",
        try_number=1,
        map_index=-1,
        log_url="http://a/l",
    )
    context = {"ti": ti, "task": SimpleNamespace(upstream_task_ids={"monitor_window"})}
    working_slack = json.loads(catcher.slack_connection())
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRLOOP_SLACK", json.dumps({**working_slack, "host": "127.0.0.1:9/services"})
    )

    with pytest.raises(AlertDeliveryError, match="not delivered by slack"):
        alerting.alert_drift(ctx, result, context)
    assert len(catcher.emails()) == 1 and catcher.webhooks() == []

    # The retry: Slack is back, and only Slack is sent.
    monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_SLACK", json.dumps(working_slack))
    assert [r["channel"] for r in alerting.alert_drift(ctx, result, context)] == ["slack"]
    assert len(catcher.emails()) == 1 and "temp: 5.111" in catcher.webhooks()[0]["text"]

    # Had the retries run out, the failure alert names the channel on the channels that work.
    monkeypatch.setenv(
        "AIRFLOW_CONN_AIRLOOP_SLACK", json.dumps({**working_slack, "host": "127.0.0.1:9/services"})
    )
    try:
        alerting.alert_drift(
            ctx, MonitorResult.model_validate(_drifted_result("2013-07-14", "2013-07-20")), context
        )
    except AlertDeliveryError as exc:
        error = exc
    sent = alerting.alert_task_failure(ctx, {**context, "exception": error})
    assert [(r["channel"], r["ok"]) for r in sent] == [("email", True), ("slack", False)]
    failure = catcher.emails()[-1]
    assert "task flights_delay_monitor.alert_drift failed: AlertDeliveryError" in failure["Subject"]
    assert "connection &#x27;airloop_slack&#x27;): " in failure.get_body(("html",)).get_content()
    assert [e.payload.window.first for e in open_drift_events(ctx.warehouse, MODEL)] == ["2013-07-07"]

    # A task that fails on purpose right after an alert task is not announced again.
    after_alert = {
        "ti": ti,
        "task": SimpleNamespace(upstream_task_ids={"alert_drift"}),
        "exception": ValueError(),
    }
    assert alerting.alert_task_failure(ctx, after_alert) == []
