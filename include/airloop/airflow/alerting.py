"""Alerts sent by airloop's tasks: composed by :mod:`airloop.alerts`, delivered by the providers' notifiers, at least
once.

An alert task first queues its alert in the outbox (:mod:`airloop.store.outbox`, in the event log), then sends it
by each channel not yet recorded as delivered, recording each delivery (kind ``alert_sent``, with the DAG run it
belongs to): a retried task re-sends only what failed. An alert still owed when the task's retries run out stays
queued; the ``airloop_alert_outbox`` DAG sends it again (:func:`redeliver_alerts`) until every channel has
delivered it. Task failures are announced by an on-failure callback (:func:`alert_task_failure`, wired by
:class:`airloop.airflow.dagkit.FailureAlert`), queued only when a channel failed.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from airloop.airflow.notify import (
    AlertDeliveryError,
    ChannelResult,
    configured_channels,
    raise_if_failed,
    send_alert,
)
from airloop.alerts import (
    Alert,
    drift_alert,
    failure_alert,
    quarantine_alert,
    retrain_alert,
    unrecorded_champion_alert,
)
from airloop.core.contracts import MonitorResult, Quarantined, RetrainOutcome
from airloop.core.events import AlertQueuedPayload, AlertSentPayload
from airloop.core.spec import ModelSpec
from airloop.model.context import ModelContext
from airloop.store.outbox import delivered_channels, queue_alert, record_delivery, undelivered_alerts

log = logging.getLogger(__name__)

#: Characters of an exception's message put in a failure alert; the task log has the rest.
MAX_ERROR_CHARS = 1500
#: Tasks whose ids start with this deliver alerts (``alert_quarantine``, ``alert_drift``).
ALERT_TASK_PREFIX = "alert_"
#: What an undelivered alert's task failure says about it.
QUEUED_NOTE = (
    "; the alert stays queued and is sent again by airloop_alert_outbox until every channel delivers it"
)
#: How long the outbox leaves a queued alert to the task that queued it: longer than an alert task's retries.
OUTBOX_GRACE = timedelta(minutes=15)


def alert_quarantine(
    ctx: ModelContext, quarantined: Quarantined, context: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Tell the model's channels that a batch was quarantined; raises if a channel could not be reached."""
    links = _run_link(context)
    links["Data Docs"] = (ctx.settings.data_docs_dir / "index.html").as_uri()
    alert = quarantine_alert(
        model=ctx.name,
        partition=quarantined.partition,
        reason=quarantined.reason,
        rows=quarantined.rows,
        files=list(quarantined.files),
        quarantine_path=quarantined.quarantine_path,
        links=links,
        still_loaded=quarantined.still_loaded,
    )
    key = f"alert:quarantine:{ctx.name}:{quarantined.partition}:{quarantined.checksum}:"
    return _deliver(ctx, alert, key, context, partition=quarantined.partition)


def alert_drift(ctx: ModelContext, result: MonitorResult, context: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Tell the model's channels that a monitored window drifted; raises if a channel could not be reached."""
    window = result.window.label
    links = {}
    if result.report_url:
        links["Drift report"] = result.report_url
    if result.mlflow_run_url:
        links["MLflow run"] = result.mlflow_run_url
    links |= _run_link(context)
    drift = result.drift
    assert drift is not None and result.champion_version is not None  # a drifted window was monitored
    alert = drift_alert(
        ctx.name,
        window,
        champion_version=result.champion_version,
        drift_share=drift.share,
        drifted_features=drift.drifted_features,
        features=drift.features,
        threshold_share=drift.threshold_share,
        top_features=[f.to_json() for f in drift.top],
        prediction=result.prediction.to_json() if result.prediction else None,
        quality=result.quality.to_json() if result.quality else None,
        reasons=result.reasons,
        links=links,
    )
    return _deliver(ctx, alert, f"alert:drift:{ctx.name}:{window}:", context, partition=result.window.last)


def alert_retrain(
    ctx: ModelContext, outcome: RetrainOutcome, context: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Tell the model's channels what a retrain decided; raises if a channel could not be reached."""
    alert = retrain_alert(outcome, _run_link(context))
    key = f"alert:retrain:{ctx.name}:{outcome.drift_event_id}:{outcome.train_run_id}:"
    return _deliver(ctx, alert, key, context, partition=outcome.window.split("..")[-1])


def alert_unrecorded_champion(
    ctx: ModelContext, moved: Mapping[str, Any], context: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Tell the model's channels that the champion alias was moved outside airloop (``moved``: the event's id, the
    ``registry`` and ``recorded`` versions and ``why``); raises if a channel could not be reached."""
    alert = unrecorded_champion_alert(
        ctx.name,
        registry_version=moved["registry"],
        recorded_version=moved["recorded"],
        why=moved["why"],
        links=_run_link(context),
    )
    return _deliver(ctx, alert, unrecorded_champion_key(ctx.name, moved["event_id"]), context)


def unrecorded_champion_key(model: str, event_id: int) -> str:
    """The outbox key of the alert for the ``champion_unrecorded`` event ``event_id``."""
    return f"alert:champion_unrecorded:{model}:{event_id}:"


def alert_owed(ctx: ModelContext, key: str) -> bool:
    """Whether a channel of the model has not delivered the alert ``key`` yet (never sent, or failed)."""
    channels = configured_channels(ctx.spec.alerts)
    return set(channels) != delivered_channels(ctx.warehouse, key, channels)


def alert_task_failure(ctx: ModelContext, context: Mapping[str, Any]) -> list[dict[str, Any]]:
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
            ctx.name,
            dag_id=ti.dag_id,
            task_id=ti.task_id,
            run_id=ti.run_id,
            try_number=ti.try_number,
            error=message[:MAX_ERROR_CHARS],
            links=_run_link(context),
        )
        results = send_alert(ctx.spec.alerts, alert, context)
        if not all(r.ok for r in results):
            # Queued only now: a failure alert that went out must not create or touch the warehouse.
            # Hashed: a run id may be long, and the key must fit the event log's dedup key.
            attempt = f"{ti.dag_id}\0{ti.run_id}\0{ti.task_id}\0{ti.map_index}\0{ti.try_number}"
            key = f"alert:failure:{ctx.name}:{hashlib.sha256(attempt.encode()).hexdigest()[:32]}:"
            _queue(ctx, alert, key, context)
            _record(
                ctx.warehouse,
                ctx.name,
                key,
                results,
                subject=alert.subject,
                dag_id=ti.dag_id,
                run_id=ti.run_id,
            )
    except Exception:  # a failure alert must never hide the task's own error
        log.exception("the failure alert for %s.%s of %s could not be sent", ti.dag_id, ti.task_id, ctx.name)
        return []
    return [{"channel": r.channel, "ok": r.ok, "error": r.error} for r in results]


def redeliver_alerts(
    engine: Engine,
    specs: Mapping[str, ModelSpec],
    context: Mapping[str, Any],
    *,
    grace: timedelta = OUTBOX_GRACE,
    now: datetime | None = None,
    task_finished: Callable[[AlertQueuedPayload], bool] = lambda _alert: True,
) -> dict[str, Any]:
    """Send every alert queued more than ``grace`` ago by the channels that have not delivered it yet, recording
    each delivery; raises :class:`~airloop.airflow.notify.AlertDeliveryError` when a channel failed again (the
    alert stays queued for the next run).

    ``specs`` are the deployment's models by name: a channel's connection comes from its model's spec as it is
    now. A channel the spec no longer configures stays owed (``airloop status`` lists it) and is not tried. An
    alert whose task may still send it (``task_finished`` says no: retrying, queued, cleared) is left to the task,
    so the two never send it at once.
    """
    owed = undelivered_alerts(engine, queued_before=(now or datetime.now(UTC)) - grace)
    failed: list[ChannelResult] = []
    delivered = skipped = waiting = 0
    for item in owed:
        if not task_finished(item.alert):
            waiting += 1
            continue
        spec = specs.get(item.model)
        if spec is None:
            log.warning("alert %r of %s is owed but no spec names that model", item.alert.subject, item.model)
            skipped += 1
            continue
        queued = item.alert
        alert = Alert(
            subject=queued.subject, text=queued.text, html=queued.html, slack_text=queued.slack_text
        )
        already = set(configured_channels(spec.alerts)) - set(item.missing)
        results = send_alert(spec.alerts, alert, context, skip=already)
        delivered += _record(
            engine,
            item.model,
            queued.key,
            results,
            subject=queued.subject,
            dag_id=queued.dag_id,
            run_id=queued.run_id,
            partition=item.partition,
        )
        failed += [result for result in results if not result.ok]
    summary = {
        "owed": len(owed),
        "delivered": delivered,
        "failed": len(failed),
        "left_to_their_task": waiting,
        "unknown_model": skipped,
    }
    log.info("alert outbox: %s", summary)
    raise_if_failed(failed, QUEUED_NOTE)
    return summary


def _deliver(
    ctx: ModelContext, alert: Alert, key: str, context: Mapping[str, Any], *, partition: str | None = None
) -> list[dict[str, Any]]:
    """Queue ``alert`` under ``key``, send it by the channels not yet recorded as delivered, record the delivered
    ones, and raise :class:`~airloop.airflow.notify.AlertDeliveryError` for the failed ones."""
    _queue(ctx, alert, key, context, partition=partition)
    sent = delivered_channels(ctx.warehouse, key, configured_channels(ctx.spec.alerts))
    results = send_alert(ctx.spec.alerts, alert, context, skip=sent)
    ti = context.get("ti")
    _record(
        ctx.warehouse,
        ctx.name,
        key,
        results,
        subject=alert.subject,
        dag_id=getattr(ti, "dag_id", None),
        run_id=getattr(ti, "run_id", None),
        partition=partition,
    )
    raise_if_failed(results, QUEUED_NOTE)
    return [{"channel": r.channel, "ok": r.ok, "error": r.error} for r in results]


def _queue(
    ctx: ModelContext, alert: Alert, key: str, context: Mapping[str, Any], *, partition: str | None = None
) -> None:
    ti = context.get("ti")
    queued = AlertQueuedPayload(
        key=key,
        channels=configured_channels(ctx.spec.alerts),
        subject=alert.subject,
        text=alert.text,
        html=alert.html,
        slack_text=alert.slack_text,
        dag_id=getattr(ti, "dag_id", None),
        run_id=getattr(ti, "run_id", None),
        task_id=getattr(ti, "task_id", None),
        map_index=getattr(ti, "map_index", None),
    )
    queue_alert(ctx.warehouse, ctx.name, queued, partition=partition)


def _record(
    engine: Engine,
    model: str,
    key: str,
    results: list[ChannelResult],
    *,
    subject: str,
    dag_id: str | None,
    run_id: str | None,
    partition: str | None = None,
) -> int:
    """Record each channel of ``results`` that delivered the alert keyed ``key``; how many did."""
    delivered = [result for result in results if result.ok]
    for result in delivered:
        sent = AlertSentPayload(
            channel=result.channel, conn_id=result.conn_id, subject=subject, dag_id=dag_id, run_id=run_id
        )
        record_delivery(engine, model, key, sent, partition=partition)
    return len(delivered)


def _run_link(context: Mapping[str, Any]) -> dict[str, str]:
    ti = context.get("ti")
    return {"Airflow run": ti.log_url} if ti is not None else {}
