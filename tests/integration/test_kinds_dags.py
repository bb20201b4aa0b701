"""A regression and a multiclass model through the real DAGs (``dag.test()``): ingest, train, gate, score and
monitor, on SQLite and on PostgreSQL, with a real MLflow server.

The models are the flights of 2013 seen as a team would see other targets: the arrival delay in minutes
(regression) and a delay class (multiclass: early, on time, late, very late, derived from the arrival delay as
an upstream system would deliver it). Three weeks of January train; the first days go through the ingest DAG
(one of them with a class the contract does not list, quarantined), the rest are seeded as ingestion leaves them.
"""

from __future__ import annotations

import importlib.util
import json
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow_server import MlflowServer

from airloop.core.settings import settings
from airloop.local.demo.replay import day_frame, write_partition
from airloop.model.context import ModelContext
from airloop.monitor.monitor import last_monitoring
from airloop.store.db import open_warehouse, sync_table
from airloop.store.ledger import LedgerEntry, ledger_entries, replace_partition
from airloop.store.schema import batches_table

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FLIGHTS = ROOT / "config" / "models" / "flights_delay.yaml"
DAYS = [date(2013, 1, 1) + timedelta(days=d) for d in range(21)]
HOLDOUT_DAYS = 5
#: The week monitored (Sunday to Saturday: the @weekly interval a run on the Sunday after covers), scored by the
#: first champion.
MONITORED = [date(2013, 1, 20) + timedelta(days=d) for d in range(7)]
CLASSES = ["early", "on_time", "late", "very_late"]


def delay_class(frame: pd.DataFrame) -> pd.Series:
    """The class an upstream system would deliver: by arrival delay in minutes; none when the flight has none."""
    delay = frame["arr_delay"]
    classes = np.select([delay <= 0, delay <= 15, delay <= 60], CLASSES[:3], CLASSES[3]).astype(object)
    return pd.Series(np.where(delay.isna(), None, classes), index=frame.index, dtype=object)


def _spec(kind: str, name: str) -> dict:
    raw = yaml.safe_load(FLIGHTS.read_text())
    raw["name"] = name
    raw["source"].update(wait_timeout_minutes=0.05, poke_interval_seconds=0.5)
    training = raw["training"]
    training.update(window_days=len(DAYS), holdout_days=HOLDOUT_DAYS)
    training["params"]["max_iter"] = 40
    training["search"].update(trials=2, retrain_trials=1, parallel_trials=1, timeout_minutes=2)
    raw["monitoring"].update(min_rows=500)
    if kind == "regression":
        raw["target"] = {"kind": "regression", "column": "arr_delay", "label_delay_hours": 24}
        training["estimator"] = "sklearn.ensemble.HistGradientBoostingRegressor"
        # Minutes of delay spread widely: a model must do better than a 60-minute RMSE to be worth serving.
        raw["promotion"].update(metric="rmse", floor=60, min_margin=0.1, max_slice_regression=5.0)
    else:
        raw["contract"]["columns"].append({"name": "delay_class", "type": "string", "allowed": CLASSES})
        raw["target"] = {"kind": "multiclass", "column": "delay_class", "label_delay_hours": 24}
        raw["promotion"].update(metric="log_loss", floor=1.3, min_margin=0.001, max_slice_regression=0.1)
    return raw


def _frame(kind: str, day: date) -> pd.DataFrame:
    frame = day_frame(day)
    return frame.assign(delay_class=delay_class(frame)) if kind == "multiclass" else frame


@pytest.fixture(scope="module")
def tracking_uri(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlflow")
    with MlflowServer(f"sqlite:///{folder}/mlflow.db", folder / "artifacts", folder / "mlflow.log") as server:
        yield server.url


@pytest.fixture(params=["regression", "multiclass"])
def model(request, airflow_db, airloop_home, warehouse_url, tracking_uri, catcher, tmp_path, monkeypatch):
    """A spec of the kind (a name of its own: registry and DAG ids are the test's), the warehouse seeded."""
    kind = request.param
    name = f"{kind}_{uuid.uuid4().hex[:6]}"
    models = tmp_path / "models"
    models.mkdir()
    (models / f"{name}.yaml").write_text(json.dumps(_spec(kind, name), default=str))
    monkeypatch.setenv("AIRLOOP_MODELS_DIR", str(models))
    monkeypatch.setenv("AIRLOOP_MLFLOW_TRACKING_URI", tracking_uri)
    settings.cache_clear()
    airloop_home.home.mkdir(parents=True)
    ctx = ModelContext.load(name)
    engine = open_warehouse(warehouse_url)
    sync_table(engine, batches_table(ctx.spec))
    for day in sorted({*DAYS[2:], *MONITORED}):  # the first two days go through the ingest DAG
        entry = LedgerEntry(
            partition=day.isoformat(),
            status="passed",
            checksum=f"seed-{day}".ljust(64, "0"),
            validation_result_id=f"{name}-{day}",
            files=["flights.parquet"],
        )
        replace_partition(engine, ctx.spec, _frame(kind, day), entry)
    yield ctx
    settings.cache_clear()


def _dag(ctx: ModelContext, stage: str):
    settings.cache_clear()
    module_spec = importlib.util.spec_from_file_location(f"{stage}_dags", ROOT / "dags" / f"{stage}.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, f"{ctx.name}_{stage}")


def _states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_a_model_of_each_kind_lives_through_every_dag(model):
    ctx = model
    kind, task = ctx.task.kind, ctx.task

    # Ingest: a good day loads; a day whose target holds a class the contract does not list is quarantined.
    good, bad = DAYS[0], DAYS[1]
    write_partition(_frame(kind, good), ctx.landing, good)
    broken = _frame(kind, bad)
    if kind == "multiclass":
        broken.loc[broken.index[:3], "delay_class"] = "cancelled"
    else:
        broken.loc[broken.index[:3], "arr_delay"] = 99_999.0  # far outside the contract's range
    write_partition(broken, ctx.landing, bad)
    assert _dag(ctx, "ingest").test(logical_date=_at(good) + timedelta(days=1)).state == "success"
    assert _dag(ctx, "ingest").test(logical_date=_at(bad) + timedelta(days=1)).state == "failed"
    ledger = {e.partition: e for e in ledger_entries(ctx.warehouse, ctx.name)}
    assert ledger[good.isoformat()].status == "passed"
    refused = ledger[bad.isoformat()]
    assert refused.status == "quarantined"
    named = "delay_class" if kind == "multiclass" else "arr_delay"
    assert f"column '{named}'" in refused.reason
    if kind == "multiclass":
        assert "'cancelled'" in refused.reason  # the class is named

    # Train, gate and promote: the kind's metrics, its primary metric in the gate, the signature.
    trained = _dag(ctx, "train").test(run_conf={"window_end": DAYS[-1].isoformat()})
    assert _states(trained)["promote_champion"] == "success", _states(trained)
    client = ctx.registry.client
    version = client.get_model_version(ctx.spec.registered_model, "1")
    run = client.get_run(version.run_id)
    # One-vs-rest AUC is undefined (not logged) when a class is missing from the holdout.
    expected = {f"holdout/{name}" for name in task.metrics} - {"holdout/roc_auc_ovr"}
    assert expected <= set(run.data.metrics)
    assert run.data.params["search/metric"] == task.default_metric
    assert run.data.tags["airloop.gate"] == "promoted"
    [output] = mlflow_model_info(ctx).signature.outputs.to_dict()
    shape = list(output["tensor-spec"]["shape"])
    assert shape == ([-1, len(CLASSES)] if kind == "multiclass" else [-1])  # class probabilities, or a number

    # Score: the kind's prediction columns, one row per batch row.
    partitions = [d.isoformat() for d in MONITORED]
    scored = _dag(ctx, "score").test(run_conf={"partitions": partitions})
    assert _states(scored)["score_champion"] == "success"
    predictions = pd.read_sql_table(f"{ctx.name}_predictions", ctx.warehouse)
    columns = [c.name for c in task.prediction_columns()]
    assert set(columns) <= set(predictions.columns) and len(predictions) > 5000
    if kind == "multiclass":
        probabilities = predictions[task.probability_columns].to_numpy()
        assert np.allclose(probabilities.sum(axis=1), 1)
        assert set(predictions["predicted_class"]) <= set(CLASSES)
    else:
        assert predictions["prediction"].between(-100, 400).all()

    # Monitor the week: the kind's quality figures on labelled rows, against the champion's holdout.
    monitored = _dag(ctx, "monitor").test(logical_date=_at(MONITORED[-1] + timedelta(days=1)))
    assert _states(monitored)["monitor_window"] == "success", _states(monitored)
    row = last_monitoring(ctx.warehouse, ctx.name)
    assert row["quality_metric"] == task.default_metric and row["labelled_rows"] > 1000
    assert row["quality_current"] is not None and row["quality_baseline"] is not None
    figures = row["figures"]
    assert figures["prediction"]["column"] == "prediction" and figures["features"]
    assert set(figures["evidently_quality"]) >= (
        {"rmse", "mae", "r2"} if kind == "regression" else {"accuracy"}
    )
    page = Path(row["report_path"]).read_text()
    assert "Model quality" in page


def mlflow_model_info(ctx: ModelContext):
    import mlflow

    return mlflow.models.get_model_info(f"models:/{ctx.spec.registered_model}/1")
