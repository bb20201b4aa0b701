"""Monitoring: Evidently reports of the champion's training data against the latest window of scored data.

One run covers the ``monitoring.window_days`` complete days before the end of its Airflow data interval:

* **reference**: a fixed-seed sample (``reference_rows``) of the rows the champion was fitted on, the train and
  validation partitions its training run recorded in ``lineage.json``, read back from the warehouse in a fixed
  order, so the same champion always gets the same reference; scored by the champion for prediction drift;
* **current**: the window's rows scored by the champion (``<model>_predictions``), sampled to ``current_rows``
  for Evidently. Quality is computed on every row whose label has arrived by the end of the window (event time
  plus ``target.label_delay_hours``), against the champion's figure on its own holdout.

Evidently's costs grow with the rows it compares (1M against 1M rows of 20 columns: 37 s and 3.7 GiB here), while
the drift scores of a 50,000-row sample are within sampling noise of the full ones: see ``benchmarks/drift.py``.
Windows with fewer than ``min_rows`` scored rows get figures and a "no decision" but no Evidently report.

The outputs: one HTML page under ``<reports_dir>/evidently/<model>/`` holding Evidently's drift, prediction drift
and data-quality report and, when enough labels arrived, its classification report (labelled window rows
against the champion's holdout); a monitoring run in the model's MLflow experiment with the page, the figures and
the decision; one row per model and window in the warehouse table ``airloop_monitoring`` (replaced when the
window is monitored again) for trends and ``airloop status``. The decision itself is :func:`airloop.drift.
drift_decision`; on drift, :func:`record_drift` writes the event the retraining sensor waits for.

pandas, MLflow and Evidently are imported inside the functions: DAG files and the CLI import this module cheaply.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from airloop import warehouse
from airloop.drift import (
    TOP_FEATURES,
    ColumnDrift,
    DriftDecision,
    DriftFigures,
    QualityFigures,
    drift_decision,
)
from airloop.errors import AirloopError
from airloop.ingest import model_spec
from airloop.scoring import PROBABILITY, create_table, read_rows, scored_rows
from airloop.settings import Settings, settings
from airloop.spec import ModelSpec, MonitoringSpec

if TYPE_CHECKING:
    import pandas as pd
    from evidently import Report
    from evidently.core.report import Snapshot
    from mlflow import MlflowClient

#: The column of predicted probabilities in the frames Evidently compares.
PREDICTION = "prediction"
#: The 0/1 label column in the classification report's frames.
LABEL = "label"
#: Event kinds: a drift found (status "pending" until handled), and its handling (by retraining).
DRIFT, DRIFT_HANDLED = "drift", "drift_handled"

_metadata = sa.MetaData()

#: One row per model and window: the figures of a monitoring run, for trends and status.
monitoring_runs = sa.Table(
    "airloop_monitoring",
    _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("window_first", sa.String(10), nullable=False),
    sa.Column("window_last", sa.String(10), nullable=False),
    sa.Column("champion_version", sa.String(32)),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("drifted", sa.Boolean, nullable=False),
    sa.Column("drift_share", sa.Float),
    sa.Column("drifted_features", sa.Integer),
    sa.Column("features", sa.Integer),
    sa.Column("prediction_drift", sa.Float),
    sa.Column("quality_metric", sa.String(32)),
    sa.Column("quality_current", sa.Float),
    sa.Column("quality_baseline", sa.Float),
    sa.Column("quality_drop", sa.Float),
    sa.Column("current_rows", sa.Integer, nullable=False),
    sa.Column("reference_rows", sa.Integer, nullable=False),
    sa.Column("labelled_rows", sa.Integer, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("figures", sa.Text, nullable=False),
    sa.Column("report_path", sa.Text),
    sa.Column("mlflow_run_id", sa.String(64)),
    sa.Column("mlflow_run_url", sa.Text),
    sa.Column("airflow_run_id", sa.String(250)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("model", "window_first", "window_last", name="uq_airloop_monitoring_window"),
)


class MonitoringError(AirloopError):
    """A model cannot be monitored as specified (no ``monitoring`` section, no training lineage...)."""


@dataclass(frozen=True)
class Window:
    """The complete days a monitoring run covers, and the moment labels must have arrived by."""

    first: date
    last: date
    end: datetime

    @property
    def partitions(self) -> list[str]:
        days = (self.last - self.first).days + 1
        return [(self.first + timedelta(days=d)).isoformat() for d in range(days)]

    @property
    def label(self) -> str:
        return f"{self.first.isoformat()}..{self.last.isoformat()}"


def monitoring_window(interval_end: datetime | str, window_days: int) -> Window:
    """The ``window_days`` complete days before ``interval_end`` (the end of the run's data interval)."""
    end = datetime.fromisoformat(interval_end) if isinstance(interval_end, str) else interval_end
    end = end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
    last = (end - timedelta(days=1)).date()
    return Window(first=last - timedelta(days=window_days - 1), last=last, end=end)


@dataclass(frozen=True)
class Champion:
    """The champion's version and what its training run recorded: partitions by role, holdout metrics."""

    version: str
    run_id: str
    experiment_id: str
    training: list[str]
    holdout: list[str]
    holdout_metrics: dict[str, float]


def champion_reference(client: MlflowClient, spec: ModelSpec) -> Champion | None:
    """The current champion and its training lineage; None when there is no champion yet."""
    import mlflow

    from airloop.registry import champion_run

    found = champion_run(client, spec.registered_model)
    if found is None:
        return None
    version, run = found
    run_id = run.info.run_id
    try:
        lineage = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/lineage.json")
    except Exception as exc:  # any download error means the same: the run holds no usable lineage
        raise MonitoringError(
            f"{spec.name}: the champion v{version} (run {run_id}) has no lineage.json; its training data is unknown"
        ) from exc
    roles: dict[str, list[str]] = {}
    for item in lineage["partitions"]:
        roles.setdefault(item["role"], []).append(item["partition"])
    return Champion(
        version=str(version),
        run_id=run_id,
        experiment_id=run.info.experiment_id,
        training=sorted(roles.get("train", []) + roles.get("validation", [])),
        holdout=sorted(roles.get("holdout", [])),
        holdout_metrics={
            k.removeprefix("holdout/"): v for k, v in run.data.metrics.items() if k.startswith("holdout/")
        },
    )


def labels_arrived(frame: pd.DataFrame, spec: ModelSpec, end: datetime) -> pd.Series:
    """Which rows have a label by ``end``: a known target whose event time plus the label delay is not later."""
    import pandas as pd

    times = pd.to_datetime(frame[spec.time_column], utc=True)
    known_at = times + pd.Timedelta(hours=spec.target.label_delay_hours)
    return frame[spec.target.column].notna() & (known_at <= pd.Timestamp(end))


def sample_rows(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows drawn with ``seed``, in their original order: the same frame (read in a fixed
    order, see :func:`airloop.scoring.read_rows`) always gives the same sample."""
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=rows, random_state=seed).sort_index().reset_index(drop=True)


def drift_report(
    policy: MonitoringSpec,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction: str | None = PREDICTION,
) -> Report:
    """Evidently's drift report: every feature (and ``prediction``) with the policy's methods and thresholds,
    and the drifted share. Each column's verdict comes as a test, so the report includes tests."""
    from evidently import Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    items: list[Any] = [
        DataDriftPreset(
            columns=[*numeric, *categorical],
            drift_share=policy.drift_share,
            num_method=policy.num_method,
            cat_method=policy.cat_method,
            threshold=policy.column_threshold,
        )
    ]
    if prediction is not None:
        items.append(
            ValueDrift(column=prediction, method=policy.num_method, threshold=policy.column_threshold)
        )
    return Report(items, include_tests=True)


def drift_snapshot(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    policy: MonitoringSpec,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction: str | None = PREDICTION,
) -> Snapshot:
    """Run :func:`drift_report` on two frames holding the features (and ``prediction``)."""
    from evidently import Dataset

    definition = _definition(numeric, categorical, prediction)
    return drift_report(policy, numeric, categorical, prediction).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


def summary_snapshot(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction: str | None = PREDICTION,
) -> Snapshot:
    """Evidently's data-quality summary of both frames: rows, columns, duplicated and empty rows and columns,
    missing values overall and per column.

    Evidently's ``DatasetStats`` plus ``MissingValueCount`` per column, not ``DataSummaryPreset``: the preset adds a
    plotted distribution of every column, which the drift section shows already, and took 60 % of a monitor run
    (5 of 8 s). A report of its own, without tests: the default tests hold every statistic to the reference's
    ±10 %, noise next to the drift verdicts.
    """
    from evidently import Dataset, Report
    from evidently.metrics import MissingValueCount
    from evidently.presets import DatasetStats

    definition = _definition(numeric, categorical, prediction)
    columns = [*numeric, *categorical, *([prediction] if prediction else [])]
    items = [DatasetStats(include_tests=False), *(MissingValueCount(column=c, tests=[]) for c in columns)]
    return Report(items, include_tests=False).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


def quality_snapshot(reference: pd.DataFrame, current: pd.DataFrame) -> Snapshot:
    """Evidently's classification report on frames of :data:`LABEL` (0/1) and :data:`PREDICTION`."""
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.presets import ClassificationPreset

    definition = DataDefinition(
        numerical_columns=[PREDICTION],
        categorical_columns=[LABEL],
        classification=[BinaryClassification(target=LABEL, prediction_probas=PREDICTION, pos_label=1)],
    )
    return Report([ClassificationPreset()]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )


@dataclass(frozen=True)
class SnapshotFigures:
    """What airloop keeps of a drift snapshot: one :class:`ColumnDrift` per feature, and the prediction's."""

    features: list[ColumnDrift]
    prediction: ColumnDrift | None


def figures_from_snapshot(
    snapshot: Mapping[str, Any], features: Sequence[str], prediction: str | None = PREDICTION
) -> SnapshotFigures:
    """Extract the drift figures from ``snapshot.dict()`` of a :func:`drift_report` run.

    Evidently 0.7 gives each ``ValueDrift`` metric its resolved method and threshold in the config, the score as
    value, and the verdict as a test (FAIL: drifted), linked by the metric's id.
    """
    verdicts = {
        test["metric_config"]["metric_id"]: test["status"]
        for test in snapshot.get("tests", [])
        if test["metric_config"]["params"]["type"].endswith(":ValueDrift")
    }
    columns: dict[str, ColumnDrift] = {}
    for metric in snapshot["metrics"]:
        config = metric["config"]
        if not config["type"].endswith(":ValueDrift"):
            continue
        if metric["id"] not in verdicts:
            raise ValueError(
                f"drift of {config['column']!r} has no verdict: run the report with include_tests"
            )
        columns[config["column"]] = ColumnDrift(
            column=config["column"],
            method=config["method"],
            score=float(metric["value"]),
            threshold=float(config["threshold"]),
            drifted=verdicts[metric["id"]] == "FAIL",
        )
    missing = [f for f in features if f not in columns]
    if missing:
        raise ValueError(f"the snapshot has no drift figures for {', '.join(missing)}")
    return SnapshotFigures(
        features=[columns[f] for f in features],
        prediction=columns.get(prediction) if prediction else None,
    )


def data_quality_from_snapshot(snapshot: Mapping[str, Any]) -> dict[str, Any]:
    """The current data's rows, duplicated rows and missing shares from ``snapshot.dict()`` of
    :func:`summary_snapshot`."""
    quality: dict[str, Any] = {"missing_share": {}}
    for metric in snapshot["metrics"]:
        config, value = metric["config"], metric["value"]
        kind = config["type"].rsplit(":", 1)[-1]
        if kind == "RowCount":
            quality["rows"] = int(value)
        elif kind == "DuplicatedRowCount":
            quality["duplicated_rows"] = int(value)
        elif kind == "DatasetMissingValueCount":
            quality["missing_values_share"] = float(value["share"])
        elif kind == "MissingValueCount":
            quality["missing_share"][config["column"]] = float(value["share"])
    return quality


def classification_from_snapshot(snapshot: Mapping[str, Any]) -> dict[str, float]:
    """Evidently's classification metrics (current data) from ``snapshot.dict()`` of :func:`quality_snapshot`."""
    wanted = {"Accuracy": "accuracy", "Precision": "precision", "Recall": "recall", "F1Score": "f1"}
    wanted |= {"RocAuc": "roc_auc", "LogLoss": "log_loss"}
    return {
        wanted[kind]: float(metric["value"])
        for metric in snapshot["metrics"]
        if (kind := metric["config"]["type"].rsplit(":", 1)[-1]) in wanted
    }


def monitor_window(
    model: str,
    interval_end: datetime | str,
    *,
    lineage: Mapping[str, Any] | None = None,
    config: Settings | None = None,
) -> dict[str, Any]:
    """Monitor the window ending at ``interval_end``: report, figures, decision, MLflow run, warehouse row.

    ``lineage`` holds the Airflow run's identifiers, logged as ``airflow.*`` tags. Returns a JSON-able summary
    (``monitored`` False with the ``reason`` when there is no champion yet, so nothing to monitor).
    """
    import mlflow
    from mlflow import MlflowClient

    from airloop.training import search_metric

    started = time.perf_counter()
    config = config or settings()
    spec = model_spec(model, config)
    policy = monitoring_policy(spec)
    window = monitoring_window(interval_end, policy.window_days)
    engine = warehouse.engine_for(config.warehouse_url)
    warehouse.ensure_tables(engine, spec)
    create_table(engine, monitoring_runs)
    mlflow.set_tracking_uri(config.mlflow_tracking_uri)
    client = MlflowClient(config.mlflow_tracking_uri)
    champion = champion_reference(client, spec)
    if champion is None:
        return {
            "model": model,
            "window": {"first": window.first.isoformat(), "last": window.last.isoformat()},
            "monitored": False,
            "reason": f"{spec.registered_model} has no champion yet: nothing is scored to monitor",
        }
    if not champion.training:
        raise MonitoringError(
            f"{spec.name}: the champion v{champion.version}'s lineage lists no training partitions"
        )

    current, stale = scored_rows(engine, spec, window.partitions)
    arrived = labels_arrived(current, spec, window.end)
    quality, quality_metrics = _quality(current.loc[arrived], spec, search_metric(spec), champion)
    available = _ledger_rows(engine, spec, champion.training)
    # Evidently runs only where a decision can follow: min_rows is the policy's floor for both sides.
    reports = (
        _run_reports(engine, spec, policy, champion, current, arrived, quality, config.cache_dir)
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
        "window": {
            "first": window.first.isoformat(),
            "last": window.last.isoformat(),
            "end": window.end.isoformat(),
        },
        "champion": {"version": champion.version, "run_id": champion.run_id},
        "sampled_rows": reports.sampled,
        "available_reference_rows": available,
        "labelled_rows": int(arrived.sum()),
        "stale_partitions": stale,
        "scored_partitions": sorted(set(current[warehouse.PARTITION_COLUMN])),
        "versions": {str(k): int(v) for k, v in current["version"].value_counts().items()},
        "quality_metrics": quality_metrics,
        "classification": reports.classification,
        "data_quality": reports.data_quality,
        "decision": decision.as_dict(),
    }
    report_path = None
    if reports.sections:
        report_path = config.reports_dir / "evidently" / spec.name / f"{window.label}.html"
        write_report_page(
            report_path, _page_title(spec, window, decision), _page_facts(record, decision), reports.sections
        )
    run_id, run_url = _log_monitoring_run(
        client, spec, champion, window, record, decision, report_path, lineage
    )
    summary = _summary(spec, window, champion, record, decision, report_path, run_id, run_url)
    summary["monitoring_id"] = store_result(
        engine,
        {
            "model": spec.name,
            "window_first": window.first.isoformat(),
            "window_last": window.last.isoformat(),
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
            "airflow_run_id": (lineage or {}).get("run_id"),
        },
    )
    summary["seconds"] = round(time.perf_counter() - started, 1)
    return summary


def monitoring_policy(spec: ModelSpec) -> MonitoringSpec:
    """The spec's monitoring section; raises if it has none."""
    if spec.monitoring is None:
        raise MonitoringError(f"{spec.name}: the spec has no 'monitoring' section")
    return spec.monitoring


#: Sizes each report frame to its content. Evidently's own resize script, made for notebooks, runs before its
#: frame exists when the page is read from a file, which would leave every frame 150 pixels tall.
_FIT_FRAMES = """<script>
document.querySelectorAll("iframe.evidently-ui-iframe").forEach(function (frame) {
  function fit() {
    var body = frame.contentWindow && frame.contentWindow.document.body;
    if (body && body.scrollHeight) { frame.height = body.scrollHeight + 3; }
  }
  frame.addEventListener("load", function () {
    fit();
    new ResizeObserver(fit).observe(frame.contentWindow.document.body);
  });
  fit();
});
</script>"""


def write_report_page(
    path: Path, title: str, facts: Sequence[tuple[str, str]], sections: Sequence[tuple[str, Snapshot]]
) -> Path:
    """One self-contained HTML page: a summary table, then each Evidently snapshot in its own frame.

    Written aside and renamed, so a reader (the UI, an alert's link) never sees half a page.
    """
    esc = html.escape
    rows = "".join(
        f'<tr><th>{esc(label)}</th><td style="white-space:pre-wrap">{esc(value)}</td></tr>'
        for label, value in facts
    )
    parts = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}th{text-align:left;padding-right:1em;vertical-align:top}"
        "iframe{width:100%;border:0}</style></head><body>",
        f"<h1>{esc(title)}</h1><table>{rows}</table>",
    ]
    for heading, snapshot in sections:
        parts += [f"<h2>{esc(heading)}</h2>", snapshot.get_html_str(as_iframe=True)]
    parts += [_FIT_FRAMES, "</body></html>"]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.part")
    partial.write_text("\n".join(parts), encoding="utf-8")
    partial.replace(path)
    return path


def store_result(engine: Engine, row: Mapping[str, Any]) -> int:
    """Replace the model's row for the window (one transaction); returns its id."""
    create_table(engine, monitoring_runs)
    table = monitoring_runs
    key = (
        (table.c.model == row["model"])
        & (table.c.window_first == row["window_first"])
        & (table.c.window_last == row["window_last"])
    )
    with engine.begin() as conn:
        conn.execute(table.delete().where(key))
        result = conn.execute(table.insert().values(**row, created_at=datetime.now(UTC)))
        return int(result.inserted_primary_key[0])


def monitoring_history(
    model: str, *, config: Settings | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """The model's monitoring rows, latest window first (``limit`` of them), figures and reasons decoded."""
    engine = warehouse.engine_for((config or settings()).warehouse_url)
    if not sa.inspect(engine).has_table(monitoring_runs.name):
        return []
    table = monitoring_runs
    query = (
        sa.select(table).where(table.c.model == model).order_by(table.c.window_last.desc(), table.c.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [
            {**r._mapping, "reasons": json.loads(r.reasons), "figures": json.loads(r.figures)}
            for r in conn.execute(query)
        ]


def last_monitoring(model: str, *, config: Settings | None = None) -> dict[str, Any] | None:
    """For ``airloop status``: the latest monitored window's outcome, figures, report and MLflow run."""
    rows = monitoring_history(model, config=config, limit=1)
    return rows[0] if rows else None


def record_drift(
    model: str,
    result: Mapping[str, Any],
    *,
    airflow_run_id: str | None = None,
    config: Settings | None = None,
) -> dict[str, Any]:
    """Write the drift event of a monitored window (once per window, however often it is re-run), status
    ``pending`` until retraining handles it. Returns the event's id and key, for the drift Asset's extra."""
    engine = warehouse.engine_for((config or settings()).warehouse_url)
    warehouse.ensure_tables(engine)
    window = f"{result['window']['first']}..{result['window']['last']}"
    key = f"{DRIFT}:{model}:{window}"
    payload = {**result, "status": "pending", "airflow_run_id": airflow_run_id}
    written = warehouse.record_event(
        engine, model, DRIFT, payload, partition=result["window"]["last"], dedup_key=key
    )
    return {
        "model": model,
        "window": window,
        "event_id": _event_id(engine, key),
        "dedup_key": key,
        "new": written,
        "drift_share": result["drift"]["share"],
        "quality_drop": (result.get("quality") or {}).get("drop"),
        "report_path": result.get("report_path"),
        "mlflow_run_url": result.get("mlflow_run_url"),
    }


def mark_drift_handled(engine: Engine, model: str, event_id: int, payload: Mapping[str, Any]) -> bool:
    """Close a drift event (``payload`` says how: retrained, promoted, refused...); once per event."""
    return warehouse.record_event(
        engine,
        model,
        DRIFT_HANDLED,
        {**payload, "drift_event_id": event_id},
        dedup_key=f"{DRIFT_HANDLED}:{model}:{event_id}",
    )


def open_drift_events(model: str, *, config: Settings | None = None) -> list[dict[str, Any]]:
    """For ``airloop status`` and the retraining sensor: drift events not handled yet, oldest first."""
    engine = warehouse.engine_for((config or settings()).warehouse_url)
    if not sa.inspect(engine).has_table(warehouse.events.name):
        return []
    events = warehouse.events_for(engine, model, [DRIFT, DRIFT_HANDLED])
    handled = {e["payload"]["drift_event_id"] for e in events if e["kind"] == DRIFT_HANDLED}
    return [e for e in events if e["kind"] == DRIFT and e["id"] not in handled]


@dataclass(frozen=True)
class _Reports:
    """The Evidently snapshots of a run (as page sections) and what was read from them."""

    sections: Sequence[tuple[str, Snapshot]] = ()
    drift: SnapshotFigures | None = None
    data_quality: Mapping[str, Any] = field(default_factory=dict)
    classification: Mapping[str, float] = field(default_factory=dict)
    sampled: Mapping[str, int] = field(default_factory=lambda: {"current": 0, "reference": 0})


def _run_reports(
    engine: Engine,
    spec: ModelSpec,
    policy: MonitoringSpec,
    champion: Champion,
    current: pd.DataFrame,
    arrived: pd.Series,
    quality: QualityFigures,
    cache_dir: Path,
) -> _Reports:
    """Drift and data quality on the samples; classification quality when enough labels arrived."""
    reference_frame, holdout_frame = champion_frames(engine, spec, policy, champion, cache_dir)
    current_sample = sample_rows(current, policy.current_rows, policy.seed)
    numeric, categorical = _feature_kinds(spec)
    current_frame = _evidently_frame(current_sample, spec, current_sample[PROBABILITY])
    kinds = {"numeric": numeric, "categorical": categorical}
    drift = drift_snapshot(reference_frame, current_frame, policy, **kinds)
    summary = summary_snapshot(reference_frame, current_frame, **kinds)
    sections: list[tuple[str, Snapshot]] = [
        ("Data drift and prediction drift (reference: the champion's training data)", drift),
        ("Data quality", summary),
    ]
    classification: dict[str, float] = {}
    if quality.labelled_rows >= policy.min_rows and quality.current is not None and holdout_frame is not None:
        labelled = sample_rows(current.loc[arrived], policy.current_rows, policy.seed)
        report = quality_snapshot(holdout_frame, _labelled_frame(labelled, spec))
        classification = classification_from_snapshot(report.dict())
        sections.append(("Classification quality (labelled rows; reference: the champion's holdout)", report))
    return _Reports(
        sections=sections,
        drift=figures_from_snapshot(drift.dict(), spec.features),
        data_quality=data_quality_from_snapshot(summary.dict()),
        classification=classification,
        sampled={"current": len(current_sample), "reference": len(reference_frame)},
    )


def champion_frames(
    engine: Engine, spec: ModelSpec, policy: MonitoringSpec, champion: Champion, cache_dir: Path
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The champion's side of every report: Evidently's reference (a fixed-seed sample of its training rows, with
    its probabilities) and its labelled holdout rows with its probabilities (``None`` without a holdout).

    Both depend only on the champion (a registered version never changes), on the content of its partitions
    and on the policy's sample size and seed, yet every weekly run would read some 50,000 rows and load the model
    to score them again. So they are kept as Parquet under ``cache_dir``, named by all of that: the batch
    checksums in the ledger make a re-delivered partition a new name, never a stale reference.
    """
    import pandas as pd

    checksums = {
        r["partition"]: r["checksum"]
        for r in warehouse.ledger_rows(engine, spec.name)
        if r["status"] == "passed" and r["partition"] in {*champion.training, *champion.holdout}
    }
    key = hashlib.sha256(
        json.dumps(
            [champion.training, champion.holdout, checksums, policy.reference_rows, policy.seed], sort_keys=True
        ).encode()
    ).hexdigest()[:16]
    folder = cache_dir / "monitoring" / spec.name / f"v{champion.version}-{key}"
    reference_path, holdout_path = folder / "reference.parquet", folder / "holdout.parquet"
    if reference_path.is_file():
        return pd.read_parquet(reference_path), (
            pd.read_parquet(holdout_path) if holdout_path.is_file() else None
        )
    import mlflow

    pipeline = mlflow.sklearn.load_model(f"models:/{spec.registered_model}/{champion.version}")
    reference = sample_rows(read_rows(engine, spec, champion.training), policy.reference_rows, policy.seed)
    reference_frame = _evidently_frame(reference, spec, _probabilities(pipeline, reference, spec))
    holdout_frame = None
    if champion.holdout:
        holdout = sample_rows(
            _with_labels(read_rows(engine, spec, champion.holdout), spec), policy.reference_rows, policy.seed
        )
        holdout_frame = _labelled_frame(holdout, spec, pipeline)
    folder.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a run that reads the cache never sees half a file.
    for frame, path in ((holdout_frame, holdout_path), (reference_frame, reference_path)):
        if frame is not None:
            partial = path.with_name(f".{path.name}.{os.getpid()}")
            frame.to_parquet(partial, index=False)
            partial.replace(path)
    return reference_frame, holdout_frame


def _event_id(engine: Engine, key: str) -> int:
    with engine.connect() as conn:
        query = sa.select(warehouse.events.c.id).where(warehouse.events.c.dedup_key == key)
        return int(conn.execute(query).scalar_one())


def _ledger_rows(engine: Engine, spec: ModelSpec, partitions: Sequence[str]) -> int:
    wanted = set(partitions)
    return sum(
        r["rows"] or 0
        for r in warehouse.ledger_rows(engine, spec.name)
        if r["partition"] in wanted and r["status"] == "passed"
    )


def _definition(numeric: Sequence[str], categorical: Sequence[str], prediction: str | None) -> Any:
    from evidently import DataDefinition

    return DataDefinition(
        numerical_columns=[*numeric, *([prediction] if prediction else [])],
        categorical_columns=list(categorical),
    )


def _feature_kinds(spec: ModelSpec) -> tuple[list[str], list[str]]:
    from airloop.training import feature_kinds

    return feature_kinds(spec)


def _probabilities(pipeline: Any, frame: pd.DataFrame, spec: ModelSpec) -> Any:
    from airloop.registry import predict_proba

    return predict_proba(pipeline, frame, spec)


def _evidently_frame(frame: pd.DataFrame, spec: ModelSpec, probabilities: Any) -> pd.DataFrame:
    from airloop.training import feature_frame

    return feature_frame(frame, spec).assign(**{PREDICTION: list(probabilities)}).reset_index(drop=True)


def _with_labels(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    return frame.loc[frame[spec.target.column].notna()]


def _labelled_frame(frame: pd.DataFrame, spec: ModelSpec, pipeline: Any | None = None) -> pd.DataFrame:
    """:data:`LABEL` and :data:`PREDICTION` of labelled rows: stored probabilities, or ``pipeline``'s."""
    import pandas as pd

    labels = (frame[spec.target.column].astype(float) > spec.target.threshold).astype("int64")
    scores = _probabilities(pipeline, frame, spec) if pipeline is not None else frame[PROBABILITY]
    return pd.DataFrame({LABEL: labels.to_numpy(), PREDICTION: list(scores)})


def _quality(
    labelled: pd.DataFrame, spec: ModelSpec, metric: str, champion: Champion
) -> tuple[QualityFigures, dict[str, float | None]]:
    """The primary metric on every labelled row of the window (the gate's own definitions, so it compares with
    the holdout figure), and all the gate's metrics for the record."""
    from airloop.promotion import all_metrics

    if labelled.empty:
        values: dict[str, float | None] = {}
    else:
        frame = _labelled_frame(labelled, spec)
        values = {k: _finite(v) for k, v in all_metrics(frame[LABEL], frame[PREDICTION]).items()}
        values["positive_rate"] = float(frame[LABEL].mean())
    figures = QualityFigures(
        metric=metric,
        labelled_rows=len(labelled),
        current=values.get(metric),
        baseline=_finite(champion.holdout_metrics.get(metric)),
    )
    return figures, values


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _page_title(spec: ModelSpec, window: Window, decision: DriftDecision) -> str:
    return f"{spec.name}: {decision.outcome}, {window.label}"


def _page_facts(record: Mapping[str, Any], decision: DriftDecision) -> list[tuple[str, str]]:
    sampled, champion = record["sampled_rows"], record["champion"]
    return [
        ("Outcome", decision.outcome),
        ("Reasons", "\n".join(decision.reasons)),
        (
            "Window",
            f"{record['window']['first']}..{record['window']['last']} (labels known by {record['window']['end']})",
        ),
        ("Champion", f"v{champion['version']} (run {champion['run_id']})"),
        ("Current", f"{sampled['current']:,} of {record['current_rows']:,} scored rows"),
        (
            "Reference",
            f"{sampled['reference']:,} of {record['available_reference_rows']:,} training rows (fixed seed)",
        ),
        ("Labelled", f"{record['labelled_rows']:,} rows"),
    ]


def _log_monitoring_run(
    client: MlflowClient,
    spec: ModelSpec,
    champion: Champion,
    window: Window,
    record: Mapping[str, Any],
    decision: DriftDecision,
    report_path: Path | None,
    lineage: Mapping[str, Any] | None,
) -> tuple[str, str | None]:
    """A monitoring run in the model's experiment, one per window: a re-run logs into the same run."""
    import mlflow

    from airloop.training import code_version

    tags = {
        "airloop.model": spec.name,
        "airloop.role": "monitoring",
        "airloop.window": window.label,
        "airloop.champion_version": champion.version,
        "airloop.champion_run_id": champion.run_id,
        "airloop.drift": decision.outcome,
        "airloop.drift.reasons": "; ".join(decision.reasons)[:5000],
        "airloop.code_version": code_version(),
        **{f"airflow.{k}": str(v) for k, v in (lineage or {}).items() if v is not None},
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
    if record["features"]:
        drifted = [f for f in record["features"] if f["drifted"]]
        metrics["drift/share"] = len(drifted) / len(record["features"])
        metrics["drift/drifted_features"] = len(drifted)
        metrics |= {f"drift/{f['column']}": f["score"] for f in record["features"]}
    if record["prediction"]:
        metrics["drift/prediction"] = record["prediction"]["score"]
    metrics |= {f"quality/{k}": v for k, v in record["quality_metrics"].items() if v is not None}
    metrics |= {f"evidently/{k}": v for k, v in record["classification"].items() if math.isfinite(v)}
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
    tracking_uri = mlflow.get_tracking_uri()
    url = (
        f"{tracking_uri}/#/experiments/{champion.experiment_id}/runs/{run.info.run_id}"
        if tracking_uri.startswith(("http://", "https://"))
        else None
    )
    return run.info.run_id, url


def _summary(
    spec: ModelSpec,
    window: Window,
    champion: Champion,
    record: Mapping[str, Any],
    decision: DriftDecision,
    report_path: Path | None,
    run_id: str,
    run_url: str | None,
) -> dict[str, Any]:
    """What the monitor task returns (XCom), the drift event holds and the alert shows: small, JSON-able."""
    features = [ColumnDrift(**f) for f in record["features"]]
    drifted = sorted((f for f in features if f.drifted), key=lambda f: -f.severity)
    quality = record["quality"]
    return {
        "model": spec.name,
        "monitored": True,
        "window": {
            "first": window.first.isoformat(),
            "last": window.last.isoformat(),
            "end": window.end.isoformat(),
        },
        "champion_version": champion.version,
        "outcome": decision.outcome,
        "drifted": decision.drifted,
        "decided": decision.decided,
        "reasons": decision.reasons,
        "rows": {
            "current": record["current_rows"],
            "reference": record["reference_rows"],
            "labelled": record["labelled_rows"],
            "sampled_current": record["sampled_rows"]["current"],
            "stale_partitions": record["stale_partitions"],
        },
        "drift": {
            "share": len(drifted) / len(features) if features else None,
            "drifted_features": len(drifted),
            "features": len(features),
            "threshold_share": monitoring_policy(spec).drift_share,
            "top": [asdict(f) for f in drifted[:TOP_FEATURES]],
        },
        "prediction": record["prediction"],
        "quality": {**quality, "drop": QualityFigures(**quality).drop} if quality else None,
        "report_path": str(report_path) if report_path else None,
        "report_url": report_path.as_uri() if report_path else None,
        "mlflow_run_id": run_id,
        "mlflow_run_url": run_url,
    }
