"""Monitoring: Evidently reports of the champion's training data against the latest window of scored data.

One run covers the ``monitoring.window_days`` complete days before the end of its Airflow data interval:

* **reference**: a fixed-seed sample (``reference_rows``) of the rows the champion was fitted on, the train and
  validation partitions its training run recorded (:mod:`airloop.monitor.frames`), with the champion's
  predictions for prediction drift;
* **current**: the window's rows scored by the champion, sampled to ``current_rows`` for Evidently. Quality is
  computed on every row whose label has arrived by the end of the window (event time plus
  ``target.label_delay_hours``), against the champion's figure on its own holdout.

Windows with fewer than ``min_rows`` scored rows get figures and a "no decision" but no Evidently report.

The outputs: one HTML page under ``<reports_dir>/evidently/<model>/`` (:mod:`airloop.monitor.reports`); a
monitoring run in the model's MLflow experiment with the page, the figures and the decision; one row per model and
window in ``airloop_monitoring`` (replaced when the window is monitored again). The decision itself is
:func:`airloop.monitor.drift.drift_decision`; on drift, :func:`record_drift` writes the event the retraining sensor
waits for.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine

from airloop.core.contracts import (
    ColumnDrift,
    DriftRecorded,
    DriftSummary,
    MonitoredWindow,
    MonitorResult,
    QualityFigures,
    QualitySummary,
    RowCounts,
)
from airloop.core.errors import AirloopError
from airloop.core.events import DriftHandledPayload, DriftPayload, Event, EventKind
from airloop.core.partitions import complete_partitions, last_boundary
from airloop.core.spec import MonitoringSpec
from airloop.core.version import code_version
from airloop.model.context import ModelContext
from airloop.model.features import feature_kinds
from airloop.model.lineage import airflow_tags
from airloop.model.predictions import scored_rows
from airloop.model.task import PREDICTION, Metric, primary_metric
from airloop.monitor.drift import TOP_FEATURES, DriftDecision, DriftFigures, drift_decision
from airloop.monitor.frames import (
    Champion,
    champion_frames,
    champion_reference,
    evidently_frame,
    labels_arrived,
    sample_rows,
)
from airloop.monitor.reports import drift_snapshot, quality_snapshot, summary_snapshot, write_report_page
from airloop.store.events import event_id, events_of, record_event
from airloop.store.ledger import passed_entries, rows_of
from airloop.store.monitoring import monitoring_history, store_result
from airloop.store.schema import PARTITION
from airloop.vendor import evidently as evidently_snapshot

if TYPE_CHECKING:
    import pandas as pd
    from evidently.core.report import Snapshot


class MonitoringError(AirloopError):
    """A model cannot be monitored as specified (no ``monitoring`` section, no training lineage...)."""


@dataclass(frozen=True)
class Window:
    """The partitions a monitoring run covers (keys, in order), and the moment labels must have arrived by."""

    partitions: list[str]
    end: datetime

    @property
    def first(self) -> str:
        return self.partitions[0]

    @property
    def last(self) -> str:
        return self.partitions[-1]

    @property
    def label(self) -> str:
        return f"{self.first}..{self.last}"

    def contract(self) -> MonitoredWindow:
        return MonitoredWindow(first=self.first, last=self.last, end=self.end.isoformat())


def monitoring_window(interval_end: datetime | str, window_days: float, schedule: str) -> Window:
    """The complete partitions of the model's ``schedule`` in the ``window_days`` that end at its last boundary
    at or before ``interval_end`` (the end of the run's data interval; an end inside a partition leaves that
    partition out). Labels count when they have arrived by ``interval_end`` itself."""
    end = datetime.fromisoformat(interval_end) if isinstance(interval_end, str) else interval_end
    end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
    boundary = last_boundary(schedule, end)
    partitions = complete_partitions(schedule, boundary - timedelta(days=window_days), boundary)
    if not partitions:
        raise MonitoringError(
            f"no whole partition of schedule {schedule!r} lies in the {window_days:g} days before "
            f"{boundary.isoformat()}: monitoring.window_days is shorter than one of the model's intervals"
        )
    return Window(partitions=partitions, end=end)


def monitoring_policy(ctx: ModelContext) -> MonitoringSpec:
    """The spec's monitoring section; raises if it has none."""
    if ctx.spec.monitoring is None:
        raise MonitoringError(f"{ctx.name}: the spec has no 'monitoring' section")
    return ctx.spec.monitoring


def monitor_window(
    ctx: ModelContext, interval_end: datetime | str, *, airflow: Mapping[str, Any] | None = None
) -> MonitorResult:
    """Monitor the window ending at ``interval_end``: report, figures, decision, MLflow run, warehouse row.

    ``airflow`` holds the Airflow run's identifiers, logged as ``airflow.*`` tags. ``monitored`` is False (with
    the ``reason``) when there is no champion yet, so nothing to monitor.
    """
    started = time.perf_counter()
    spec = ctx.spec
    policy = monitoring_policy(ctx)
    window = monitoring_window(interval_end, policy.window_days, spec.schedule)
    champion = champion_reference(ctx)
    if champion is None:
        return MonitorResult(
            model=ctx.name,
            window=MonitoredWindow(first=window.first, last=window.last),
            monitored=False,
            reason=f"{spec.registered_model} has no champion yet: nothing is scored to monitor",
        )
    if not champion.training:
        raise MonitoringError(
            f"{ctx.name}: the champion v{champion.version}'s lineage lists no training partitions"
        )

    current, stale = scored_rows(ctx, window.partitions)
    arrived = labels_arrived(current, spec, window.end)
    quality, quality_metrics = _quality(ctx, current.loc[arrived], primary_metric(spec), champion)
    available = rows_of(passed_entries(ctx.warehouse, ctx.name), champion.training)
    # Evidently runs only where a decision can follow: min_rows is the policy's floor for both sides.
    reports = (
        _run_reports(ctx, policy, champion, current, arrived, quality)
        if len(current) >= policy.min_rows and available >= policy.min_rows
        else _Reports()
    )
    figures = DriftFigures(
        current_rows=len(current),
        reference_rows=reports.sampled["reference"] or min(available, policy.reference_rows),
        features=reports.drift.features if reports.drift else (),
        prediction=reports.drift.prediction if reports.drift else None,
        quality=quality,
    )
    decision = drift_decision(figures, policy)
    record = {
        **figures.as_dict(),
        "window": window.contract().to_json(),
        "champion": {"version": champion.version, "run_id": champion.run_id},
        "sampled_rows": reports.sampled,
        "available_reference_rows": available,
        "labelled_rows": int(arrived.sum()),
        "stale_partitions": stale,
        "scored_partitions": sorted(set(current[PARTITION])),
        "versions": {str(k): int(v) for k, v in current["version"].value_counts().items()},
        "quality_metrics": quality_metrics,
        "evidently_quality": reports.quality,
        "data_quality": reports.data_quality,
        "decision": decision.as_dict(),
    }
    report_path = None
    if reports.sections:
        report_path = ctx.settings.reports_dir / "evidently" / spec.name / f"{window.label}.html"
        title = f"{spec.name}: {decision.outcome}, {window.label}"
        write_report_page(report_path, title, _page_facts(record, decision), reports.sections)
    run_id, run_url = _log_monitoring_run(ctx, champion, window, record, decision, report_path, airflow)
    monitoring_id = store_result(
        ctx.warehouse,
        {
            "model": spec.name,
            "window_first": window.first,
            "window_last": window.last,
            "champion_version": champion.version,
            "outcome": decision.outcome,
            "drifted": decision.drifted,
            "drift_share": figures.drift_share,
            "drifted_features": len(figures.drifted_features) if figures.features else None,
            "features": len(figures.features) or None,
            "prediction_drift": figures.prediction.score if figures.prediction else None,
            "quality_metric": quality.metric,
            "quality_current": quality.current,
            "quality_baseline": quality.baseline,
            "quality_drop": quality.drop,
            "current_rows": figures.current_rows,
            "reference_rows": figures.reference_rows,
            "labelled_rows": quality.labelled_rows,
            "reasons": json.dumps(decision.reasons),
            "figures": json.dumps(record, default=str, sort_keys=True),
            "report_path": str(report_path) if report_path else None,
            "mlflow_run_id": run_id,
            "mlflow_run_url": run_url,
            "airflow_run_id": (airflow or {}).get("run_id"),
        },
    )
    drifted = figures.drifted_features
    return MonitorResult(
        model=spec.name,
        window=window.contract(),
        monitored=True,
        champion_version=champion.version,
        outcome=decision.outcome,
        drifted=decision.drifted,
        decided=decision.decided,
        reasons=decision.reasons,
        rows=RowCounts(
            current=figures.current_rows,
            reference=figures.reference_rows,
            labelled=int(arrived.sum()),
            sampled_current=reports.sampled["current"],
            stale_partitions=stale,
        ),
        drift=DriftSummary(
            share=figures.drift_share,
            drifted_features=len(drifted),
            features=len(figures.features),
            threshold_share=policy.drift_share,
            top=drifted[:TOP_FEATURES],
        ),
        prediction=figures.prediction,
        quality=QualitySummary(**quality.to_json(), drop=quality.drop),
        report_path=str(report_path) if report_path else None,
        report_url=report_path.as_uri() if report_path else None,
        mlflow_run_id=run_id,
        mlflow_run_url=run_url,
        monitoring_id=monitoring_id,
        seconds=round(time.perf_counter() - started, 1),
    )


def last_monitoring(engine: Engine, model: str) -> dict[str, Any] | None:
    """For ``airloop status``: the latest monitored window's outcome, figures, report and MLflow run."""
    rows = monitoring_history(engine, model, limit=1)
    return rows[0] if rows else None


def record_drift(
    ctx: ModelContext, result: MonitorResult, *, airflow_run_id: str | None = None
) -> DriftRecorded:
    """Write the drift event of a monitored window, once per window however often it is re-run; it is pending
    until a retrain handles it. Returns the event's id and key, for the drift Asset's extra."""
    window = result.window.label
    key = f"{EventKind.DRIFT.value}:{ctx.name}:{window}"
    payload = DriftPayload(**result.model_dump(), airflow_run_id=airflow_run_id)
    written = record_event(ctx.warehouse, ctx.name, payload, partition=result.window.last, dedup_key=key)
    return DriftRecorded(
        model=ctx.name,
        window=window,
        event_id=event_id(ctx.warehouse, key),
        dedup_key=key,
        new=written,
        drift_share=result.drift.share if result.drift else None,
        quality_drop=result.quality.drop if result.quality else None,
        report_path=result.report_path,
        mlflow_run_url=result.mlflow_run_url,
    )


def mark_drift_handled(engine: Engine, model: str, handled: DriftHandledPayload) -> bool:
    """Close a drift event (``handled`` says how: the retrain's outcome); once per event."""
    key = f"{EventKind.DRIFT_HANDLED.value}:{model}:{handled.drift_event_id}"
    return record_event(engine, model, handled, dedup_key=key)


def open_drift_events(engine: Engine, model: str) -> list[Event]:
    """For ``airloop status`` and the retraining sensor: drift events not handled yet, oldest first."""
    events = events_of(engine, model, [EventKind.DRIFT, EventKind.DRIFT_HANDLED])
    handled = {e.payload.drift_event_id for e in events if e.kind == EventKind.DRIFT_HANDLED}
    return [e for e in events if e.kind == EventKind.DRIFT and e.id not in handled]


@dataclass(frozen=True)
class _Reports:
    """The Evidently snapshots of a run (as page sections) and what was read from them."""

    sections: Sequence[tuple[str, Snapshot]] = ()
    drift: evidently_snapshot.SnapshotDrift | None = None
    data_quality: Mapping[str, Any] = field(default_factory=dict)
    quality: Mapping[str, float] = field(default_factory=dict)
    sampled: Mapping[str, int] = field(default_factory=lambda: {"current": 0, "reference": 0})


def _run_reports(
    ctx: ModelContext,
    policy: MonitoringSpec,
    champion: Champion,
    current: pd.DataFrame,
    arrived: pd.Series,
    quality: QualityFigures,
) -> _Reports:
    """Drift and data quality on the samples; the model's quality when enough labels arrived."""
    spec, task = ctx.spec, ctx.task
    reference_frame, holdout_frame = champion_frames(ctx, policy, champion)
    current_sample = sample_rows(current, policy.current_rows, policy.seed)
    numeric, categorical = feature_kinds(spec)
    current_frame = evidently_frame(current_sample, spec, task, task.stored_predictions(current_sample))
    kinds = {"numeric": numeric, "categorical": categorical, "prediction_numeric": task.prediction_is_numeric}
    drift = drift_snapshot(reference_frame, current_frame, policy, **kinds)
    summary = summary_snapshot(reference_frame, current_frame, **kinds)
    sections: list[tuple[str, Snapshot]] = [
        ("Data drift and prediction drift (reference: the champion's training data)", drift),
        ("Data quality", summary),
    ]
    model_quality: dict[str, float] = {}
    if quality.labelled_rows >= policy.min_rows and quality.current is not None and holdout_frame is not None:
        labelled = sample_rows(current.loc[arrived], policy.current_rows, policy.seed)
        current_quality = task.quality_frame(task.labels(labelled), task.stored_predictions(labelled))
        report = quality_snapshot(task, holdout_frame, current_quality)
        model_quality = evidently_snapshot.single_values(report.dict(), task.quality_metric_names)
        sections.append(("Model quality (labelled rows; reference: the champion's holdout)", report))
    return _Reports(
        sections=sections,
        drift=evidently_snapshot.drift_figures(drift.dict(), spec.features, PREDICTION),
        data_quality=evidently_snapshot.data_quality(summary.dict()),
        quality=model_quality,
        sampled={"current": len(current_sample), "reference": len(reference_frame)},
    )


def _quality(
    ctx: ModelContext, labelled: pd.DataFrame, metric: Metric, champion: Champion
) -> tuple[QualityFigures, dict[str, float | None]]:
    """The primary metric on every labelled row of the window (the gate's own definitions, so it compares with
    the holdout figure), and all the kind's metrics for the record."""
    task = ctx.task
    if labelled.empty:
        values: dict[str, float | None] = {}
    else:
        labels = task.labels(labelled)
        values = {
            k: _finite(v) for k, v in task.all_metrics(labels, task.stored_predictions(labelled)).items()
        }
        values |= task.label_figures(labels)
    figures = QualityFigures(
        metric=metric.name,
        higher_is_better=metric.higher_is_better,
        labelled_rows=len(labelled),
        current=values.get(metric.name),
        baseline=_finite(champion.holdout_metrics.get(metric.name)),
    )
    return figures, values


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _page_facts(record: Mapping[str, Any], decision: DriftDecision) -> list[tuple[str, str]]:
    sampled, champion, window = record["sampled_rows"], record["champion"], record["window"]
    return [
        ("Outcome", decision.outcome),
        ("Reasons", "\n".join(decision.reasons)),
        ("Window", f"{window['first']}..{window['last']} (labels known by {window['end']})"),
        ("Champion", f"v{champion['version']} (run {champion['run_id']})"),
        ("Current", f"{sampled['current']:,} of {record['current_rows']:,} scored rows"),
        (
            "Reference",
            f"{sampled['reference']:,} of {record['available_reference_rows']:,} training rows (fixed seed)",
        ),
        ("Labelled", f"{record['labelled_rows']:,} rows"),
    ]


def _log_monitoring_run(
    ctx: ModelContext,
    champion: Champion,
    window: Window,
    record: Mapping[str, Any],
    decision: DriftDecision,
    report_path: Path | None,
    airflow: Mapping[str, Any] | None,
) -> tuple[str, str | None]:
    """A monitoring run in the model's experiment, one per window: a re-run logs into the same run."""
    import mlflow

    spec, client = ctx.spec, ctx.registry.client
    tags = {
        "airloop.model": spec.name,
        "airloop.role": "monitoring",
        "airloop.window": window.label,
        "airloop.champion_version": champion.version,
        "airloop.champion_run_id": champion.run_id,
        "airloop.drift": decision.outcome,
        "airloop.drift.reasons": "; ".join(decision.reasons)[:5000],
        "airloop.code_version": code_version(),
        **airflow_tags(airflow),
    }
    existing = client.search_runs(
        [champion.experiment_id],
        filter_string=f"tags.`airloop.role` = 'monitoring' and tags.`airloop.window` = '{window.label}'",
        max_results=1,
    )
    metrics: dict[str, float] = {
        "rows/current": record["current_rows"],
        "rows/reference": record["reference_rows"],
        "rows/labelled": record["labelled_rows"],
        "drift/drifted": float(decision.drifted),
    }
    features = [ColumnDrift.model_validate(f) for f in record["features"]]
    if features:
        drifted = [f for f in features if f.drifted]
        metrics["drift/share"] = len(drifted) / len(features)
        metrics["drift/drifted_features"] = len(drifted)
        metrics |= {f"drift/{f.column}": f.score for f in features}
    if record["prediction"]:
        metrics["drift/prediction"] = record["prediction"]["score"]
    metrics |= {f"quality/{k}": v for k, v in record["quality_metrics"].items() if v is not None}
    metrics |= {f"evidently/{k}": v for k, v in record["evidently_quality"].items() if math.isfinite(v)}
    with mlflow.start_run(
        run_id=existing[0].info.run_id if existing else None,
        experiment_id=champion.experiment_id,
        run_name=f"monitor {window.label}",
        tags=tags,
        description=f"Drift and quality of {spec.name} v{champion.version} on {window.label}: {decision.outcome}.",
    ) as run:
        mlflow.log_metrics(metrics)
        mlflow.log_dict(dict(record), "monitoring/figures.json")
        if report_path is not None:
            mlflow.log_artifact(str(report_path), "evidently")
    return run.info.run_id, ctx.registry.run_url(champion.experiment_id, run.info.run_id)
