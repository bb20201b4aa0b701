"""
### `<model>_retrain`: close the loop

Scheduled by the Asset `airloop://<model>/drift` (each monitor run that finds drift updates it).

1. **wait_for_drift**: a deferrable sensor (it waits in the triggerer, holding no worker slot) for a pending
   drift event outside the spec's cooldown (measured in data time, between monitored windows). Skips when none is
   due within its timeout.
2. **retrain**: triggers `<model>_train` with the drift window's last day as `window_end` and waits for it
   (deferred): the same training and promotion gate as a manual training, one code path.
3. **record_outcome**: reads the gate's decision for that training run from the event log and marks the drift
   event handled with it (older pending events of the model with it: two drift events close together give one
   retrain and at most one promotion). A failed training leaves the events pending.
4. **alert_outcome**: email and Slack: promoted (which version, why) or champion kept (why not).

`max_active_runs=1`, and `<model>_train` itself runs one at a time.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG, Asset, TriggerRule, task

from airloop.airflow import dagkit
from airloop.airflow.sensors import DriftEventSensor
from airloop.spec import ModelSpec


def retrain_dag(spec: ModelSpec) -> DAG:
    model = spec.name
    with DAG(
        **dagkit.dag_args(spec, "retrain", __doc__),
        description=f"Retrain {model} when its data drifts",
        schedule=[Asset(spec.drift_asset)],
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
            conf={"window_end": "{{ ti.xcom_pull(task_ids='wait_for_drift')['partition'] }}"},
            wait_for_completion=True,
            deferrable=True,
            poke_interval=5,
            # A retry must not start a second training of the same drift: the outcome step reports a failure.
            retries=0,
        )

        # Runs when the drift was due (the sensor succeeded), whether the training succeeded or failed.
        @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS, retries=2)
        def record_outcome(event: dict, run_id=None, ti=None) -> dict:
            from airloop.retraining import retrain_outcome

            train_run = f"retrain__{run_id}"
            return retrain_outcome(model, event, train_run, ti.get_dagrun_state(f"{model}_train", train_run))

        @task(retries=3, retry_delay=timedelta(seconds=10))
        def alert_outcome(outcome: dict, **context) -> list:
            from airloop.airflow.alerting import alert_retrain

            return alert_retrain(model, outcome, context)

        outcome = record_outcome(drift.output)
        retrain >> outcome
        drift >> retrain
        alert_outcome(outcome)
    return dag


for _spec in dagkit.model_specs():
    if _spec.training is not None and _spec.monitoring is not None:
        globals()[f"{_spec.name}_retrain"] = retrain_dag(_spec)
