"""Training: from a model's validated batches in the warehouse to a registered MLflow version with alias
``challenger``.

The window is the last ``training.window_days`` partitions the batch ledger says passed validation. Its most
recent ``holdout_days`` partitions are held out (the champion/challenger comparison uses them); of the rest, the
most recent ``validation_fraction`` of partitions validate the hyperparameter search and the older ones train.
Splits follow time, never random rows, because the model will score days it has not seen.

The search is Optuna's TPE sampler (seeded, define-by-run, with the trials-and-time budget built in), each trial
an MLflow run nested in the training run. The best parameters are refitted on train + validation; the holdout is
touched once, to report the metrics the gate starts from.

pandas, scikit-learn, MLflow and Optuna are imported inside the functions, so importing the library stays cheap
for DAG files and the CLI.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from airloop import warehouse
from airloop.errors import AirloopError
from airloop.ingest import model_spec
from airloop.promotion import HIGHER_IS_BETTER, all_metrics, metric_value
from airloop.settings import Settings, project_root, settings
from airloop.spec import ModelSpec, SearchParam, TrainingSpec

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    from sklearn.pipeline import Pipeline

#: The registry alias of a freshly trained version.
CHALLENGER = "challenger"
#: Name of the label column (True: the target exceeds its threshold) in logged datasets.
LABEL = "label"
#: The contract types fed to the model as numbers.
_NUMERIC_TYPES = ("integer", "number", "boolean")


class TrainingError(AirloopError):
    """The model cannot be trained as specified: no spec section, too few validated partitions, bad features."""


@dataclass(frozen=True)
class TrainingWindow:
    """The partitions a training run uses, oldest first, each with its ledger row."""

    train: list[str]
    validation: list[str]
    holdout: list[str]
    ledger: dict[str, dict[str, Any]]

    @property
    def partitions(self) -> list[str]:
        return [*self.train, *self.validation, *self.holdout]

    @property
    def label(self) -> str:
        """``first..last``: how the window is named in run names, tags and dataset sources."""
        return f"{self.partitions[0]}..{self.partitions[-1]}"

    def digest(self, partitions: Sequence[str] | None = None) -> str:
        """SHA-256 over each partition's batch checksum and validation result id: the exact data used."""
        lines = [
            f"{p}:{self.ledger[p]['checksum']}:{self.ledger[p].get('validation_result_id') or ''}"
            for p in (partitions if partitions is not None else self.partitions)
        ]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def training_window(engine: Engine, spec: ModelSpec, window_end: date | str | None = None) -> TrainingWindow:
    """The passed partitions of the window ending at ``window_end`` (default: the latest passed partition)."""
    training = _training(spec)
    passed = {r["partition"]: r for r in warehouse.ledger_rows(engine, spec.name) if r["status"] == "passed"}
    if not passed:
        raise TrainingError(f"{spec.name}: no validated partition in the warehouse yet; ingest some first")
    end = date.fromisoformat(str(window_end)) if window_end else date.fromisoformat(max(passed))
    start = end - timedelta(days=training.window_days - 1)
    partitions = sorted(p for p in passed if start.isoformat() <= p <= end.isoformat())
    needed = training.holdout_days + 2
    if len(partitions) < needed:
        raise TrainingError(
            f"{spec.name}: {len(partitions)} validated partition(s) in {start}..{end}; training needs at least "
            f"{needed} (holdout_days {training.holdout_days} + one to train + one to validate)"
        )
    holdout = partitions[-training.holdout_days :]
    search = partitions[: -training.holdout_days]
    validation_count = min(len(search) - 1, max(1, round(len(search) * training.validation_fraction)))
    return TrainingWindow(
        train=search[:-validation_count],
        validation=search[-validation_count:],
        holdout=holdout,
        ledger={p: passed[p] for p in partitions},
    )


def read_batches(engine: Engine, spec: ModelSpec, partitions: Sequence[str]) -> pd.DataFrame:
    """The stored rows of ``partitions``, in partition then time order."""
    import pandas as pd

    table = warehouse.batches_table(spec)
    query = sa.select(table).where(table.c[warehouse.PARTITION_COLUMN].in_(list(partitions)))
    with engine.connect() as conn:
        frame = pd.read_sql(query, conn)
    return frame.sort_values([warehouse.PARTITION_COLUMN, spec.time_column], kind="stable").reset_index(
        drop=True
    )


def labelled(frame: pd.DataFrame, spec: ModelSpec) -> tuple[pd.DataFrame, pd.Series, int]:
    """The rows whose target is known, their 0/1 labels (``target.column > target.threshold``), and how many
    rows had no target (e.g. cancelled flights, or labels not arrived yet)."""
    known = frame[spec.target.column].notna()
    rows = frame.loc[known].reset_index(drop=True)
    labels = (rows[spec.target.column].astype(float) > spec.target.threshold).astype("int64").rename(LABEL)
    return rows, labels, int((~known).sum())


def feature_frame(frame: pd.DataFrame, spec: ModelSpec, names: Sequence[str] | None = None) -> pd.DataFrame:
    """The model's input: ``names`` (default: the spec's features) typed from the contract.

    Numbers (and booleans) become float64 and strings object columns with NaN for missing values, whatever
    the warehouse driver returned, so training, the logged signature and scoring all see the same types.
    """
    import numpy as np
    import pandas as pd

    columns = {}
    for name in names if names is not None else spec.features:
        kind = spec.contract.column(name).type
        if kind in _NUMERIC_TYPES:
            columns[name] = pd.to_numeric(frame[name], errors="coerce").astype("float64")
        else:
            columns[name] = frame[name].astype(object).where(frame[name].notna(), np.nan)
    return pd.DataFrame(columns, index=frame.index)


def build_pipeline(spec: ModelSpec, params: Mapping[str, Any] | None = None) -> Pipeline:
    """Preprocessing + the spec's estimator with ``training.params`` updated by ``params``.

    Numeric features: median imputation. String features: when the estimator handles categories natively
    (it has a ``categorical_features`` parameter, like HistGradientBoosting), ordinal codes flagged as
    categorical: one column per feature, splits on category sets, unseen categories coded -1, which it treats
    as missing. Any other estimator gets one-hot columns, since ordinal codes would impose a false order, and
    standardised numbers, since linear and distance-based models are sensitive to scale.
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    training = _training(spec)
    estimator_class = _estimator_class(training.estimator)
    numeric, categorical = feature_kinds(spec)
    estimator_params = {**training.params, **(params or {})}
    # keep_empty_features: a feature missing on every training row must not shift the columns.
    numbers: Any = SimpleImputer(strategy="median", keep_empty_features=True)
    if _native_categories(estimator_class):
        # HistGradientBoosting accepts at most max_bins categories per feature: rarer ones share a code.
        max_categories = int(estimator_params.get("max_bins") or 255)
        encoder: Any = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, max_categories=max_categories
        )
        # The ColumnTransformer emits the numeric block first, then the categorical one.
        estimator_params["categorical_features"] = [False] * len(numeric) + [True] * len(categorical)
    else:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
        numbers = make_pipeline(numbers, StandardScaler())
    preprocess = ColumnTransformer(
        [("numeric", numbers, numeric), ("categorical", encoder, categorical)],
        verbose_feature_names_out=False,
    )
    return Pipeline([("preprocess", preprocess), ("model", estimator_class(**estimator_params))])


def feature_kinds(spec: ModelSpec) -> tuple[list[str], list[str]]:
    """The spec's features split into numeric and categorical (string) ones, in spec order."""
    numeric, categorical = [], []
    for name in spec.features:
        kind = spec.contract.column(name).type
        if kind in _NUMERIC_TYPES:
            numeric.append(name)
        elif kind == "string":
            categorical.append(name)
        else:
            raise TrainingError(
                f"{spec.name}: feature {name!r} is a {kind}; derive numeric features from it (e.g. hour, month)"
            )
    return numeric, categorical


def search_metric(spec: ModelSpec) -> str:
    """The metric the search optimises: the promotion policy's, so the search and the gate agree."""
    return spec.promotion.metric if spec.promotion else "roc_auc"


def suggest(trial: optuna.Trial, space: Mapping[str, SearchParam]) -> dict[str, Any]:
    """One trial's parameters from the spec's search space."""
    params: dict[str, Any] = {}
    for name, p in space.items():
        if p.type == "categorical":
            params[name] = trial.suggest_categorical(name, p.choices)
        elif p.type == "int":
            params[name] = trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
        else:
            params[name] = trial.suggest_float(name, p.low, p.high, log=p.log)
    return params


def train_challenger(
    model: str,
    *,
    window_end: date | str | None = None,
    lineage: Mapping[str, Any] | None = None,
    warm_start: bool = False,
    config: Settings | None = None,
) -> dict[str, Any]:
    """Train, tune and log a challenger for ``model``, register it and give it the alias ``challenger``.

    ``lineage`` holds the Airflow run's identifiers (dag_id, run_id, data interval...), logged as ``airflow.*``
    tags. With ``warm_start`` (a retrain), the search tries the champion's parameters first, within
    ``training.search.retrain_trials`` trials; without a champion trained on this search space it searches as
    usual. Returns the registered version, the MLflow run, the holdout partitions with their checksums (the gate
    checks the data did not change since) and the holdout metrics.
    """
    import mlflow
    from mlflow import MlflowClient

    started = time.perf_counter()
    config = config or settings()
    spec = model_spec(model, config)
    training = _training(spec)
    engine = warehouse.engine_for(config.warehouse_url)
    window = training_window(engine, spec, window_end)
    rows, y, unlabelled = labelled(read_batches(engine, spec, window.partitions), spec)
    X = feature_frame(rows, spec)
    part = rows[warehouse.PARTITION_COLUMN]
    split = {name: part.isin(ps).to_numpy() for name, ps in _splits(window).items()}
    search_rows = split["train"] | split["validation"]

    metric = search_metric(spec)
    mlflow.set_tracking_uri(config.mlflow_tracking_uri)
    client = MlflowClient(config.mlflow_tracking_uri)
    search = training.search
    start = champion_params(spec, client) if warm_start and search.space else None
    trials = (search.retrain_trials or search.trials) if start else (search.trials if search.space else 1)
    experiment = mlflow.set_experiment(spec.registered_model)
    tags = run_tags(spec, window, lineage)
    description = (
        f"Challenger for {spec.name}: {training.estimator.rsplit('.', 1)[-1]} tuned by Optuna on the validated "
        f"partitions {window.label}, scored on the held-out {window.holdout[0]}..{window.holdout[-1]}."
    )
    with mlflow.start_run(run_name=f"train {window.label}", tags=tags, description=description) as run:
        mlflow.log_params(
            {
                **_run_params(spec, window, metric),
                "search/trials": trials,
                "search/start": _start_label(start),
            }
        )
        holdout_data = _log_datasets(spec, window, X, y, split)

        study = _search(spec, X, y, split, metric, trials, start[1] if start else None)
        best = study.best_trial
        pipeline = build_pipeline(spec, best.params).fit(X[search_rows], y[search_rows])
        holdout_metrics = all_metrics(y[split["holdout"]], pipeline.predict_proba(X[split["holdout"]])[:, 1])

        mlflow.log_params({f"model/{k}": v for k, v in {**training.params, **best.params}.items()})
        mlflow.log_params({"search/completed_trials": len(study.trials), "search/best_trial": best.number})
        info = _log_model(spec, pipeline, X[search_rows])
        # Linked to the logged model and the holdout dataset, so the model's page in MLflow shows them too.
        mlflow.log_metrics(
            {
                **{f"holdout/{k}": v for k, v in holdout_metrics.items() if math.isfinite(v)},
                "holdout/rows": int(split["holdout"].sum()),
                "holdout/positive_rate": float(y[split["holdout"]].mean()),
            },
            model_id=info.model_id,
            dataset=holdout_data,
        )
        mlflow.log_metrics(
            {
                f"validation/{metric}": float(best.value),
                "train/rows": int(split["train"].sum()),
                "validation/rows": int(split["validation"].sum()),
                "data/unlabelled_rows": unlabelled,
            }
        )
        mlflow.log_dict(lineage_record(spec, window, lineage), "lineage.json")
        version = str(info.registered_model_version)
        summary = ", ".join(f"{k} {v:.4f}" for k, v in holdout_metrics.items())
        client.update_model_version(
            spec.registered_model, version, description=f"{description} Holdout: {summary}."
        )
        client.set_registered_model_alias(spec.registered_model, CHALLENGER, version)
    return {
        "model": model,
        "registered_model": spec.registered_model,
        "version": version,
        "run_id": run.info.run_id,
        "experiment_id": experiment.experiment_id,
        "window": {
            "first": window.partitions[0],
            "last": window.partitions[-1],
            "partitions": len(window.partitions),
        },
        "holdout": {
            "partitions": window.holdout,
            "checksums": [window.ledger[p]["checksum"] for p in window.holdout],
        },
        "metrics": holdout_metrics,
        "best_params": best.params,
        "trials": len(study.trials),
        "search_start": _start_label(start),
        "seconds": round(time.perf_counter() - started, 1),
    }


def champion_params(spec: ModelSpec, client: Any) -> tuple[str, dict[str, Any]] | None:
    """The champion's version and its values of the search space's parameters (its training run's ``model/*``
    params), where a retrain's search starts. ``None`` without a champion, or when a value is missing or outside
    the space (a champion not trained by airloop, or on another search space)."""
    from airloop.registry import champion_run

    found = champion_run(client, spec.registered_model)
    if found is None:
        return None
    version, run = found
    logged = run.data.params
    values: dict[str, Any] = {}
    for name, param in _training(spec).search.space.items():
        raw = logged.get(f"model/{name}")
        value = None if raw is None else _parse_param(raw, param)
        if value is None:
            return None
        values[name] = value
    return version, values


def _parse_param(raw: str, param: SearchParam) -> Any:
    """A logged (string) parameter value as the search space's type, or ``None`` when it is not in the space."""
    if param.type == "categorical":
        return next((c for c in param.choices or [] if str(c) == raw), None)
    try:
        value: float = int(float(raw)) if param.type == "int" else float(raw)
    except ValueError:
        return None
    inside = param.low is not None and param.high is not None and param.low <= value <= param.high
    return value if inside else None


def _start_label(start: tuple[str, dict[str, Any]] | None) -> str:
    return f"champion v{start[0]}" if start else "none"


def run_tags(spec: ModelSpec, window: TrainingWindow, lineage: Mapping[str, Any] | None) -> dict[str, str]:
    """The tags that make a training run traceable to its data, code and Airflow run."""
    tags = {
        "airloop.model": spec.name,
        "airloop.role": "training",
        "airloop.version": airloop_version(),
        "airloop.code_version": code_version(),
        "data.partitions": window.label,
        "data.holdout": f"{window.holdout[0]}..{window.holdout[-1]}",
        "data.partition_count": str(len(window.partitions)),
        "data.ledger_digest": window.digest(),
        "data.table": spec.batches_table,
    }
    tags.update({f"airflow.{k}": str(v) for k, v in (lineage or {}).items() if v is not None})
    return tags


def lineage_record(
    spec: ModelSpec, window: TrainingWindow, lineage: Mapping[str, Any] | None
) -> dict[str, Any]:
    """Every partition of the window with its role, checksum, validation result and the run that loaded it."""
    roles = {p: role for role, ps in _splits(window).items() for p in ps}
    return {
        "model": spec.name,
        "table": spec.batches_table,
        "ledger_digest": window.digest(),
        "airflow": dict(lineage or {}),
        "partitions": [
            {
                "partition": p,
                "role": roles[p],
                "rows": window.ledger[p].get("rows"),
                "checksum": window.ledger[p]["checksum"],
                "validation_result_id": window.ledger[p].get("validation_result_id"),
                "loaded_by": window.ledger[p].get("airflow_run_id"),
            }
            for p in window.partitions
        ],
    }


def airloop_version() -> str:
    try:
        return package_version("airloop")
    except PackageNotFoundError:
        return "unknown"


@cache
def code_version() -> str:
    """``AIRLOOP_CODE_VERSION`` (set it in images built without ``.git``), else the git commit of the checkout,
    suffixed ``-dirty`` when it has uncommitted changes, else ``unknown``."""
    if os.environ.get("AIRLOOP_CODE_VERSION"):
        return os.environ["AIRLOOP_CODE_VERSION"]
    # --no-optional-locks: a status check must never write the repository's index.
    git = ["git", "--no-optional-locks", "-C", str(project_root())]
    try:
        sha = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        dirty = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def pip_requirements() -> list[str]:
    """What a scorer must install to load the model: pinned, never inferred (inference costs ~5 s per log)."""
    return [f"{name}=={package_version(name)}" for name in ("scikit-learn", "skops", "numpy", "pandas")]


def _training(spec: ModelSpec) -> TrainingSpec:
    if spec.training is None:
        raise TrainingError(f"{spec.name}: the spec has no 'training' section")
    return spec.training


def _estimator_class(path: str) -> type:
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise TrainingError(f"training.estimator {path!r} cannot be imported: {exc}") from exc


def _native_categories(estimator_class: type) -> bool:
    return "categorical_features" in estimator_class().get_params()


def _splits(window: TrainingWindow) -> dict[str, list[str]]:
    return {"train": window.train, "validation": window.validation, "holdout": window.holdout}


def _run_params(spec: ModelSpec, window: TrainingWindow, metric: str) -> dict[str, Any]:
    training = _training(spec)
    numeric, categorical = feature_kinds(spec)
    native = _native_categories(_estimator_class(training.estimator))
    return {
        "estimator": training.estimator,
        "target": f"{spec.target.column} > {spec.target.threshold:g}",
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
        "search/metric": metric,
        "search/timeout_minutes": training.search.timeout_minutes,
        "search/seed": training.seed,
    }


def _log_datasets(
    spec: ModelSpec, window: TrainingWindow, X: pd.DataFrame, y: pd.Series, split: Mapping[str, Any]
) -> Any:
    """Log the rows the model is fitted on ("training": train + validation) and the holdout; returns the latter."""
    import mlflow

    source_class = _warehouse_source_class()
    datasets = {}
    for context, partitions, rows in (
        ("training", window.train + window.validation, split["train"] | split["validation"]),
        ("holdout", window.holdout, split["holdout"]),
    ):
        span = f"{partitions[0]}..{partitions[-1]}"
        datasets[context] = mlflow.data.from_pandas(
            X[rows].assign(**{LABEL: y[rows].to_numpy(dtype=bool)}),
            source=source_class(
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


def _search(
    spec: ModelSpec,
    X: pd.DataFrame,
    y: pd.Series,
    split: Mapping[str, Any],
    metric: str,
    trials: int,
    start: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """``trials`` trials of Optuna's seeded TPE (one with the spec's params when the space is empty), with
    ``start`` as the first trial's parameters when given.

    Trials run ``search.parallel_trials`` at a time, each in a process forked from this one (the frames are
    shared, copy-on-write), through Optuna's ask-and-tell interface: a batch is asked, fitted in parallel and told
    in trial order, so a seed always gives the same search on any machine. Each trial is an MLflow run nested in
    the training run, logged from this process.
    """
    import optuna

    training = _training(spec)
    budget = training.search
    sampler = optuna.samplers.TPESampler(
        seed=training.seed,
        # Optuna's default of 10 random start-up trials would leave a budget of 12 almost no guided trials; a
        # warm start counts as one of them.
        n_startup_trials=min(10, max(2, trials // 3)),
        # A batch's later trials are sampled while the earlier ones run: counted as bad, they are not repeated.
        constant_liar=budget.parallel_trials > 1,
    )
    study = optuna.create_study(
        direction="maximize" if HIGHER_IS_BETTER[metric] else "minimize", sampler=sampler
    )
    if start:
        study.enqueue_trial(dict(start))
    deadline = time.monotonic() + budget.timeout_minutes * 60
    fit = _TrialFit(spec, X, y, split["train"], split["validation"], metric)
    asked_so_far = 0  # not len(study.trials): an enqueued warm start is in it before it is asked
    with fit.pool(budget.parallel_trials) as score:
        while asked_so_far < trials and time.monotonic() < deadline:
            asked = [study.ask() for _ in range(min(budget.parallel_trials, trials - asked_so_far))]
            asked_so_far += len(asked)
            candidates = [suggest(trial, budget.space) for trial in asked]
            for trial, params, value in zip(asked, candidates, score(candidates), strict=True):
                _log_trial(trial.number, params, metric, value)
                study.tell(trial, value)
    return study


@dataclass(frozen=True)
class _TrialFit:
    """One trial's work: fit the pipeline on the train rows, score it on the validation rows."""

    spec: ModelSpec
    X: pd.DataFrame
    y: pd.Series
    train: Any
    validation: Any
    metric: str

    def __call__(self, params: Mapping[str, Any]) -> float:
        pipeline = build_pipeline(self.spec, params).fit(self.X[self.train], self.y[self.train])
        proba = pipeline.predict_proba(self.X[self.validation])[:, 1]
        return metric_value(self.metric, self.y[self.validation], proba)

    @contextmanager
    def pool(self, processes: int) -> Iterator[Callable[[list[dict[str, Any]]], list[float]]]:
        """Scores a list of candidates, in this process or in ``processes`` forked ones."""
        if processes <= 1:
            yield lambda candidates: [self(c) for c in candidates]
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # Forked, the workers inherit this fit (the frames) through the initializer's arguments, never pickled;
        # only the candidates travel to them.
        with ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("fork"), initializer=_adopt, initargs=(self,)
        ) as executor:
            yield lambda candidates: list(executor.map(_fit_adopted, candidates))


#: The trial fit a forked worker process runs (set there by :func:`_adopt`).
_ADOPTED: _TrialFit | None = None


def _adopt(fit: _TrialFit) -> None:
    from threadpoolctl import threadpool_limits

    global _ADOPTED
    _ADOPTED = fit
    threadpool_limits(1)  # the processes are the parallelism


def _fit_adopted(params: dict[str, Any]) -> float:
    return _ADOPTED(params)  # type: ignore[misc]


def _log_trial(number: int, params: Mapping[str, Any], metric: str, value: float) -> None:
    import mlflow

    with mlflow.start_run(run_name=f"trial {number}", nested=True, tags={"airloop.role": "trial"}):
        mlflow.log_params({f"model/{k}": v for k, v in params.items()})
        mlflow.log_metric(f"validation/{metric}", value)


def _log_model(spec: ModelSpec, pipeline: Pipeline, X: pd.DataFrame) -> Any:
    import mlflow
    import skops.io
    from mlflow.models import infer_signature

    example = X.head(5)
    return mlflow.sklearn.log_model(
        pipeline,
        name="model",
        registered_model_name=spec.registered_model,
        signature=infer_signature(example, pipeline.predict_proba(example)),
        input_example=example,
        pip_requirements=pip_requirements(),
        # pyfunc users get probabilities, as the gate and the scorer do.
        pyfunc_predict_fn="predict_proba",
        # skops (MLflow's default format) refuses types it does not know; these are the types of the pipeline
        # built just above in this process, so trusting them is trusting our own output.
        skops_trusted_types=skops.io.get_untrusted_types(data=skops.io.dumps(pipeline)),
    )


@cache
def _warehouse_source_class() -> type:
    """MLflow's dataset source for warehouse partitions, defined on first use (MLflow is imported lazily).

    The source names the asset, table and partition range, never the warehouse URL (it may hold a password).
    """
    from mlflow.data.dataset_source import DatasetSource

    class WarehouseDatasetSource(DatasetSource):
        def __init__(self, uri: str, table: str, partitions: str, ledger_digest: str) -> None:
            self.uri, self.table, self.partitions, self.ledger_digest = uri, table, partitions, ledger_digest

        @staticmethod
        def _get_source_type() -> str:
            return "airloop_warehouse"

        def load(self) -> str:
            return self.uri

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return False

        @classmethod
        def _resolve(cls, raw_source: Any) -> WarehouseDatasetSource:
            raise NotImplementedError("airloop warehouse sources are built by airloop.training, not resolved")

        def to_dict(self) -> dict[str, Any]:
            return {
                "uri": self.uri,
                "table": self.table,
                "partitions": self.partitions,
                "ledger_digest": self.ledger_digest,
            }

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> WarehouseDatasetSource:
            return cls(**source_dict)

    return WarehouseDatasetSource
