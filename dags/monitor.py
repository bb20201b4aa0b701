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
   The run stops here unless the window drifted (the summary goes on as the XCom `result`).
2. **record_drift**: a drift event (status pending) for retraining; emits the Asset `x-airloop://<model>/drift`.
3. **alert_drift**: e-mail and Slack with the drift share, the top drifted features, the quality change and
   links; a failed channel is retried alone and never undoes what was recorded.

Generated from `config/models/<model>.yaml` for every spec with a `monitoring` section.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset, XComArg, task

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
        # Monitors, then decides: the summary goes on as the XCom "result", and the run goes on only on drift.
        # One task, not a monitor task and a short-circuit task: a task process and a scheduling step less a week.
        @task.short_circuit(retries=1)
        def monitor_window(data_interval_end=None, **context) -> bool:
            from airloop.airflow import tasks

            return tasks.monitor(model, data_interval_end, context)

        @task(outlets=[drift])
        def record_drift(result: dict, run_id=None, outlet_events=None) -> dict:
            from airloop.airflow import tasks

            return tasks.drift_event(model, result, run_id, drift, outlet_events)

        @task(retries=3, retry_delay=timedelta(seconds=10))
        def alert_drift(result: dict, **context) -> list:
            from airloop.airflow import tasks

            return tasks.send_drift_alert(model, result, context)

        monitored = monitor_window()
        result = XComArg(monitored.operator, key=dagkit.RESULT)
        monitored >> record_drift(result) >> alert_drift(result)
    return dag


for _spec in dagkit.model_specs(globals(), "monitor"):
    if _spec.monitoring is not None:
        globals()[f"{_spec.name}_monitor"] = monitor_dag(_spec)
