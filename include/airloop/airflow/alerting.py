"""Alerts sent by airloop's tasks: composed by :mod:`airloop.alerts`, delivered by the providers' notifiers.

Every channel an alert task delivered is written to the event log (kind ``alert_sent``, with the DAG run it
belongs to), so a retried task re-sends only what failed. Task failures are announced by an on-failure callback
(:func:`alert_task_failure`, wired by :class:`airloop.airflow.dagkit.FailureAlert`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from airloop import warehouse
from airloop.airflow.notify import AlertDeliveryError, raise_if_failed, send_alert
from airloop.alerts import Alert, drift_alert, failure_alert, quarantine_alert, retrain_alert
from airloop.ingest import model_spec
from airloop.settings import settings

log = logging.getLogger(__name__)

ALERT_SENT = "alert_sent"
#: Characters of an exception's message put in a failure alert; the task log has the rest.
MAX_ERROR_CHARS = 1500
#: Tasks whose ids start with this deliver alerts (``alert_quarantine``, ``alert_drift``).
ALERT_TASK_PREFIX = "alert_"


def alert_quarantine(
    model: str, quarantined: Mapping[str, Any], context: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Tell the model's channels that a batch was quarantined; raises if a channel could not be reached."""
    config = settings()
    partition = quarantined["partition"]
    links = _run_link(context)
    links["Data Docs"] = (config.data_docs_dir / "index.html").as_uri()
    alert = quarantine_alert(
        model=model,
        partition=partition,
        reason=quarantined["reason"],
        rows=quarantined.get("rows"),
        files=list(quarantined.get("files", [])),
        quarantine_path=quarantined["quarantine_path"],
        links=links,
    )
    key = f"alert:quarantine:{model}:{partition}:{quarantined['checksum']}:"
    return _deliver(model, alert, key, context, partition=partition)


def alert_drift(model: str, result: Mapping[str, Any], context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tell the model's channels that a monitored window drifted (``result`` is what
    :func:`airloop.monitoring.monitor_window` returned); raises if a channel could not be reached."""
    window = f"{result['window']['first']}..{result['window']['last']}"
    links = {}
    if result.get("report_url"):
        links["Drift report"] = result["report_url"]
    if result.get("mlflow_run_url"):
        links["MLflow run"] = result["mlflow_run_url"]
    links |= _run_link(context)
    drift = result["drift"]
    alert = drift_alert(
        model,
        window,
        champion_version=result["champion_version"],
        drift_share=drift["share"],
        drifted_features=drift["drifted_features"],
        features=drift["features"],
        threshold_share=drift["threshold_share"],
        top_features=drift["top"],
        prediction=result.get("prediction"),
        quality=result.get("quality"),
        reasons=result["reasons"],
        links=links,
    )
    return _deliver(
        model, alert, f"alert:drift:{model}:{window}:", context, partition=result["window"]["last"]
    )


def alert_retrain(model: str, outcome: Mapping[str, Any], context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tell the model's channels what a drift-triggered retrain decided; raises if a channel could not be reached."""
    alert = retrain_alert(model, outcome, _run_link(context))
    key = f"alert:retrain:{model}:{outcome['drift_event_id']}:{outcome['train_run_id']}:"
    return _deliver(model, alert, key, context, partition=outcome["window"].split("..")[-1])


def alert_task_failure(model: str, context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tell the model's channels that a task failed for good; the on-failure callback of every airloop task.

    A task right downstream of an alert task (``alert_*``) is skipped: it fails on purpose to show the run red
    after the alert told the news (the ingest DAG's ``fail_quarantined``), and the alert task's own failure is
    announced by the alert task. When the failure is itself an alert that could not be delivered, the channels
    that work say so. Not written to the event log, which lives in the warehouse: a failure (e.g. a partition
    that never landed) must not create or touch it. Never raises: Airflow would only log a callback's error.
    """
    ti = context["ti"]
    task = context.get("task")
    error = context.get("exception")
    upstream = getattr(task, "upstream_task_ids", ())
    if not isinstance(error, AlertDeliveryError) and any(t.startswith(ALERT_TASK_PREFIX) for t in upstream):
        log.info("%s.%s failed after an alert task: already reported", ti.dag_id, ti.task_id)
        return []
    try:
        message = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
        alert = failure_alert(
            model,
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            try_number=ti.try_number,
            error=message[:MAX_ERROR_CHARS],
            links=_run_link(context),
        )
        results = send_alert(model_spec(model).alerts, alert, context)
    except Exception:  # a failure alert must never hide the task's own error
        log.exception("the failure alert for %s.%s of %s could not be sent", ti.dag_id, ti.task_id, model)
        return []
    return [{"channel": r.channel, "ok": r.ok, "error": r.error} for r in results]


def _deliver(
    model: str,
    alert: Alert,
    key: str,
    context: Mapping[str, Any],
    *,
    partition: str | None = None,
) -> list[dict[str, Any]]:
    """Send ``alert`` by the channels not yet recorded under ``key``, record the delivered ones, and raise
    :class:`~airloop.airflow.notify.AlertDeliveryError` for the failed ones."""
    config = settings()
    spec = model_spec(model, config)
    engine = warehouse.engine_for(config.warehouse_url)
    warehouse.ensure_tables(engine)
    sent = {k.removeprefix(key) for k in warehouse.event_keys(engine, key)}
    results = send_alert(spec.alerts, alert, context, skip=sent)
    ti = context.get("ti")
    for result in results:
        if result.ok:
            warehouse.record_event(
                engine,
                model,
                ALERT_SENT,
                {
                    "channel": result.channel,
                    "conn_id": result.conn_id,
                    "subject": alert.subject,
                    "dag_id": getattr(ti, "dag_id", None),
                    "run_id": getattr(ti, "run_id", None),
                },
                partition=partition,
                dedup_key=key + result.channel,
            )
    raise_if_failed(results)
    return [{"channel": r.channel, "ok": r.ok, "error": r.error} for r in results]


def _run_link(context: Mapping[str, Any]) -> dict[str, str]:
    ti = context.get("ti")
    return {"Airflow run": ti.log_url} if ti is not None else {}
