"""Training: from a model's validated batches in the warehouse to a registered MLflow version with alias
``challenger``.

The window (:mod:`airloop.train.window`) is split by time; the search (:mod:`airloop.train.search`) tunes on
train/validation; the best parameters are refitted on train + validation; the holdout is touched once, to report
the metrics the gate starts from. Everything is logged to one MLflow run: parameters, metrics, the datasets, the
model with its signature, and the lineage that ties the version to its data and Airflow run.

pandas, scikit-learn, MLflow and Optuna are imported when called.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import date
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Any

from airloop.core.contracts import Holdout, Trained, WindowSpan
from airloop.model.context import ModelContext
from airloop.model.features import (
    build_pipeline,
    estimator_class_of,
    feature_frame,
    feature_kinds,
    native_categories,
    training_spec,
)
from airloop.model.lineage import LINEAGE_ARTIFACT, TrainingWindow, lineage_record, run_tags
from airloop.model.registry import CHALLENGER
from airloop.model.task import LABEL, Metric, primary_metric
from airloop.store.batches import read_batches
from airloop.store.schema import PARTITION
from airloop.train.search import TrialFit, parse_param, search
from airloop.train.window import training_window
from airloop.vendor.mlflow import warehouse_source

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline


def train_challenger(
    ctx: ModelContext,
    *,
    window_end: date | str | None = None,
    airflow: Mapping[str, Any] | None = None,
    warm_start: bool = False,
) -> Trained:
    """Train, tune and log a challenger, register it and give it the alias ``challenger``.

    ``airflow`` holds the Airflow run's identifiers (dag_id, run_id, data interval...), logged as ``airflow.*``
    tags. With ``warm_start`` (a retrain), the search tries the champion's parameters first, within
    ``training.search.retrain_trials`` trials; without a champion trained on this search space it searches as
    usual.
    """
    import mlflow

    started = time.perf_counter()
    spec, task = ctx.spec, ctx.task
    training = training_spec(spec)
    window = training_window(ctx.warehouse, spec, window_end)
    rows, y, unlabelled = task.labelled(read_batches(ctx.warehouse, spec, window.partitions, order="time"))
    X = feature_frame(rows, spec)
    part = rows[PARTITION]
    split = {role: part.isin(ps).to_numpy() for role, ps in window.roles().items()}
    search_rows = split["train"] | split["validation"]

    metric = primary_metric(spec)
    registry = ctx.registry
    budget = training.search
    start = champion_params(ctx) if warm_start and budget.space else None
    trials = (budget.retrain_trials or budget.trials) if start else (budget.trials if budget.space else 1)
    experiment = mlflow.set_experiment(spec.registered_model)
    description = (
        f"Challenger for {spec.name}: {training.estimator.rsplit('.', 1)[-1]} tuned by Optuna on the validated "
        f"partitions {window.label}, scored on the held-out {window.holdout[0]}..{window.holdout[-1]}."
    )
    with mlflow.start_run(
        run_name=f"train {window.label}", tags=run_tags(spec, window, airflow), description=description
    ) as run:
        mlflow.log_params(
            {**_run_params(ctx, window, metric), "search/trials": trials, "search/start": _start_label(start)}
        )
        holdout_data = _log_datasets(ctx, window, X, y, split)

        fit = TrialFit(spec, task, metric, X, y, split["train"], split["validation"])
        study = search(fit, trials, start[1] if start else None)
        best = study.best_trial
        pipeline = build_pipeline(spec, best.params).fit(X[search_rows], y[search_rows])
        holdout_metrics = task.all_metrics(y[split["holdout"]], task.predict(pipeline, X[split["holdout"]]))

        mlflow.log_params({f"model/{k}": v for k, v in {**training.params, **best.params}.items()})
        mlflow.log_params({"search/completed_trials": len(study.trials), "search/best_trial": best.number})
        info = _log_model(ctx, pipeline, X[search_rows])
        # Linked to the logged model and the holdout dataset, so the model's page in MLflow shows them too.
        mlflow.log_metrics(
            {
                **{f"holdout/{k}": v for k, v in holdout_metrics.items() if math.isfinite(v)},
                "holdout/rows": int(split["holdout"].sum()),
                **{f"holdout/{k}": v for k, v in task.label_figures(y[split["holdout"]]).items()},
            },
            model_id=info.model_id,
            dataset=holdout_data,
        )
        mlflow.log_metrics(
            {
                f"validation/{metric.name}": float(best.value),
                "train/rows": int(split["train"].sum()),
                "validation/rows": int(split["validation"].sum()),
                "data/unlabelled_rows": unlabelled,
            }
        )
        mlflow.log_dict(lineage_record(spec, window, airflow), LINEAGE_ARTIFACT)
        version = str(info.registered_model_version)
        summary = ", ".join(f"{k} {v:.4f}" for k, v in holdout_metrics.items())
        registry.client.update_model_version(
            spec.registered_model, version, description=f"{description} Holdout: {summary}."
        )
        registry.client.set_registered_model_alias(spec.registered_model, CHALLENGER, version)
    return Trained(
        model=spec.name,
        registered_model=spec.registered_model,
        version=version,
        run_id=run.info.run_id,
        experiment_id=experiment.experiment_id,
        window=WindowSpan(
            first=window.partitions[0], last=window.partitions[-1], partitions=len(window.partitions)
        ),
        holdout=Holdout(
            partitions=window.holdout, checksums=[window.ledger[p].checksum for p in window.holdout]
        ),
        metrics=holdout_metrics,
        best_params=best.params,
        trials=len(study.trials),
        search_start=_start_label(start),
        seconds=round(time.perf_counter() - started, 1),
    )


def champion_params(ctx: ModelContext) -> tuple[str, dict[str, Any]] | None:
    """The champion's version and its values of the search space's parameters (its training run's ``model/*``
    params), where a retrain's search starts. ``None`` without a champion, or when a value is missing or outside
    the space (a champion not trained by airloop, or on another search space)."""
    found = ctx.registry.champion_run()
    if found is None:
        return None
    version, run = found
    logged = run.data.params
    values: dict[str, Any] = {}
    for name, param in training_spec(ctx.spec).search.space.items():
        raw = logged.get(f"model/{name}")
        value = None if raw is None else parse_param(raw, param)
        if value is None:
            return None
        values[name] = value
    return version, values


def pip_requirements() -> list[str]:
    """What a scorer must install to load the model: pinned, never inferred (inference costs ~5 s per log)."""
    return [f"{name}=={package_version(name)}" for name in ("scikit-learn", "skops", "numpy", "pandas")]


def _start_label(start: tuple[str, dict[str, Any]] | None) -> str:
    return f"champion v{start[0]}" if start else "none"


def _run_params(ctx: ModelContext, window: TrainingWindow, metric: Metric) -> dict[str, Any]:
    spec = ctx.spec
    training = training_spec(spec)
    numeric, categorical = feature_kinds(spec)
    native = native_categories(estimator_class_of(training.estimator))
    return {
        "estimator": training.estimator,
        "target": ctx.task.describe(),
        "features/numeric": ",".join(numeric),
        "features/categorical": ",".join(categorical),
        "preprocess/numeric": "median imputation" if native else "median imputation, standardised",
        "preprocess/categorical": "ordinal codes, native categorical splits" if native else "one-hot",
        "data/train": f"{window.train[0]}..{window.train[-1]}",
        "data/validation": f"{window.validation[0]}..{window.validation[-1]}",
        "data/holdout": f"{window.holdout[0]}..{window.holdout[-1]}",
        "data/window_days": training.window_days,
        "data/holdout_days": training.holdout_days,
        "search/sampler": "optuna TPE",
        "search/metric": metric.name,
        "search/timeout_minutes": training.search.timeout_minutes,
        "search/seed": training.seed,
    }


def _log_datasets(
    ctx: ModelContext, window: TrainingWindow, X: pd.DataFrame, y: pd.Series, split: Mapping[str, Any]
) -> Any:
    """Log the rows the model is fitted on ("training": train + validation) and the holdout; returns the latter."""
    import mlflow

    spec = ctx.spec
    datasets = {}
    for context, partitions, rows in (
        ("training", window.train + window.validation, split["train"] | split["validation"]),
        ("holdout", window.holdout, split["holdout"]),
    ):
        span = f"{partitions[0]}..{partitions[-1]}"
        datasets[context] = mlflow.data.from_pandas(
            X[rows].assign(**{LABEL: ctx.task.logged_labels(y[rows])}),
            source=warehouse_source(
                uri=f"{spec.batches_asset}?partitions={span}",
                table=spec.batches_table,
                partitions=span,
                ledger_digest=window.digest(partitions),
            ),
            name=f"{spec.name} {span}",
            targets=LABEL,
            digest=window.digest(partitions)[:16],
        )
        mlflow.log_input(datasets[context], context=context)
    return datasets["holdout"]


def _log_model(ctx: ModelContext, pipeline: Pipeline, X: pd.DataFrame) -> Any:
    import mlflow
    import skops.io
    from mlflow.models import infer_signature

    example = X.head(5)
    return mlflow.sklearn.log_model(
        pipeline,
        name="model",
        registered_model_name=ctx.spec.registered_model,
        signature=infer_signature(example, getattr(pipeline, ctx.task.pyfunc_predict_fn)(example)),
        input_example=example,
        pip_requirements=pip_requirements(),
        # pyfunc users get what the gate and the scorer judge (probabilities, for a classifier).
        pyfunc_predict_fn=ctx.task.pyfunc_predict_fn,
        # skops (MLflow's default format) refuses types it does not know; these are the types of the pipeline
        # built just above in this process, so trusting them is trusting our own output.
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)),
    )
