"""What airloop's tasks do when they run: each builds the model's context once, reads its inputs from XCom as typed
contracts, calls the stage, and hands on its result as JSON (what XCom stores and the UI shows).

DAG files wire these; a task body is one call. Everything here runs in a task process, never at parse time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import Asset, AssetAlias, BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airloop.airflow.alerting import (
    alert_drift,
    alert_owed,
    alert_quarantine,
    alert_retrain,
    alert_unrecorded_champion,
    redeliver_alerts,
    unrecorded_champion_key,
)
from airloop.airflow.dagkit import (
    DRIFT_EVENT,
    EXTRACTED,
    GATE,
    LOADED,
    PARTITIONS,
    RESULT,
    SCORED,
    UNRECORDED,
    VERDICT,
)
from airloop.airflow.promotion import approval_from_response
from airloop.core.contracts import (
    Gate,
    MonitorResult,
    Quarantined,
    RetrainDue,
    RetrainOutcome,
    Scored,
    Trained,
    Verdict,
)
from airloop.core.events import AlertQueuedPayload
from airloop.core.partitions import partition_key
from airloop.core.settings import settings
from airloop.core.spec import SqlSourceSpec
from airloop.ingest.extract import extract_partition
from airloop.ingest.ingest import ingest_partition, quarantine_partition
from airloop.model.context import ModelContext, load_model_specs
from airloop.model.predictions import predictions_of
from airloop.model.registry import CHALLENGER, CHAMPION
from airloop.monitor.monitor import monitor_window, record_drift
from airloop.promote.guard import check_champion, record_unrecorded_move
from airloop.promote.promote import evaluate_gate, promote_challenger
from airloop.retrain.retrain import retrain_outcome
from airloop.score.score import partitions_to_score, score_partitions, shadow_due, unscored_partitions
from airloop.store.db import open_warehouse
from airloop.store.predictions import partitions_scored_by
from airloop.train.train import train_challenger


def airflow_ids(context: Mapping[str, Any]) -> dict[str, Any]:
    """The identifiers of the running task that make an MLflow run traceable to it (logged as ``airflow.*``)."""
    ti = context["ti"]
    dag_run = context.get("dag_run")
    return {
        "dag_id": ti.dag_id,
        "run_id": ti.run_id,
        "task_id": ti.task_id,
        "try_number": ti.try_number,
        "run_type": str(getattr(dag_run.run_type, "value", dag_run.run_type)) if dag_run else None,
        "logical_date": _iso(context.get("logical_date")),
        "data_interval_start": _iso(context.get("data_interval_start")),
        "data_interval_end": _iso(context.get("data_interval_end")),
    }


def asset_event_extras(triggering_asset_events: Mapping[Any, Iterable[Any]] | None) -> list[dict[str, Any]]:
    """The ``extra`` of every Asset event that triggered the run (none for a manual run)."""
    if not triggering_asset_events:
        return []
    return [dict(event.extra or {}) for events in triggering_asset_events.values() for event in events]


# -- <model>_ingest ---------------------------------------------------------------------------------------------


def ingest_batch(
    model: str,
    interval: tuple[datetime, datetime],
    run_id: str,
    ti: Any,
    batches: Asset,
    outlet_events: Any,
) -> str | None:
    """Validate the run's partition and load it if it passed, in one task process (with a SQL source, the query
    for the interval runs first: XCom ``extracted``). The verdict goes on as the XCom ``verdict``; a loaded batch
    emits ``batches`` through the task's alias and is the XCom ``loaded``. Returns the branch to follow:
    ``quarantine_batch`` for a failed batch, none for a loaded one."""
    ctx = ModelContext.load(model)
    partition = partition_key(interval[0], ctx.spec.schedule)
    if isinstance(ctx.spec.source, SqlSourceSpec):
        ti.xcom_push(key=EXTRACTED, value=_extract(ctx, ctx.spec.source, interval, partition))
    verdict, loaded = ingest_partition(ctx, partition, run_id=run_id)
    ti.xcom_push(key=VERDICT, value=verdict.to_json())
    if loaded is None:
        return "quarantine_batch"
    outlet_events[AssetAlias(ctx.spec.batches_alias)].add(
        batches, extra={"partition": loaded.partition, "rows": loaded.rows}
    )
    ti.xcom_push(key=LOADED, value=loaded.to_json())
    return None


def _extract(
    ctx: ModelContext, source: SqlSourceSpec, interval: tuple[datetime, datetime], partition: str
) -> dict:
    """Read the interval from the SQL source (the database its Airflow connection names, through the provider's
    hook) and deliver it as the partition."""
    database = BaseHook.get_connection(source.conn_id).get_hook().get_sqlalchemy_engine()
    try:
        return extract_partition(ctx, database, interval[0], interval[1], partition).to_json()
    finally:
        database.dispose()


def quarantine_batch(model: str, verdict: Mapping[str, Any], run_id: str) -> dict:
    return quarantine_partition(
        ModelContext.load(model), Verdict.model_validate(verdict), run_id=run_id
    ).to_json()


def send_quarantine_alert(model: str, quarantined: Mapping[str, Any], context: Mapping[str, Any]) -> list:
    return alert_quarantine(ModelContext.load(model), Quarantined.model_validate(quarantined), context)


def fail_quarantined(quarantined: Mapping[str, Any]) -> None:
    """Fail the run, after the alerts: a quarantined batch shows red, with its reason."""
    batch = Quarantined.model_validate(quarantined)
    raise AirflowFailException(f"batch {batch.partition} quarantined: {batch.reason}")


# -- <model>_train ----------------------------------------------------------------------------------------------


def train(model: str, params: Mapping[str, Any], context: Mapping[str, Any]) -> dict:
    trained = train_challenger(
        ModelContext.load(model),
        window_end=params["window_end"],
        warm_start=params["warm_start"],
        airflow=airflow_ids(context),
    )
    return trained.to_json()


def gate(model: str, trained: Mapping[str, Any], run_id: str, ti: Any) -> bool:
    """Judge the challenger; hand the decision on (XCom ``gate``); go on when it passed or awaits approval."""
    decision = evaluate_gate(ModelContext.load(model), Trained.model_validate(trained), airflow_run_id=run_id)
    ti.xcom_push(key=GATE, value=decision.to_json())
    return decision.promote or decision.approval_required


def promote(
    model: str,
    gate: Mapping[str, Any],
    champion: Asset,
    context: Mapping[str, Any],
    *,
    approval_task_id: str | None,
) -> dict:
    """Move ``champion`` (after the approval, when there is one) and describe the new champion on the Asset event;
    a refusal at the moment of the move skips the task, so no Asset event is emitted."""
    ti = context["ti"]
    response = ti.xcom_pull(task_ids=approval_task_id) if approval_task_id else None
    approval = approval_from_response(response) if response else None
    result = promote_challenger(
        ModelContext.load(model), Gate.model_validate(gate), approval=approval, airflow_run_id=ti.run_id
    )
    if not result.promoted:
        raise AirflowSkipException("; ".join(result.reasons))
    context["outlet_events"][champion].extra = {"version": result.version, "previous": result.champion_before}
    return result.to_json()


# -- <model>_score ----------------------------------------------------------------------------------------------


def score_champion(
    model: str, params: Mapping[str, Any], triggering_asset_events: Any, run_id: str, ti: Any
) -> str | None:
    """Choose the partitions (XCom ``partitions``) and score them with the champion (XCom ``scored``); go on to
    ``score_challenger`` only when a challenger that is not the champion can be scored in shadow. Skipped when
    there is nothing to score or no champion yet.

    A champion alias moved outside airloop is not followed: the recorded champion scores, and the disagreement,
    recorded once (XCom ``unrecorded``), goes on to ``alert_unrecorded_champion`` while a channel still owes its
    alert."""
    ctx = ModelContext.load(model)
    events = asset_event_extras(triggering_asset_events)
    chosen = partitions_to_score(events, params["partitions"], unscored_partitions(ctx))
    # A retry after the champion's predictions were written finds them scored: they are still this run's.
    scored_before = partitions_scored_by(ctx.warehouse, predictions_of(ctx), CHAMPION, run_id)
    partitions = sorted({*chosen, *scored_before})
    ti.xcom_push(key=PARTITIONS, value=partitions)
    check = check_champion(ctx)
    follow = []
    if check.unrecorded:
        event = record_unrecorded_move(ctx, check, airflow_run_id=run_id)
        # Alerted until every channel delivered it: a retry, or the next run, sends what is still owed.
        if alert_owed(ctx, unrecorded_champion_key(model, event)):
            moved = {"event_id": event, "registry": check.registry, "recorded": check.recorded}
            ti.xcom_push(key=UNRECORDED, value={**moved, "why": check.unrecorded})
            follow.append("alert_unrecorded_champion")
    if check.unrecorded and check.serve is None:
        # An alias set by hand before any recorded promotion: nothing airloop promoted can serve.
        scored = Scored(model=model, alias=CHAMPION, scored=False, reason=check.unrecorded)
    else:
        scored = score_partitions(ctx, partitions, alias=CHAMPION, run_id=run_id, version=check.serve)
    if scored.scored:
        ti.xcom_push(key=SCORED, value=scored.to_json())
        if shadow_due(check.aliases):
            follow.append("score_challenger")
    elif not follow:
        raise AirflowSkipException(scored.reason or "nothing to score")
    return follow or None


def send_unrecorded_champion_alert(model: str, moved: Mapping[str, Any], context: Mapping[str, Any]) -> list:
    return alert_unrecorded_champion(ModelContext.load(model), moved, context)


def score(model: str, partitions: list[str], alias: str, run_id: str) -> dict:
    """Score with ``alias`` (champion, or challenger in shadow); skipped when there is nothing to do."""
    if alias not in (CHAMPION, CHALLENGER):
        raise ValueError(f"alias {alias!r}: scoring uses {CHAMPION} or {CHALLENGER}")
    scored = score_partitions(ModelContext.load(model), partitions, alias=alias, run_id=run_id)
    return _done_or_skip(scored, scored.scored, scored.reason).to_json()


# -- <model>_monitor --------------------------------------------------------------------------------------------


def monitor(model: str, data_interval_end: datetime, drift: Asset, context: Mapping[str, Any]) -> bool:
    """Monitor the run's window and hand the result on (XCom ``result``). A drifted window is recorded as a drift
    event (XCom ``drift_event``) and emits ``drift`` through the task's alias; the run goes on only then. Skipped
    without a champion."""
    ctx = ModelContext.load(model)
    result = monitor_window(ctx, data_interval_end, airflow=airflow_ids(context))
    context["ti"].xcom_push(
        key=RESULT, value=_done_or_skip(result, result.monitored, result.reason).to_json()
    )
    if result.drifted:
        event = record_drift(ctx, result, airflow_run_id=context["run_id"]).to_json()
        context["ti"].xcom_push(key=DRIFT_EVENT, value=event)
        context["outlet_events"][AssetAlias(ctx.spec.drift_alias)].add(drift, extra=event)
    return result.drifted


def send_drift_alert(model: str, result: Mapping[str, Any], context: Mapping[str, Any]) -> list:
    return alert_drift(ModelContext.load(model), MonitorResult.model_validate(result), context)


# -- <model>_retrain --------------------------------------------------------------------------------------------


def retrain_result(model: str, due: Mapping[str, Any], run_id: str, ti: Any) -> dict:
    """What the retrain's training run (``retrain__<run id>``) decided, written to the drift events it handled."""
    train_run = f"retrain__{run_id}"
    state = ti.get_dagrun_state(f"{model}_train", train_run)
    return retrain_outcome(
        ModelContext.load(model), RetrainDue.model_validate(due), train_run, state
    ).to_json()


def send_retrain_alert(model: str, outcome: Mapping[str, Any], context: Mapping[str, Any]) -> list:
    return alert_retrain(ModelContext.load(model), RetrainOutcome.model_validate(outcome), context)


def _done_or_skip(result: Any, done: bool, reason: str | None) -> Any:
    """``result`` when ``done``; else the task is skipped with ``reason``."""
    if not done:
        raise AirflowSkipException(reason or "nothing to do")
    return result


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


# -- airloop_alert_outbox ---------------------------------------------------------------------------------------


#: Task states after which a task sends nothing more.
FINISHED_STATES = {"success", "failed", "skipped", "upstream_failed", "removed"}


def redeliver_queued_alerts(grace_minutes: float, context: Mapping[str, Any]) -> dict[str, Any]:
    """Send the alerts queued more than ``grace_minutes`` ago that a channel has not delivered, for every model."""
    config = settings()
    folder = load_model_specs(config.models_dir, cache_dir=config.cache_dir / "specs")
    ti = context["ti"]

    def task_finished(alert: AlertQueuedPayload) -> bool:
        """Whether the task that queued ``alert`` is done with it (failed, succeeded, gone): asked through the
        Task SDK, which answers from Airflow's metadata through the API server."""
        if not (alert.dag_id and alert.run_id and alert.task_id):
            return True
        states = ti.get_task_states(
            dag_id=alert.dag_id, task_ids=[alert.task_id], run_ids=[alert.run_id], map_index=alert.map_index
        )
        mapped = alert.map_index is not None and alert.map_index >= 0
        state = states.get(alert.run_id, {}).get(
            f"{alert.task_id}_{alert.map_index}" if mapped else alert.task_id
        )
        return state is None or str(state) in FINISHED_STATES

    return redeliver_alerts(
        open_warehouse(config.warehouse_url),
        {spec.name: spec for spec in folder.specs},
        context,
        grace=timedelta(minutes=grace_minutes),
        task_finished=task_finished,
    )
