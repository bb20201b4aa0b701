"""
### `<model>_monitor`: drift and quality of the champion, on schedule

Runs on `monitoring.schedule` (a data-interval timetable: the run for a week starts once the week is over) over
the `monitoring.window_days` complete days before the end of its interval.

1. **monitor_window**: Evidently compares a fixed-seed sample of the champion's training data (the partitions its
   training run recorded) with the window's scored rows: drift of every feature with its method and score,
   prediction drift, a data-quality summary and, for rows whose labels have arrived, classification quality
   against the champion's holdout. The HTML report is kept under `<reports_dir>/evidently/<model>/` and logged to
   a monitoring run in MLflow; the figures go to the warehouse table `airloop_monitoring` (one row per window,
   replaced on re-run). The drift decision applies the spec's policy: drifted share, quality drop, minimum rows.
   Skipped while there is no champion.
   The run stops here unless the window drifted (the summary goes on as the XCom `result`). A drifted window is
   recorded by the same task as a drift event (status pending) for retraining (XCom `drift_event`), and emits the
   Asset `x-airloop://<model>/drift` (through the alias `<model>_drift_recorded`: a window without drift emits
   nothing).
2. **alert_drift**: e-mail and Slack with the drift share, the top drifted features, the quality change and
   links; a failed channel is retried alone and never undoes what was recorded.

Generated from `config/models/<model>.yaml` for every spec with a `monitoring` section.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset, AssetAlias, XComArg, task

from airloop.airflow import dagkit
from airloop.core.spec import ModelSpec


def monitor_dag(spec: ModelSpec) -> DAG:
    model = spec.name
    drift = Asset(spec.drift_asset)
    with DAG(
        **dagkit.dag_args(spec, "monitor", __doc__),
        description=f"Drift and quality monitoring of {model}",
        schedule=dagkit.monitoring_timetable(spec),
        end_date=dagkit.end(spec),
        catchup=False,
        # Evidently holds both frames in memory: windows are monitored one after the other.
        max_active_runs=1,
    ) as dag:
        # Monitors, then decides: the summary goes on as the XCom "result", and the run goes on only on drift,
        # which the same task records and emits. One task, not a monitor, a short-circuit and a record task: two
        # task processes and scheduling steps less on the way from a drifted window to its retraining.
        @task.short_circuit(retries=1, outlets=[AssetAlias(spec.drift_alias)])
        def monitor_window(data_interval_end=None, **context) -> bool:
            from airloop.airflow import tasks

            return tasks.monitor(model, data_interval_end, drift, context)

        @task(retries=3, retry_delay=timedelta(seconds=10))
        def alert_drift(result: dict, **context) -> list:
            from airloop.airflow import tasks

            return tasks.send_drift_alert(model, result, context)

        monitored = monitor_window()
        result = XComArg(monitored.operator, key=dagkit.RESULT)
        monitored >> alert_drift(result)
    return dag


for _spec in dagkit.model_specs(globals(), "monitor"):
    if _spec.monitoring is not None:
        globals()[f"{_spec.name}_monitor"] = monitor_dag(_spec)
