"""The hyperparameter search: Optuna's seeded TPE sampler within the spec's budget of trials and time, each trial
fitted on the train rows and scored on the validation rows, and logged as an MLflow run nested in the training run.

Optuna, scikit-learn and MLflow are imported when called.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airloop.core.spec import ModelSpec, SearchParam
from airloop.model.features import build_pipeline, training_spec
from airloop.model.task import Metric, Task

if TYPE_CHECKING:
    import optuna
    import pandas as pd


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


def parse_param(raw: str, param: SearchParam) -> Any:
    """A logged (string) parameter value as the search space's type, or ``None`` when it is not in the space."""
    if param.type == "categorical":
        return next((c for c in param.choices or [] if str(c) == raw), None)
    try:
        value: float = int(float(raw)) if param.type == "int" else float(raw)
    except ValueError:
        return None
    inside = param.low is not None and param.high is not None and param.low <= value <= param.high
    return value if inside else None


@dataclass(frozen=True)
class TrialFit:
    """One trial's work: fit the pipeline on the train rows, score it on the validation rows."""

    spec: ModelSpec
    task: Task
    metric: Metric
    X: pd.DataFrame
    y: pd.Series
    train: Any
    validation: Any

    def __call__(self, params: Mapping[str, Any]) -> float:
        pipeline = build_pipeline(self.spec, params).fit(self.X[self.train], self.y[self.train])
        return self.metric(self.y[self.validation], self.task.predict(pipeline, self.X[self.validation]))

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


def search(fit: TrialFit, trials: int, start: Mapping[str, Any] | None = None) -> optuna.Study:
    """``trials`` trials of Optuna's seeded TPE (one with the spec's params when the space is empty), with
    ``start`` as the first trial's parameters when given.

    Trials run ``search.parallel_trials`` at a time, each in a process forked from this one (the frames are
    shared, copy-on-write), through Optuna's ask-and-tell interface: a batch is asked, fitted in parallel and told
    in trial order, so a seed always gives the same search on any machine. Each trial is an MLflow run nested in
    the training run, logged from this process.
    """
    import optuna

    training = training_spec(fit.spec)
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
        direction="maximize" if fit.metric.higher_is_better else "minimize", sampler=sampler
    )
    if start:
        study.enqueue_trial(dict(start))
    deadline = time.monotonic() + budget.timeout_minutes * 60
    asked_so_far = 0  # not len(study.trials): an enqueued warm start is in it before it is asked
    with fit.pool(budget.parallel_trials) as score:
        while asked_so_far < trials and time.monotonic() < deadline:
            asked = [study.ask() for _ in range(min(budget.parallel_trials, trials - asked_so_far))]
            asked_so_far += len(asked)
            candidates = [suggest(trial, budget.space) for trial in asked]
            for trial, params, value in zip(asked, candidates, score(candidates), strict=True):
                _log_trial(trial.number, params, fit.metric.name, value)
                study.tell(trial, value)
    return study


#: The trial fit a forked worker process runs (set there by :func:`_adopt`).
_ADOPTED: TrialFit | None = None


def _adopt(fit: TrialFit) -> None:
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
