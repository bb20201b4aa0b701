"""DAG integrity: every DAG file parses cleanly, cheaply and without touching a database or connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.dags

ROOT = Path(__file__).resolve().parents[2]
DAG_FILES = sorted(p for p in (ROOT / "dags").glob("*.py") if not p.name.startswith("_"))
#: Files of one DAG for the whole deployment (``airloop_*``), not one per model.
DEPLOYMENT_DAG_FILES = {"alert_outbox.py"}
STAGE_DAG_FILES = [p for p in DAG_FILES if p.name not in DEPLOYMENT_DAG_FILES]
HEAVY = [
    "pandas",
    "numpy",
    "sklearn",
    "mlflow",
    "great_expectations",
    "evidently",
    "sqlalchemy.orm",
    "pyarrow",
]

# Runs in a fresh interpreter: imports the DAG file while recording every SQL statement, socket connection,
# Connection and Variable lookup, and which heavy modules got imported.
_PROBE = r"""
import importlib.util, json, socket, sys, time
from pathlib import Path
calls = {"sql": [], "sockets": [], "connections": [], "variables": []}
import sqlalchemy, sqlalchemy.event
from sqlalchemy.engine import Engine
sqlalchemy.event.listen(Engine, "before_cursor_execute", lambda c, cur, stmt, *a: calls["sql"].append(stmt))
_connect = socket.socket.connect
def _record(self, address):
    calls["sockets"].append(str(address))
    return _connect(self, address)
socket.socket.connect = _record
from airflow.sdk import Connection, Variable
Connection.get = classmethod(lambda cls, conn_id, *a, **k: calls["connections"].append(conn_id))
Variable.get = classmethod(lambda cls, key, *a, **k: calls["variables"].append(key))
path = Path(sys.argv[1])
before = set(sys.modules)
start = time.perf_counter()
spec = importlib.util.spec_from_file_location("dag_under_test", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
from airflow.sdk import DAG
dags = [v.dag_id for v in vars(module).values() if isinstance(v, DAG)]
imported = sorted(m for m in set(sys.modules) - before)
print(json.dumps({"calls": calls, "seconds": elapsed, "dags": dags, "imported": imported}))
"""


def _probe(path: Path, **extra_env: str) -> dict:
    env = {**os.environ, "AIRLOOP_WAREHOUSE_URL": "postgresql://nobody@192.0.2.1:1/unreachable", **extra_env}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("path", DAG_FILES, ids=[p.name for p in DAG_FILES])
def test_parse_does_no_work(path: Path):
    result = _probe(path)
    assert result["dags"], f"{path.name} defines no DAG"
    assert result["calls"] == {"sql": [], "sockets": [], "connections": [], "variables": []}
    heavy = [m for m in result["imported"] if m.split(".")[0] in HEAVY or m in HEAVY]
    assert heavy == [], f"{path.name} imports heavy modules at parse time: {heavy[:10]}"
    print(f"{path.name}: parsed in {result['seconds']:.3f} s (airflow.sdk already imported)")


@pytest.mark.parametrize("path", STAGE_DAG_FILES, ids=[p.name for p in STAGE_DAG_FILES])
def test_a_task_process_builds_only_the_dag_it_runs(path: Path):
    """Airflow's parsing context (set when a task process parses the file) names the DAG: the file builds that
    DAG alone; the DAG processor (no context) builds every model's."""
    stage = path.stem
    everything = _probe(path)["dags"]
    models = [dag_id.removesuffix(f"_{stage}") for dag_id in everything]
    assert len(models) >= 2, f"{path.name}: the shipped models give more than one {stage} DAG"
    chosen = everything[-1]
    only = _probe(path, _AIRFLOW_PARSING_CONTEXT_DAG_ID=chosen, _AIRFLOW_PARSING_CONTEXT_TASK_ID="t")
    assert only["dags"] == [chosen]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert "flights_delay_ingest" in dagbag.dag_ids


def test_every_dag_has_owner_tags_retries_and_docs(dagbag):
    for dag_id, dag in dagbag.dags.items():
        assert dag.tags and "airloop" in dag.tags, dag_id
        assert dag.doc_md, dag_id
        assert dag.default_args.get("retries", 0) >= 1, dag_id
        for t in dag.tasks:
            assert t.owner not in ("", "airflow"), f"{dag_id}.{t.task_id} has no owner"
            assert t.retries is not None, f"{dag_id}.{t.task_id}"


def test_the_alert_outbox_is_one_dag_for_the_deployment_on_the_settings_schedule(dagbag):
    dag = dagbag.dags["airloop_alert_outbox"]
    assert [t.task_id for t in dag.tasks] == ["redeliver_alerts"]
    assert dag.timetable.expression == "*/10 * * * *"  # config/airloop.yaml
    assert (dag.catchup, dag.max_active_runs, dag.is_paused_upon_creation) == (False, 1, False)
    # A failure alert for it would be one more alert for the outbox, by the channels that are down.
    assert dag.get_task("redeliver_alerts").on_failure_callback in (None, [])
    assert dag.params["grace_minutes"] == 15
    assert [d for d in dagbag.dag_ids if d.startswith("airloop_")] == ["airloop_alert_outbox"]


def test_ingest_dag_shape(dagbag):
    dag = dagbag.dags["flights_delay_ingest"]
    assert dag.catchup is True
    assert dag.is_paused_upon_creation is False
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.max_active_runs == 14  # config/models/flights_delay.yaml: two weeks of days at once
    sensor = dag.get_task("wait_for_partition")
    assert sensor.retries >= 1
    ingest = dag.get_task("ingest_batch")
    assert sensor.downstream_task_ids == {"ingest_batch"}
    assert ingest.downstream_task_ids == {"quarantine_batch"}
    # The batches Asset goes out through an alias: only a loaded batch emits it (a plain outlet would emit it on
    # every success of the task, a quarantined batch's too).
    assert [(type(o).__name__, o.name) for o in ingest.outlets] == [
        ("AssetAlias", "flights_delay_batches_loaded")
    ]
    assert [a.uri for a in dagbag.dags["flights_delay_score"].timetable.asset_condition.objects] == [
        "x-airloop://flights_delay/batches"
    ]


def test_a_chained_sql_model_waits_for_its_upstream_then_runs_its_query(dagbag):
    dag = dagbag.dags["flights_arrival_minutes_ingest"]
    assert "wait_for_partition" not in dag.task_ids
    # The query runs in ingest_batch, which validates and loads its result in the same process.
    assert dag.get_task("wait_for_upstream").downstream_task_ids == {"ingest_batch"}
    assert "extract_batch" not in dag.task_ids
    assert dag.max_active_runs == 2
    # Each run is a week (Sunday to Saturday) and the monthly model's a calendar month.
    assert dag.timetable.expression == "0 0 * * 0"
    assert dagbag.dags["flights_delay_band_ingest"].timetable.expression == "0 0 1 * *"


def test_score_dag_scores_the_champion_in_one_task_and_branches_to_the_challenger_or_an_alert(dagbag):
    dag = dagbag.dags["flights_delay_score"]
    assert sorted(dag.task_ids) == ["alert_unrecorded_champion", "score_challenger", "score_champion"]
    champion = dag.get_task("score_champion")
    assert type(champion).__name__ == "_BranchPythonDecoratedOperator"
    assert champion.downstream_task_ids == {"score_challenger", "alert_unrecorded_champion"}
    assert dag.get_task("alert_unrecorded_champion").retries == 3
    assert dag.max_active_runs == 1


def test_monitor_dag_records_and_emits_drift_in_the_monitoring_task(dagbag):
    dag = dagbag.dags["flights_delay_monitor"]
    assert sorted(dag.task_ids) == ["alert_drift", "monitor_window"]
    monitor = dag.get_task("monitor_window")
    assert monitor.downstream_task_ids == {"alert_drift"}
    # Through an alias: only a drifted window emits the drift Asset (a plain outlet would emit on every success).
    assert [(type(o).__name__, o.name) for o in monitor.outlets] == [
        ("AssetAlias", "flights_delay_drift_recorded")
    ]
    assert [a.uri for a in dagbag.dags["flights_delay_retrain"].timetable.asset_condition.objects] == [
        "x-airloop://flights_delay/drift"
    ]


def test_train_dag_shape(dagbag):
    dag = dagbag.dags["flights_delay_train"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # manual (or called by retraining)
    assert dag.max_active_runs == 1
    assert dag.is_paused_upon_creation is False
    order = ["train_challenger", "evaluate_gate", "promote_champion"]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    assert [o.uri for o in dag.get_task("promote_champion").outlets] == ["x-airloop://flights_delay/champion"]
    assert "window_end" in dag.params


def _capped_spec(cap: int | None = 30):
    from airloop.core.spec import load_spec

    spec = load_spec(ROOT / "config" / "models" / "flights_delay.yaml")
    return spec.model_copy(
        update={"monitoring": spec.monitoring.model_copy(update={"max_champion_age_days": cap})}
    )


def _retrain_dag_factory():
    import importlib.util

    spec = importlib.util.spec_from_file_location("retrain_dag_under_test", ROOT / "dags" / "retrain.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.retrain_dag


RETRAIN_TASKS = ["wait_for_drift", "retrain", "record_outcome", "alert_outcome"]


def _asset_uris(condition) -> list[str]:
    return [a.uri for a in condition.objects]


def test_retrain_dag_shape(dagbag):
    dag = dagbag.dags["flights_delay_retrain"]
    # No age cap in the shipped spec: the drift Asset alone schedules it.
    assert type(dag.timetable).__name__ == "AssetTriggeredTimetable"
    assert _asset_uris(dag.timetable.asset_condition) == ["x-airloop://flights_delay/drift"]
    assert dag.max_active_runs == 1 and dag.catchup is False
    assert sorted(t.task_id for t in dag.tasks) == sorted(RETRAIN_TASKS)
    assert dag.get_task("wait_for_drift").downstream_task_ids == {"retrain", "record_outcome"}
    assert dag.get_task("retrain").downstream_task_ids == {"record_outcome"}
    assert dag.get_task("retrain").trigger_dag_id == "flights_delay_train"
    assert dag.get_task("record_outcome").downstream_task_ids == {"alert_outcome"}


def test_retrain_dag_with_an_age_cap_also_runs_on_the_model_schedule():
    from airflow.sdk import CronTriggerTimetable

    retrain_dag = _retrain_dag_factory()
    spec = _capped_spec()
    capped, plain = retrain_dag(spec), retrain_dag(_capped_spec(None))
    timetable = capped.timetable
    assert type(timetable).__name__ == "AssetOrTimeSchedule"
    assert _asset_uris(timetable.asset_condition) == ["x-airloop://flights_delay/drift"]
    assert type(timetable.timetable).__name__ == "CronTriggerTimetable"
    assert timetable.timetable.expression == CronTriggerTimetable(spec.schedule, timezone="UTC").expression
    assert type(plain.timetable).__name__ == "AssetTriggeredTimetable"
    # The same tasks, wired the same way, as without the cap.
    assert [t.task_id for t in capped.tasks] == [t.task_id for t in plain.tasks]
    for task in capped.tasks:
        assert task.downstream_task_ids == plain.get_task(task.task_id).downstream_task_ids
    assert capped.max_active_runs == 1 and capped.catchup is False


def test_retrain_dag_with_an_age_cap_parses_without_work(tmp_path, monkeypatch):
    import yaml

    raw = yaml.safe_load((ROOT / "config" / "models" / "flights_delay.yaml").read_text())
    raw["monitoring"]["max_champion_age_days"] = 30
    (tmp_path / "flights_delay.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("AIRLOOP_MODELS_DIR", str(tmp_path))
    result = _probe(ROOT / "dags" / "retrain.py")
    assert result["dags"] == ["flights_delay_retrain"]
    assert result["calls"] == {"sql": [], "sockets": [], "connections": [], "variables": []}
    assert [m for m in result["imported"] if m.split(".")[0] in HEAVY] == []


def test_a_broken_spec_is_its_own_import_error_and_hides_no_other_model(tmp_path, monkeypatch):
    """Two models, one spec broken: every DAG file reports that spec (file and field) as its import error, and
    every DAG of the other model still loads."""
    import yaml
    from airflow.dag_processing.dagbag import DagBag

    from airloop.core.settings import settings

    raw = yaml.safe_load((ROOT / "config" / "models" / "flights_delay.yaml").read_text())
    (tmp_path / "flights_delay.yaml").write_text(yaml.safe_dump(raw))
    broken = {**raw, "name": "flights_broken", "promotion": {**raw["promotion"], "metric": "rmse"}}
    (tmp_path / "flights_broken.yaml").write_text(yaml.safe_dump(broken))
    monkeypatch.setenv("AIRLOOP_MODELS_DIR", str(tmp_path))
    settings.cache_clear()
    try:
        bag = DagBag(dag_folder=str(ROOT / "dags"))
    finally:
        settings.cache_clear()

    stages = ("ingest", "train", "score", "monitor", "retrain")
    assert {f"flights_delay_{stage}" for stage in stages} <= set(bag.dag_ids)
    assert not any(dag_id.startswith("flights_broken") for dag_id in bag.dag_ids)
    assert sorted(Path(path).name for path in bag.import_errors) == sorted(p.name for p in STAGE_DAG_FILES)
    assert "airloop_alert_outbox" in bag.dag_ids  # the other models' alerts still go out
    for error in bag.import_errors.values():
        assert (
            f"{tmp_path / 'flights_broken.yaml'}: field 'promotion.metric': 'rmse' is not a metric" in error
        )
        assert "flights_delay.yaml" not in error
