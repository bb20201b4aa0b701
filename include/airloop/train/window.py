"""The training window: the last ``training.window_days`` of validated partitions (in time), split by time.

Its most recent ``holdout_days`` are held out (the champion/challenger comparison uses them); of the
rest, the most recent ``validation_fraction`` of partitions validate the hyperparameter search and the older ones
train. Splits follow time, never random rows, because the model will score days it has not seen.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from airloop.core.errors import AirloopError
from airloop.core.partitions import partition_start
from airloop.core.spec import ModelSpec
from airloop.model.features import training_spec
from airloop.model.lineage import TrainingWindow
from airloop.store.ledger import passed_entries


class TrainingError(AirloopError):
    """The model cannot be trained as specified: too few validated partitions in the window."""


def training_window(engine: Engine, spec: ModelSpec, window_end: str | None = None) -> TrainingWindow:
    """The passed partitions of the window ending with partition ``window_end`` (default: the latest passed one):
    those starting less than ``training.window_days`` before it starts, the last ``holdout_days`` of them held
    out, all measured in time."""
    training = training_spec(spec)
    passed = passed_entries(engine, spec.name)
    if not passed:
        raise TrainingError(f"{spec.name}: no validated partition in the warehouse yet; ingest some first")
    end = partition_start(str(window_end)) if window_end else partition_start(max(passed))
    span, holdout_span = timedelta(days=training.window_days), timedelta(days=training.holdout_days)
    partitions = sorted(p for p in passed if end - span < partition_start(p) <= end)
    holdout = [p for p in partitions if end - holdout_span < partition_start(p)]
    search = partitions[: len(partitions) - len(holdout)]
    if not holdout or len(search) < 2:
        raise TrainingError(
            f"{spec.name}: {len(partitions)} validated partition(s) in the {training.window_days:g} days up to "
            f"{_key(end, partitions)}; training needs at least one in the holdout (its last "
            f"{training.holdout_days:g} days) and two before it (one to train, one to validate)"
        )
    validation_count = min(len(search) - 1, max(1, round(len(search) * training.validation_fraction)))
    return TrainingWindow(
        train=search[:-validation_count],
        validation=search[-validation_count:],
        holdout=holdout,
        ledger={p: passed[p] for p in partitions},
    )


def _key(end: datetime, partitions: list[str]) -> str:
    return partitions[-1] if partitions else end.isoformat()
