"""
### `<model>_score`: batch predictions with the champion, and the challenger in shadow

Runs when ingestion emits the Asset `x-airloop://<model>/batches` (several loads may trigger one run); a manual run
may name `partitions` instead (re-scoring, backfill).

1. **score_champion** chooses the partitions: every validated partition the champion has not scored in its
   current content (those of the triggering events among them), or the param (XCom `partitions`). A partition
   already scored keeps the predictions of the version that served it. Then `models:/<name>@champion` is resolved,
   loaded by version number, and scores every row; predictions go to `<model>_predictions` with the model version,
   the batch checksum and this run. A partition is replaced per alias in one transaction: re-running leaves no
   duplicates. Skipped (and the run with it) while there is no champion or nothing to score; it goes on to the
   challenger only when there is one that is not the champion. One task process for the usual run.
   A champion alias moved outside airloop (by hand in the registry, not by the gate, promote or rollback) is not
   followed: the champion airloop recorded last goes on scoring, and the disagreement is recorded in the event log
   (XCom `unrecorded`).
2. **score_challenger**: the same partitions with `models:/<name>@challenger`, stored under alias `challenger`
   beside the champion's, so the two can be compared on live data.
3. **alert_unrecorded_champion**: e-mail and Slack about a moved alias, until every channel has delivered it.

Labels are not copied: monitoring joins them from the batch once `target.label_delay_hours` have passed.
Generated from `config/models/<model>.yaml` for every spec with a `training` section.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import DAG, Asset, Param, XComArg, task

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

        @task.branch
        def score_champion(params=None, triggering_asset_events=None, run_id=None, ti=None) -> str | None:
            from airloop.airflow import tasks

            return tasks.score_champion(model, params, triggering_asset_events, run_id, ti)

        @task
        def score_challenger(partitions: list[str], run_id=None) -> dict:
            from airloop.airflow import tasks

            return tasks.score(model, partitions, "challenger", run_id)

        @task(retries=3, retry_delay=timedelta(seconds=10))
        def alert_unrecorded_champion(moved: dict, **context) -> list:
            from airloop.airflow import tasks

            return tasks.send_unrecorded_champion_alert(model, moved, context)

        champion = score_champion()
        score_challenger(XComArg(champion.operator, key=dagkit.PARTITIONS))
        alert_unrecorded_champion(XComArg(champion.operator, key=dagkit.UNRECORDED))
    return dag


for _spec in dagkit.model_specs(globals(), "score"):
    if _spec.training is not None:
        globals()[f"{_spec.name}_score"] = score_dag(_spec)
