"""
### `<model>_retrain`: close the loop

Scheduled by the Asset `x-airloop://<model>/drift` (each monitor run that finds drift updates it) and, when the
spec sets `monitoring.max_champion_age_days`, also on the model's `schedule`, to check the champion's age.

1. **wait_for_drift**: a deferrable sensor (it waits in the triggerer, holding no worker slot) for a retrain to be
   due: a pending drift event outside the spec's cooldown or, with the age cap, a champion whose training data
   ends more than the cap before the latest validated partition (both in data time). Skips when none is due
   within its timeout.
2. **retrain**: triggers `<model>_train` with the last day to train on as `window_end` (the drift window's, or on
   age the latest validated partition) and `warm_start` (the search starts from the champion's parameters, with
   `training.search.retrain_trials` trials), and waits for it (deferred): the same training and promotion gate as
   a manual training, one code path.
3. **record_outcome**: reads the gate's decision for that training run from the event log and marks the drift
   events it covered handled with it (two drift events close together, or drift and age at once, give one
   retrain and at most one promotion); a retrain on age is also logged as such. A failed training leaves the
   events pending.
4. **alert_outcome**: email and Slack: promoted (which version, why) or champion kept (why not).

`max_active_runs=1`, and `<model>_train` itself runs one at a time.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, TriggerRule, task

from airloop.airflow import dagkit
from airloop.airflow.sensors import DriftEventSensor
from airloop.core.spec import ModelSpec


def retrain_dag(spec: ModelSpec) -> DAG:
    model = spec.name
    with DAG(
        **dagkit.dag_args(spec, "retrain", __doc__),
        description=f"Retrain {model} when its data drifts{' or its champion ages' if _age_capped(spec) else ''}",
        schedule=_schedule(spec),
        catchup=False,
        max_active_runs=1,
    ) as dag:
        drift = DriftEventSensor(
            task_id="wait_for_drift",
            model=model,
            wait_timeout=timedelta(minutes=30),
            poke_interval=5,
            retries=2,
            retry_delay=timedelta(seconds=5),
        )
        retrain = TriggerDagRunOperator(
            task_id="retrain",
            trigger_dag_id=f"{model}_train",
            trigger_run_id="retrain__{{ run_id }}",
            conf={
                "window_end": "{{ ti.xcom_pull(task_ids='wait_for_drift')['partition'] }}",
                "warm_start": True,
            },
            wait_for_completion=True,
            deferrable=True,
            # The trigger looks up one run's state: cheap, and every second saved here is one on the loop.
            poke_interval=1,
            # A retry must not start a second training for one due retrain: the outcome step reports a failure.
            retries=0,
        )

        # Runs when a retrain was due (the sensor succeeded), whether the training succeeded or failed.
        @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS, retries=2)
        def record_outcome(due: dict, run_id=None, ti=None) -> dict:
            from airloop.airflow import tasks

            return tasks.retrain_result(model, due, run_id, ti)

        @task(retries=3, retry_delay=timedelta(seconds=10))
        def alert_outcome(outcome: dict, **context) -> list:
            from airloop.airflow import tasks

            return tasks.send_retrain_alert(model, outcome, context)

        outcome = record_outcome(drift.output)
        retrain >> outcome
        drift >> retrain
        alert_outcome(outcome)
    return dag


def _age_capped(spec: ModelSpec) -> bool:
    return spec.monitoring is not None and spec.monitoring.max_champion_age_days is not None


def _schedule(spec: ModelSpec) -> list[Asset] | AssetOrTimeSchedule:
    """The drift Asset; with an age cap, also the model's schedule (data time moves on by one partition per tick)."""
    drift = [Asset(spec.drift_asset)]
    if not _age_capped(spec):
        return drift
    return AssetOrTimeSchedule(timetable=CronTriggerTimetable(spec.schedule, timezone="UTC"), assets=drift)


for _spec in dagkit.model_specs(globals(), "retrain"):
    if _spec.training is not None and _spec.monitoring is not None:
        globals()[f"{_spec.name}_retrain"] = retrain_dag(_spec)
