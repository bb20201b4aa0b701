"""
### `<model>_score`: batch predictions with the champion, and the challenger in shadow

Runs when ingestion emits the Asset `x-airloop://<model>/batches` (several loads may trigger one run); a manual run
may name `partitions` instead (re-scoring, backfill).

1. **partitions_to_score**: every validated partition the champion has not scored in its current content (those
   of the triggering events among them), or the param. A partition already scored keeps the predictions of the
   version that served it.
2. **score_champion**: `models:/<name>@champion` is resolved now, loaded by version number, and scores every row;
   predictions go to `<model>_predictions` with the model version, the batch checksum and this run. A partition
   is replaced per alias in one transaction: re-running leaves no duplicates. Skipped while there is no champion.
3. **score_challenger**: the same with `models:/<name>@challenger`, stored under alias `challenger` beside the
   champion's, so the two can be compared on live data; skipped when there is no challenger or it is the champion.

Labels are not copied: monitoring joins them from the batch once `target.label_delay_hours` have passed.
Generated from `config/models/<model>.yaml` for every spec with a `training` section.
"""

from __future__ import annotations

from airflow.sdk import DAG, Asset, Param, task

from airloop.airflow import dagkit
from airloop.core.spec import ModelSpec


def score_dag(spec: ModelSpec) -> DAG:
    model = spec.name
    with DAG(
        **dagkit.dag_args(spec, "score", __doc__),
        description=f"Batch predictions of {model} with the champion (and the challenger in shadow)",
        schedule=[Asset(spec.batches_asset)],
        catchup=False,
        # One run at a time: a partition is never written by two runs at once.
        max_active_runs=1,
        params={
            "partitions": Param(
                None,
                type=["null", "array"],
                items={"type": "string"},
                description="Partition keys (YYYY-MM-DD, or YYYY-MM-DDTHH:MM for sub-daily schedules) to score; "
                "empty: those not scored yet",
            )
        },
    ) as dag:

        @task
        def partitions_to_score(params=None, triggering_asset_events=None) -> list[str]:
            from airloop.airflow import tasks

            return tasks.choose_partitions(model, params, triggering_asset_events)

        @task
        def score_champion(partitions: list[str], run_id=None) -> dict:
            from airloop.airflow import tasks

            return tasks.score(model, partitions, "champion", run_id)

        @task
        def score_challenger(partitions: list[str], run_id=None) -> dict:
            from airloop.airflow import tasks

            return tasks.score(model, partitions, "challenger", run_id)

        partitions = partitions_to_score()
        score_champion(partitions)
        score_challenger(partitions)
    return dag


for _spec in dagkit.model_specs(globals(), "score"):
    if _spec.training is not None:
        globals()[f"{_spec.name}_score"] = score_dag(_spec)
