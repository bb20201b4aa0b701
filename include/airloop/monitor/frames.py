"""The frames a monitor run compares: the champion's side (a fixed-seed sample of its training rows, and its
labelled holdout, each with the champion's predictions) and the window's scored rows.

Evidently's costs grow with the rows it compares (1M against 1M rows of 20 columns: 37 s and 3.7 GiB here),
while the drift scores of a 50,000-row sample are within sampling noise of the full ones: see
``benchmarks/drift.py``. Samples are drawn from rows in content order (:mod:`airloop.store.batches`), so the same
champion always gets the same reference.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airloop.core.files import atomic_path
from airloop.core.spec import ModelSpec, MonitoringSpec
from airloop.model.context import ModelContext
from airloop.model.features import feature_frame, model_input
from airloop.model.lineage import read_lineage
from airloop.model.task import PREDICTION, Task
from airloop.store.batches import read_batches
from airloop.store.ledger import passed_entries

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Champion:
    """The champion's version and what its training run recorded: partitions by role, holdout metrics."""

    version: str
    run_id: str
    experiment_id: str
    training: list[str]
    holdout: list[str]
    holdout_metrics: dict[str, float]


def champion_reference(ctx: ModelContext) -> Champion | None:
    """The current champion and its training lineage; ``None`` when there is no champion yet."""
    found = ctx.registry.champion_run()
    if found is None:
        return None
    version, run = found
    lineage = read_lineage(run)
    return Champion(
        version=str(version),
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        training=lineage.training,
        holdout=lineage.holdout,
        holdout_metrics={
            k.removeprefix("holdout/"): v for k, v in run.data.metrics.items() if k.startswith("holdout/")
        },
    )


def labels_arrived(frame: pd.DataFrame, spec: ModelSpec, end: datetime) -> pd.Series:
    """Which rows have a label by ``end``: a known target whose event time plus the label delay is not later."""
    import pandas as pd

    times = pd.to_datetime(frame[spec.time_column], utc=True)
    known_at = times + pd.Timedelta(hours=spec.target.label_delay_hours)
    return frame[spec.target.column].notna() & (known_at <= pd.Timestamp(end))


def sample_rows(frame: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """At most ``rows`` rows drawn with ``seed``, in their original order: the same frame (read in content
    order) always gives the same sample."""
    if len(frame) <= rows:
        return frame.reset_index(drop=True)
    return frame.sample(n=rows, random_state=seed).sort_index().reset_index(drop=True)


def evidently_frame(frame: pd.DataFrame, spec: ModelSpec, task: Task, predicted: Any) -> pd.DataFrame:
    """The features and :data:`PREDICTION` (what prediction drift is measured on), as Evidently's drift and
    summary reports compare them."""
    drift = task.drift_prediction(predicted)
    return feature_frame(frame, spec).assign(**{PREDICTION: drift}).reset_index(drop=True)


def champion_frames(
    ctx: ModelContext, policy: MonitoringSpec, champion: Champion
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The champion's side of every report: Evidently's reference (a fixed-seed sample of its training rows, with
    its predictions) and its labelled holdout rows with its predictions (``None`` without a holdout).

    Both depend only on the champion (a registered version never changes), on the content of its partitions
    and on the policy's sample size and seed, yet every weekly run would read some 50,000 rows and load the model
    to score them again. So they are kept as Parquet under the settings' cache folder, named by all of that: the
    batch checksums in the ledger make a re-delivered partition a new name, never a stale reference.
    """
    import pandas as pd

    spec, engine, task = ctx.spec, ctx.warehouse, ctx.task
    wanted = {*champion.training, *champion.holdout}
    checksums = {p: e.checksum for p, e in passed_entries(engine, spec.name).items() if p in wanted}
    key = hashlib.sha256(
        json.dumps(
            [champion.training, champion.holdout, checksums, policy.reference_rows, policy.seed],
            sort_keys=True,
        ).encode()
    ).hexdigest()[:16]
    folder = ctx.settings.cache_dir / "monitoring" / spec.name / f"v{champion.version}-{key}"
    reference_path, holdout_path = folder / "reference.parquet", folder / "holdout.parquet"
    if reference_path.is_file():
        return pd.read_parquet(reference_path), (
            pd.read_parquet(holdout_path) if holdout_path.is_file() else None
        )

    pipeline = ctx.registry.load(champion.version)
    reference = sample_rows(
        read_batches(engine, spec, champion.training, order="content"), policy.reference_rows, policy.seed
    )
    reference_frame = evidently_frame(
        reference, spec, task, task.predict(pipeline, model_input(reference, spec, pipeline))
    )
    holdout_frame = None
    if champion.holdout:
        holdout, _labels, _unlabelled = task.labelled(
            read_batches(engine, spec, champion.holdout, order="content")
        )
        holdout = sample_rows(holdout, policy.reference_rows, policy.seed)
        predicted = task.predict(pipeline, model_input(holdout, spec, pipeline))
        holdout_frame = task.quality_frame(task.labels(holdout), predicted)
    # The holdout first: a run that finds the reference finds the holdout too.
    for frame, path in ((holdout_frame, holdout_path), (reference_frame, reference_path)):
        if frame is not None:
            _write_parquet(frame, path)
    return reference_frame, holdout_frame


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as partial:
        frame.to_parquet(partial, index=False)
