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
HEAVY = ["pandas", "sklearn", "mlflow", "great_expectations", "evidently", "sqlalchemy.orm", "pyarrow"]

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


def _probe(path: Path) -> dict:
    env = {**os.environ, "AIRLOOP_WAREHOUSE_URL": "postgresql://nobody@192.0.2.1:1/unreachable"}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True, env=env, timeout=120, check=False
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


def test_ingest_dag_shape(dagbag):
    dag = dagbag.dags["flights_delay_ingest"]
    assert dag.catchup is True
    assert dag.is_paused_upon_creation is False
    assert type(dag.timetable).__name__ == "CronDataIntervalTimetable"
    assert dag.max_active_runs <= 4
    sensor = dag.get_task("wait_for_partition")
    assert sensor.retries >= 1
    assert set(dag.get_task("route_batch").downstream_task_ids) == {"load_batch", "quarantine_batch"}
    load = dag.get_task("load_batch")
    assert [o.uri for o in load.outlets] == ["airloop://flights_delay/batches"]


def test_train_dag_shape(dagbag):
    dag = dagbag.dags["flights_delay_train"]
    assert type(dag.timetable).__name__ == "NullTimetable"  # manual (or called by retraining)
    assert dag.max_active_runs == 1
    assert dag.is_paused_upon_creation is False
    order = ["train_challenger", "evaluate_gate", "gate_passed", "promote_champion"]
    for upstream, downstream in zip(order, order[1:], strict=False):
        assert downstream in dag.get_task(upstream).downstream_task_ids, (upstream, downstream)
    assert [o.uri for o in dag.get_task("promote_champion").outlets] == ["airloop://flights_delay/champion"]
    assert "window_end" in dag.params
