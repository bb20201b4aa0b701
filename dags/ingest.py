"""
### `<model>_ingest`: validated, backfillable ingestion

For each partition (the run's data interval: a day, an hour, a week... as the spec's schedule says), wait for the partition to land in the landing folder (deferred: no worker
slot is held), or with a SQL source run the spec's query for the interval in `ingest_batch` and keep its result as
the delivery; validate it with the Great Expectations suite generated from the model's contract (`ingest_batch`), then

* **passed**: in the same task, replace the partition in the warehouse in one transaction and record it in the
  batch ledger; emits the Asset `x-airloop://<model>/batches` (through the alias `<model>_batches_loaded`, so a
  quarantined batch emits nothing);
* **failed**: keep the files as received in the quarantine folder with the validation result, record it, alert by
  email and Slack, and fail the run with the reason.

Re-running or backfilling a day replaces it; nothing is duplicated. Generated from `config/models/<model>.yaml`.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset, AssetAlias, TriggerRule, XComArg, task

from airloop.airflow import dagkit
from airloop.airflow.sensors import LandedPartitionSensor, UpstreamSettledSensor
from airloop.core.spec import ModelSpec


def ingest_dag(spec: ModelSpec) -> DAG:
    model = spec.name
    batches = Asset(spec.batches_asset)
    with DAG(
        **dagkit.dag_args(spec, "ingest", __doc__),
        description=f"Validated daily ingestion of {model}",
        schedule=dagkit.timetable(spec),
        end_date=dagkit.end(spec),
        catchup=spec.catchup,
        max_active_runs=spec.source.max_active_runs,
    ) as dag:
        arrive = None
        if spec.source.kind == "sql" and spec.source.after:
            # Never read an interval the models this one reads after are still ingesting.
            arrive = UpstreamSettledSensor(
                task_id="wait_for_upstream",
                model=model,
                wait_timeout=timedelta(minutes=spec.source.wait_timeout_minutes),
                poke_interval=spec.source.poke_interval_seconds,
            )
        elif spec.source.kind != "sql":
            arrive = LandedPartitionSensor(
                task_id="wait_for_partition",
                model=model,
                partition=dagkit.partition_template(spec),
                wait_timeout=timedelta(minutes=spec.source.wait_timeout_minutes),
                marker=spec.source.ready_file,
                part_folders=spec.source.part_folders,
                poke_interval=spec.source.poke_interval_seconds,
                # A timeout fails for good (AirflowFailException). The retries are for Airflow 3.3's race that can
                # mark a quickly resumed deferred task failed (apache/airflow#72716): the retry re-checks the folder.
                retries=2,
                retry_delay=timedelta(seconds=5),
            )

        # With a SQL source, runs the query for the interval first (a retry reads again). Validates, loads a
        # passed batch in the same process (its files read once), then branches: to the quarantine for a failed
        # batch, nowhere for a loaded one. The verdict goes on as the XCom "verdict".
        @task.branch(outlets=[AssetAlias(spec.batches_alias)])
        def ingest_batch(
            data_interval_start=None, data_interval_end=None, run_id=None, ti=None, outlet_events=None
        ) -> str | None:
            from airloop.airflow import tasks

            interval = (data_interval_start, data_interval_end)
            return tasks.ingest_batch(model, interval, run_id, ti, batches, outlet_events)

        @task
        def quarantine_batch(verdict: dict, run_id=None) -> dict:
            from airloop.airflow import tasks

            return tasks.quarantine_batch(model, verdict, run_id)

        @task(retries=3, retry_delay=timedelta(seconds=10))
        def alert_quarantine(quarantined: dict, **context) -> list:
            from airloop.airflow import tasks

            return tasks.send_quarantine_alert(model, quarantined, context)

        # Runs once the batch is quarantined and the alerts are sent or have given up: the run shows red with
        # the reason either way. A passed batch skips it.
        @task(trigger_rule=TriggerRule.ALL_DONE_MIN_ONE_SUCCESS, retries=0)
        def fail_quarantined(quarantined: dict) -> None:
            from airloop.airflow import tasks

            tasks.fail_quarantined(quarantined)

        ingest = ingest_batch()
        if arrive is not None:
            arrive >> ingest
        quarantined = quarantine_batch(XComArg(ingest.operator, key=dagkit.VERDICT))
        alert_quarantine(quarantined) >> fail_quarantined(quarantined)
    return dag


for _spec in dagkit.model_specs(globals(), "ingest"):
    globals()[f"{_spec.name}_ingest"] = ingest_dag(_spec)
