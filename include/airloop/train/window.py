"""The training window: the last ``training.window_days`` of validated partitions, split by time.

Its most recent ``holdout_days`` partitions are held out (the champion/challenger comparison uses them); of the
rest, the most recent ``validation_fraction`` of partitions validate the hyperparameter search and the older ones
train. Splits follow time, never random rows, because the model will score days it has not seen.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.engine import Engine

from airloop.core.errors import AirloopError
from airloop.core.spec import ModelSpec
from airloop.model.features import training_spec
from airloop.model.lineage import TrainingWindow
from airloop.store.ledger import passed_entries


class TrainingError(AirloopError):
    """The model cannot be trained as specified: too few validated partitions in the window."""


def training_window(engine: Engine, spec: ModelSpec, window_end: date | str | None = None) -> TrainingWindow:
    """The passed partitions of the window ending at ``window_end`` (default: the latest passed partition)."""
    training = training_spec(spec)
    passed = passed_entries(engine, spec.name)
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
