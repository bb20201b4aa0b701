"""Training's pieces on small frames: the window from the ledger, labels, feature types and the pipeline."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from airloop.core.errors import ConfigError
from airloop.core.spec import SearchParam, load_spec
from airloop.local.demo.replay import day_frame
from airloop.model.features import build_pipeline, feature_frame
from airloop.model.task import primary_metric, task_for
from airloop.store.batches import read_batches
from airloop.store.db import open_warehouse, sync_table
from airloop.store.ledger import QUARANTINED, LedgerEntry, record_batch, replace_partition
from airloop.store.schema import PARTITION, ROW, batches_table
from airloop.train.search import TrialFit, parse_param, search, suggest
from airloop.train.window import TrainingError, training_window

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
START = date(2013, 3, 1)


@pytest.fixture(scope="module")
def spec():
    return load_spec(ROOT / "config" / "models" / "flights_delay.yaml")


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    """Four days of real flights (~3,600 rows)."""
    return pd.concat([day_frame(START + timedelta(days=d)) for d in range(4)], ignore_index=True)


@pytest.fixture
def engine(tmp_path, spec):
    engine = open_warehouse(f"sqlite:///{tmp_path}/w.db")
    sync_table(engine, batches_table(spec))
    yield engine
    engine.dispose()


def labelled(frame: pd.DataFrame, spec) -> tuple[pd.DataFrame, pd.Series, int]:
    return task_for(spec).labelled(frame)


def _with_training(spec, **changes):
    return spec.model_copy(update={"training": spec.training.model_copy(update=changes)})


def _seed(engine, spec, days: int, quarantined: tuple[int, ...] = ()) -> list[str]:
    """``days`` days from START: a few rows each in the warehouse (passed) or only in the ledger (quarantined)."""
    partitions = []
    for offset in range(days):
        day = START + timedelta(days=offset)
        partition = day.isoformat()
        partitions.append(partition)
        entry = LedgerEntry(
            partition=partition,
            status="passed",
            checksum=f"{offset:064d}",
            validation_result_id=f"result-{offset}",
            files=["f.parquet"],
        )
        if offset in quarantined:
            record_batch(engine, spec.name, replace(entry, status=QUARANTINED))
        else:
            replace_partition(engine, spec, day_frame(day).head(20), entry)
    return partitions


def test_window_uses_passed_partitions_split_by_time(engine, spec):
    spec = _with_training(spec, window_days=10, holdout_days=3, validation_fraction=0.25)
    partitions = _seed(engine, spec, 12, quarantined=(9,))
    window = training_window(engine, spec)
    # Ends at the latest passed partition, spans 10 days of time, skips the quarantined one; the holdout is the
    # last 3 days of time (one of them quarantined), not the last 3 passed partitions.
    assert window.partitions == [p for i, p in enumerate(partitions[2:], start=2) if i != 9]
    assert window.holdout == [partitions[10], partitions[11]]
    assert window.validation == partitions[7:9]
    assert window.train == partitions[2:7]
    assert window.label == f"{partitions[2]}..{partitions[11]}"


def test_window_end_and_its_digest(engine, spec):
    spec = _with_training(spec, window_days=5, holdout_days=2)
    partitions = _seed(engine, spec, 8)
    window = training_window(engine, spec, window_end=partitions[5])
    assert window.partitions == partitions[1:6]
    assert window.digest() == training_window(engine, spec, window_end=partitions[5]).digest()
    assert window.digest() != training_window(engine, spec, window_end=partitions[6]).digest()
    assert window.digest(window.holdout) != window.digest()


def test_too_few_partitions_is_a_clear_error(engine, spec):
    spec = _with_training(spec, window_days=10, holdout_days=7)
    _seed(engine, spec, 8)
    with pytest.raises(
        TrainingError,
        match=r"8 validated partition\(s\) in the 10 days up to 2013-\S+; training needs at least one in the holdout \(its last 7 days\) and two before it",
    ):
        training_window(engine, spec)
    empty = spec.model_copy(update={"name": "nothing_yet"})
    with pytest.raises(TrainingError, match="no validated partition"):
        training_window(engine, empty)


def test_read_batches_returns_the_partitions_in_time_order(engine, spec):
    partitions = _seed(engine, spec, 3)
    frame = read_batches(engine, spec, partitions[1:], order="time")
    assert frame[PARTITION].unique().tolist() == partitions[1:]
    assert len(frame) == 40
    assert frame[spec.time_column].is_monotonic_increasing
    # Rows of the same hour keep the order they were delivered in.
    for _, same_time in frame.groupby([PARTITION, spec.time_column]):
        assert same_time[ROW].is_monotonic_increasing


def test_features_are_typed_from_the_contract(spec, flights):
    frame = flights.head(5).copy()
    frame["distance"] = frame["distance"].astype(object)  # as a driver might hand it over
    frame.loc[0, "carrier"] = None
    X = feature_frame(frame, spec)
    assert list(X.columns) == spec.features
    assert X["distance"].dtype == "float64" and X["wind_gust"].dtype == "float64"
    assert X["carrier"].dtype == object and pd.isna(X.loc[0, "carrier"])


def test_pipeline_learns_and_scores_unseen_categories(spec, flights):
    rows, y, _ = labelled(flights, spec)
    X = feature_frame(rows, spec)
    pipeline = build_pipeline(spec, {"max_iter": 30}).fit(X, y)
    model = pipeline.named_steps["model"]
    assert type(model).__name__ == "HistGradientBoostingClassifier"
    assert list(model.is_categorical_) == [False] * 13 + [True] * 3  # 13 numbers, then carrier, origin, dest
    unseen = X.head(3).assign(dest="ZZZ", carrier="QQ")
    probabilities = pipeline.predict_proba(unseen)[:, 1]
    assert np.all((probabilities > 0) & (probabilities < 1))


def test_other_estimators_get_one_hot_categories(spec, flights):
    spec = _with_training(spec, estimator="sklearn.linear_model.LogisticRegression", params={"max_iter": 300})
    rows, y, _ = labelled(flights, spec)
    pipeline = build_pipeline(spec).fit(feature_frame(rows, spec), y)
    assert (
        type(pipeline.named_steps["preprocess"].named_transformers_["categorical"]).__name__
        == "OneHotEncoder"
    )


def test_bad_estimator_or_feature_type_is_a_clear_error(spec):
    with pytest.raises(ConfigError, match="cannot be imported"):
        build_pipeline(_with_training(spec, estimator="sklearn.ensemble.NoSuchModel"))
    with_time = spec.model_copy(update={"features": [*spec.features, "time_hour"]})
    with pytest.raises(ConfigError, match="'time_hour' is a timestamp"):
        build_pipeline(with_time)


def test_search_space_suggestions():
    space = {
        "learning_rate": SearchParam(low=0.01, high=0.3, log=True),
        "max_leaf_nodes": SearchParam(low=15, high=127, type="int"),
        "loss": SearchParam(type="categorical", choices=["log_loss"]),
    }
    trial = optuna.trial.FixedTrial({"learning_rate": 0.05, "max_leaf_nodes": 31, "loss": "log_loss"})
    assert suggest(trial, space) == {"learning_rate": 0.05, "max_leaf_nodes": 31, "loss": "log_loss"}


def _small_search(spec, parallel: int):
    search = spec.training.search.model_copy(update={"parallel_trials": parallel})
    params = {**spec.training.params, "max_iter": 20}
    return _with_training(spec, search=search, params=params)


@pytest.fixture
def search_data(spec, flights, tmp_path, monkeypatch):
    """Three days to train on, one to validate; trials log to a local MLflow store, inside a training run."""
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    rows, y, _ = labelled(flights, spec)
    day = pd.to_datetime(rows["time_hour"], utc=True).dt.day.to_numpy()
    split = {"train": day < day.max(), "validation": day == day.max()}
    with mlflow.start_run():
        yield feature_frame(rows, spec), y, split
    mlflow.set_tracking_uri(None)


def _trials(study) -> list[tuple[dict, float]]:
    return [(t.params, round(t.value, 12)) for t in study.trials]


def _search(spec, X, y, split, trials: int, start=None):
    fit = TrialFit(spec, task_for(spec), primary_metric(spec), X, y, split["train"], split["validation"])
    return search(fit, trials, start)


def test_parallel_trials_give_the_same_search_every_time(spec, search_data):
    X, y, split = search_data
    parallel = _small_search(spec, 3)
    first = _search(parallel, X, y, split, trials=5)
    again = _search(parallel, X, y, split, trials=5)
    assert len(first.trials) == 5 and _trials(first) == _trials(again)
    # The trial fitted in a forked process scores what the same parameters score here.
    sequential = _search(_small_search(spec, 1), X, y, split, trials=5)
    assert _trials(sequential)[0] == _trials(first)[0]  # the first random trial: same parameters, same value


def test_a_loss_is_minimised(spec, search_data):
    X, y, split = search_data
    loss = _small_search(spec, 1)
    loss = loss.model_copy(update={"promotion": loss.promotion.model_copy(update={"metric": "log_loss"})})
    study = _search(loss, X, y, split, trials=3)
    assert study.direction.name == "MINIMIZE"
    assert study.best_value == min(t.value for t in study.trials)


def test_a_warm_start_is_the_first_trial(spec, search_data):
    X, y, split = search_data
    start = {"learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 50, "l2_regularization": 0.01}
    study = _search(_small_search(spec, 2), X, y, split, trials=3, start=start)
    assert study.trials[0].params == start and len(study.trials) == 3
    # A budget of one: the warm start alone (a retrain that refits the champion's parameters).
    alone = _search(_small_search(spec, 2), X, y, split, trials=1, start=start)
    assert [t.params for t in alone.trials] == [start] and alone.best_trial.state.name == "COMPLETE"


def test_logged_parameters_are_read_back_in_the_search_space():
    assert parse_param("31", SearchParam(low=15, high=127, type="int")) == 31
    assert parse_param("31.0", SearchParam(low=15, high=127, type="int")) == 31
    assert parse_param("0.05", SearchParam(low=0.02, high=0.3, log=True)) == 0.05
    assert parse_param("0.5", SearchParam(low=0.02, high=0.3)) is None  # outside: another search space
    assert parse_param("abc", SearchParam(low=0.02, high=0.3)) is None
    assert parse_param("True", SearchParam(type="categorical", choices=[True, False])) is True
    assert parse_param("gini", SearchParam(type="categorical", choices=["log_loss"])) is None


def _ledger_only(engine, spec, keys: list[str]) -> None:
    """Passed ledger entries for ``keys``, no rows: all the window reads."""
    for n, key in enumerate(keys):
        entry = LedgerEntry(
            partition=key, status="passed", checksum=f"{n:064d}", validation_result_id=f"r{n}"
        )
        record_batch(engine, spec.name, entry)


def test_an_hourly_window_spans_time_not_a_count_of_partitions(engine, spec):
    from datetime import UTC, datetime

    from airloop.core.partitions import complete_partitions

    hourly = _with_training(
        spec.model_copy(update={"schedule": "@hourly"}),
        window_days=0.5,
        holdout_days=0.125,
        validation_fraction=0.25,
    )
    keys = complete_partitions("@hourly", datetime(2013, 3, 1, tzinfo=UTC), datetime(2013, 3, 2, tzinfo=UTC))
    _ledger_only(engine, hourly, keys)
    window = training_window(engine, hourly)
    # The 12 hours up to the last partition (starts after 11:00, up to 23:00); the last 3 hours held out.
    assert window.partitions == keys[12:]
    assert window.holdout == ["2013-03-01T21:00", "2013-03-01T22:00", "2013-03-01T23:00"]
    assert window.validation == keys[19:21]
    assert window.train == keys[12:19]


def test_a_weekly_window_holds_out_the_last_weeks(engine, spec):
    from datetime import UTC, datetime

    from airloop.core.partitions import complete_partitions

    weekly = _with_training(spec.model_copy(update={"schedule": "@weekly"}), window_days=42, holdout_days=14)
    keys = complete_partitions("@weekly", datetime(2013, 1, 1, tzinfo=UTC), datetime(2013, 4, 1, tzinfo=UTC))
    _ledger_only(engine, weekly, keys)
    window = training_window(engine, weekly, window_end="2013-03-10")
    assert window.partitions == [
        "2013-02-03",
        "2013-02-10",
        "2013-02-17",
        "2013-02-24",
        "2013-03-03",
        "2013-03-10",
    ]
    assert window.holdout == ["2013-03-03", "2013-03-10"]
