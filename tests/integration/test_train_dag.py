"""The train DAG run for real with ``dag.test()`` against a real MLflow tracking server started by the test.

Warehouse and MLflow backend are SQLite and PostgreSQL in turn (databases made for the test and dropped after it).
Three weeks of real 2013 flights are loaded straight into the warehouse (with ledger rows, as ingestion leaves
them); the spec copy trains with a two-trial budget so that a run takes seconds.
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
from contextlib import ExitStack
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from asset_events import asset_event_extras
from mlflow_server import MlflowServer, postgres_database

from airloop.core.contracts import Gate
from airloop.core.events import EventKind
from airloop.local.demo.replay import day_frame
from airloop.model.context import ModelContext
from airloop.model.features import model_input
from airloop.promote.promote import (
    PromotionError,
    promote_challenger,
    promote_version,
    promotion_history,
    rollback,
)
from airloop.store.db import open_warehouse, sync_table
from airloop.store.events import events_of
from airloop.store.ledger import LedgerEntry, replace_partition
from airloop.store.schema import batches_table

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL = "flights_delay"
DAG_ID = f"{MODEL}_train"
DAYS = [date(2013, 1, 1) + timedelta(days=d) for d in range(21)]
HOLDOUT_DAYS = 7


def _edit_spec(models_dir: Path, **promotion) -> None:
    path = models_dir / f"{MODEL}.yaml"
    raw = yaml.safe_load(path.read_text())
    raw["training"].update(window_days=len(DAYS), holdout_days=HOLDOUT_DAYS)
    raw["training"]["params"]["max_iter"] = 60
    raw["training"]["search"].update(trials=2, retrain_trials=2, timeout_minutes=2)
    # Three weeks of January make a weaker model than two months: a floor it clears with room to spare.
    raw["promotion"].update(floor=0.55, **promotion)
    path.write_text(json.dumps(raw, default=str))


@pytest.fixture
def stack(airflow_db, airloop_home, warehouse_url, models_dir, tmp_path, monkeypatch):
    """Warehouse with three weeks of flights, a real MLflow server on the same kind of backend, the spec copy."""
    from mlflow import MlflowClient

    from airloop.core.settings import settings

    _edit_spec(models_dir)
    airloop_home.home.mkdir(parents=True)  # as ingestion would have by now
    with ExitStack() as stack:
        if warehouse_url.startswith("sqlite"):
            backend = f"sqlite:///{tmp_path}/mlflow.db"
        else:
            # Any database of the server can create another: the test's own warehouse database does.
            backend = stack.enter_context(postgres_database(warehouse_url))
        server = stack.enter_context(MlflowServer(backend, tmp_path / "artifacts", tmp_path / "mlflow.log"))
        monkeypatch.setenv("AIRLOOP_MLFLOW_TRACKING_URI", server.url)
        settings.cache_clear()
        engine = open_warehouse(warehouse_url)
        _load_days(engine, _spec(), {day: day_frame(day) for day in DAYS})
        yield engine, MlflowClient(server.url)
        settings.cache_clear()


def _load_days(engine, spec, frames: dict[date, pd.DataFrame], tag: str = "orig") -> None:
    sync_table(engine, batches_table(spec))
    for day, frame in frames.items():
        entry = LedgerEntry(
            partition=day.isoformat(),
            status="passed",
            checksum=f"{tag}-{day.isoformat()}".ljust(64, "0"),
            validation_result_id=f"{MODEL}-{day.isoformat()}-{tag}",
            files=["flights.parquet"],
        )
        replace_partition(engine, spec, frame, entry)


def _shuffle_training_labels(engine) -> None:
    """Permute the target across every non-holdout row: features and labels no longer belong together."""
    training_days = DAYS[:-HOLDOUT_DAYS]
    frames = [day_frame(day) for day in training_days]
    everything = pd.concat(frames, ignore_index=True)
    shuffled = np.random.default_rng(0).permutation(everything["arr_delay"].to_numpy())
    start = 0
    replaced = {}
    for day, frame in zip(training_days, frames, strict=True):
        replaced[day] = frame.assign(arr_delay=shuffled[start : start + len(frame)])
        start += len(frame)
    _load_days(engine, _spec(), replaced, tag="shuffled")


def _aliases(client) -> dict[str, str]:
    return dict(client.get_registered_model(MODEL).aliases)


def _train_dag():
    from airloop.core.settings import settings

    settings.cache_clear()
    module_spec = importlib.util.spec_from_file_location("train_dags", ROOT / "dags" / "train.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return getattr(module, DAG_ID)


def _task_states(dag_run) -> dict[str, str]:
    return {ti.task_id: ti.state for ti in dag_run.get_task_instances()}


def _training_run(client, dag_run):
    [run] = client.search_runs(
        [client.get_experiment_by_name(MODEL).experiment_id],
        filter_string=f"tags.`airflow.run_id` = '{dag_run.run_id}' and tags.`airloop.role` = 'training'",
    )
    return run


def test_train_gate_promote_refuse_force_and_rollback(stack):
    import mlflow

    engine, client = stack
    started = time.perf_counter()
    first = _train_dag().test(run_conf={"window_end": DAYS[-1].isoformat()})
    print(f"train DAG run: {time.perf_counter() - started:.1f} s")
    assert first.state == "success", _task_states(first)
    assert _task_states(first)["promote_champion"] == "success"

    # The training run: named, with params, holdout metrics, datasets and lineage tags.
    run = _training_run(client, first)
    assert run.info.run_name == "train 2013-01-01..2013-01-21"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["estimator"] == "sklearn.ensemble.HistGradientBoostingClassifier"
    assert params["data/holdout"] == "2013-01-15..2013-01-21" and params["search/trials"] == "2"
    assert {"model/learning_rate", "model/max_leaf_nodes", "model/max_iter"} <= set(params)
    assert {"holdout/roc_auc", "holdout/average_precision", "holdout/log_loss", "holdout/brier"} <= set(
        metrics
    )
    assert metrics["holdout/rows"] > 5000 and metrics["data/unlabelled_rows"] > 0
    assert metrics["holdout/roc_auc"] > 0.55
    assert tags["airflow.dag_id"] == DAG_ID and tags["airflow.run_id"] == first.run_id
    assert tags["airflow.task_id"] == "train_challenger"
    assert tags["data.partitions"] == "2013-01-01..2013-01-21" and len(tags["data.ledger_digest"]) == 64
    assert tags["airloop.version"] and tags["airloop.code_version"]
    assert tags["airflow.run_type"] == "manual"
    assert tags["airloop.gate"] == "promoted"
    assert "holdout" in client.get_model_version(MODEL, "1").description.lower()
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"training", "holdout"}
    assert inputs["holdout"].source_type == "airloop_warehouse"
    assert json.loads(inputs["holdout"].source)["partitions"] == "2013-01-15..2013-01-21"
    trials = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    assert sorted(t.info.run_name for t in trials) == ["trial 0", "trial 1"]
    assert all("validation/roc_auc" in t.data.metrics for t in trials)
    lineage = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/lineage.json")
    assert [p["role"] for p in lineage["partitions"]].count("holdout") == HOLDOUT_DAYS

    # Registered, champion (the first model clears the floor), and the Asset event says which version.
    assert _aliases(client) == {"challenger": "1", "champion": "1"}
    assert client.get_model_version(MODEL, "1").run_id == run.info.run_id
    assert asset_event_extras(f"x-airloop://{MODEL}/champion", first.run_id) == [
        {"version": "1", "previous": None}
    ]

    # A challenger trained on shuffled labels is registered, never promoted, and the reason is recorded. It is
    # trained as a retrain: its search starts from the champion's parameters.
    _shuffle_training_labels(engine)
    second = _train_dag().test(run_conf={"warm_start": True})
    assert second.state == "success"
    states = _task_states(second)
    assert (states["evaluate_gate"], states["promote_champion"]) == ("success", "skipped")
    assert _aliases(client) == {"challenger": "2", "champion": "1"}
    [refused] = events_of(engine, MODEL, [EventKind.PROMOTION_REFUSED])
    assert refused.payload.version == "2" and refused.payload.champion_before == "1"
    assert any("the challenger is not better" in r for r in refused.payload.reasons)
    rejected_run = _training_run(client, second)
    assert rejected_run.data.params["search/start"] == "champion v1"
    [warm] = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{rejected_run.info.run_id}' and attributes.run_name = 'trial 0'",
    )
    space = set(_spec().training.search.space)
    assert {k: v for k, v in warm.data.params.items() if k.removeprefix("model/") in space} == {
        k: v for k, v in params.items() if k.removeprefix("model/") in space
    }
    assert rejected_run.data.tags["airloop.gate"] == "refused"
    assert (
        rejected_run.data.metrics["gate/champion_roc_auc"]
        > rejected_run.data.metrics["gate/challenger_roc_auc"]
    )
    decisions = [a.path for a in client.list_artifacts(rejected_run.info.run_id, "gate")]
    assert len(decisions) == 1 and decisions[0].endswith("-refused.json")
    assert asset_event_extras(f"x-airloop://{MODEL}/champion", second.run_id) == []

    # Forced over the gate, with the reason logged; then rolled back.
    forced = promote_version(_ctx(), 2, force=True, reason="integration test")
    assert forced.promoted and forced.forced
    assert _aliases(client) == {"challenger": "2", "champion": "2", "previous": "1"}
    rolled = rollback(_ctx(), reason="shuffled labels")
    assert (rolled.champion, rolled.from_version) == ("1", "2")
    assert _aliases(client) == {"challenger": "2", "champion": "1"}
    with pytest.raises(PromotionError, match="no previous champion"):
        rollback(_ctx())
    history = promotion_history(_ctx())
    assert [(h["kind"], h["version"]) for h in history] == [
        ("promotion", "1"),
        ("promotion_refused", "2"),
        ("promotion", "2"),
        ("rollback", "1"),
    ]
    assert history[2]["forced"] and "integration test" in history[2]["reasons"][0]
    assert history[3]["reasons"] == ["shuffled labels"] and history[3]["by"]

    # What scoring loads is the promoted (here: restored) version.
    champion = mlflow.models.get_model_info(f"models:/{MODEL}@champion")
    assert champion.run_id == run.info.run_id
    holdout = day_frame(DAYS[-1]).head(50)
    loaded = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")
    first_version = mlflow.sklearn.load_model(f"models:/{MODEL}/1")
    task = _ctx().task
    assert np.allclose(
        task.predict(loaded, model_input(holdout, _spec(), loaded)),
        task.predict(first_version, model_input(holdout, _spec(), first_version)),
    )

    # Two promotions decided against the same champion at the same moment: exactly one moves it.
    copy = client.create_model_version(MODEL, f"models:/{MODEL}/1", run_id=run.info.run_id)
    gates = [_passed_gate(version, run.info.run_id) for version in ("2", copy.version)]
    barrier, results = threading.Barrier(2), []

    def promote(gate):
        barrier.wait()
        results.append(promote_challenger(_ctx(), gate))

    threads = [threading.Thread(target=promote, args=(gate,)) for gate in gates]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(r.promoted for r in results) == [False, True]
    [lost] = [r for r in results if not r.promoted]
    assert "the champion changed since the decision: it was v1" in lost.reasons[0]
    [won] = [r for r in results if r.promoted]
    assert _aliases(client)["champion"] == won.version


def _ctx() -> ModelContext:
    return ModelContext.load(MODEL)


def _spec():
    return _ctx().spec


def _passed_gate(version: str, run_id: str) -> Gate:
    return Gate(
        model=MODEL,
        challenger_version=version,
        challenger_run_id=run_id,
        champion_version="1",
        promote=True,
        approval_required=False,
        reasons=["passed (test)"],
        evidence={},
    )


@pytest.mark.parametrize("warehouse_url", ["sqlite"], indirect=True)
def test_manual_approval_rejected_then_approved(stack, models_dir):
    engine, client = stack
    _edit_spec(models_dir, approval="manual")

    rejected = _run_answering("Reject")
    assert rejected.state == "success"
    states = _task_states(rejected)
    assert (states["approve_promotion"], states["promote_champion"]) == ("success", "skipped")
    assert _aliases(client) == {"challenger": "1"}
    [refused] = events_of(engine, MODEL, [EventKind.PROMOTION_REFUSED])
    assert refused.payload.reasons == ["approval refused by reviewer"]
    assert refused.payload.stage == "approval"
    assert _training_run(client, rejected).data.tags["airloop.gate"] == "refused"

    approved = _run_answering("Approve")
    assert _task_states(approved)["promote_champion"] == "success"
    assert _aliases(client) == {"challenger": "2", "champion": "2"}
    promoted = promotion_history(_ctx())[-1]
    assert promoted["kind"] == "promotion" and promoted["reasons"][-1] == "approved by reviewer"


def _run_answering(option: str):
    """Run the DAG; when it waits for the approval, answer as a user of the UI would (same API code path)."""
    answered: list[str] = []
    responder = threading.Thread(target=_answer, args=(option, answered), daemon=True)
    responder.start()
    dag_run = _train_dag().test()
    responder.join(30)
    [body] = answered  # what the approver was shown: the gate's reasons and numbers
    assert (
        "vs **champion (none yet)**" in body
        and "clears the floor 0.55" in body
        and "| roc_auc (gate) |" in body
    )
    return dag_run


def _answer(option: str, answered: list[str], timeout: float = 180) -> None:
    """Answer the first approval request of the train DAG; puts the body the approver saw in ``answered``."""
    import sqlalchemy as sa
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.api_fastapi.core_api.datamodels.hitl import UpdateHITLDetailPayload
    from airflow.api_fastapi.core_api.routes.public.hitl import update_hitl_detail
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with create_session() as session:
            waiting = session.scalars(
                sa.select(TaskInstance).where(
                    TaskInstance.dag_id == DAG_ID,
                    TaskInstance.task_id == "approve_promotion",
                    TaskInstance.state == TaskInstanceState.AWAITING_INPUT,
                )
            ).first()
            if waiting is not None:
                update_hitl_detail(
                    dag_id=DAG_ID,
                    dag_run_id=waiting.run_id,
                    task_id="approve_promotion",
                    update_hitl_detail_payload=UpdateHITLDetailPayload(chosen_options=[option]),
                    user=SimpleAuthManagerUser(username="reviewer", role="admin"),
                    session=session,
                )
                answered.append(waiting.hitl_detail.body)
                return
        time.sleep(0.5)
