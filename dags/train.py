"""
### `<model>_train`: train a challenger, gate it against the champion, promote it

Triggered by hand (or by retraining). Param `window_end` (a date; default: the latest validated partition) ends
the training window of `training.window_days` validated partitions; `warm_start` (set by `<model>_retrain`) starts
the search from the champion's parameters, with `training.search.retrain_trials` trials.

1. **train_challenger**: time-ordered split (the last `holdout_days` partitions held out), an Optuna search with
   each trial a nested MLflow run, the best parameters refitted, the model logged with signature, input example,
   pinned requirements, its datasets and lineage tags (Airflow run, partitions, ledger digest, code version),
   registered with alias `challenger`.
2. **evaluate_gate**: challenger and champion scored on the same holdout; the spec's promotion policy decides
   (floor, margin, paired bootstrap, slices). The decision and its numbers go to the challenger's MLflow run and,
   when refused, to the event log. The run stops here when the gate refused (the decision goes on as the XCom
   `gate`).
3. **approve_promotion** (only when the policy says `approval: manual`): a human approves or rejects in the
   Airflow UI (Required actions); a rejection, or no answer in 3 days, is recorded as a refused promotion.
4. **promote_champion**: alias `champion` moves to the challenger, the old one keeps `previous`; refused if the
   champion changed since the decision. Emits the Asset `x-airloop://<model>/champion`.

Generated from `config/models/<model>.yaml` for every spec with a `training` section.
"""

from __future__ import annotations

from airflow.sdk import DAG, Asset, Param, XComArg, task

from airloop.airflow import dagkit
from airloop.airflow.promotion import PromotionApprovalOperator
from airloop.core.spec import ModelSpec


def train_dag(spec: ModelSpec) -> DAG:
    model = spec.name
    champion = Asset(spec.champion_asset)
    with DAG(
        **dagkit.dag_args(spec, "train", __doc__),
        description=f"Train, gate and promote {model}",
        schedule=None,
        catchup=False,
        max_active_runs=1,
        params={
            "window_end": Param(
                None,
                type=["null", "string"],
                description="Last partition of the training window (YYYY-MM-DD, or YYYY-MM-DDTHH:MM for sub-daily "
                "schedules); empty: the latest validated partition",
            ),
            "warm_start": Param(
                False,
                type="boolean",
                description="Start the search from the champion's parameters (training.search.retrain_trials trials)",
            ),
        },
    ) as dag:
        # One retry: a second full training is only worth it for a transient failure (tracking server down).
        @task(retries=1)
        def train_challenger(params=None, **context) -> dict:
            from airloop.airflow import tasks

            return tasks.train(model, params, context)

        trained = train_challenger()
        if spec.promotion is None:
            return dag

        # Decides, then stops the run unless the gate passed: the decision goes on as the XCom "gate". One task,
        # not a gate task and a short-circuit task: a task process and a scheduling step less a training.
        @task.short_circuit
        def evaluate_gate(trained: dict, run_id=None, ti=None) -> bool:
            from airloop.airflow import tasks

            return tasks.gate(model, trained, run_id, ti)

        approval_id = "approve_promotion" if spec.promotion.approval == "manual" else None

        @task(outlets=[champion])
        def promote_champion(gate: dict, **context) -> dict:
            from airloop.airflow import tasks

            return tasks.promote(model, gate, champion, context, approval_task_id=approval_id)

        passed = evaluate_gate(trained)
        gate = XComArg(passed.operator, key=dagkit.GATE)
        if approval_id:
            approval = PromotionApprovalOperator(
                task_id=approval_id, model=model, gate_task_id="evaluate_gate"
            )
            passed >> approval >> promote_champion(gate)
        else:
            passed >> promote_champion(gate)
    return dag


for _spec in dagkit.model_specs(globals(), "train"):
    if _spec.training is not None:
        globals()[f"{_spec.name}_train"] = train_dag(_spec)
