"""A model's stored predictions, as every stage sees them: the table (its columns are the kind of model's) and
the batch rows joined with the predictions made for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa

from airloop.model.context import ModelContext
from airloop.model.registry import CHAMPION
from airloop.store.batches import read_batches
from airloop.store.db import sync_table
from airloop.store.predictions import read_predictions
from airloop.store.schema import BATCH_CHECKSUM, PARTITION, ROW, predictions_table

if TYPE_CHECKING:
    import pandas as pd


def predictions_of(ctx: ModelContext) -> sa.Table:
    """The model's predictions table, in step with its spec and kind."""
    table = predictions_table(ctx.spec, ctx.task.prediction_columns())
    sync_table(ctx.warehouse, table)
    return table


def scored_rows(
    ctx: ModelContext, partitions: Sequence[str], alias: str = CHAMPION
) -> tuple[pd.DataFrame, list[str]]:
    """The batch rows of ``partitions`` (in content order, see :mod:`airloop.store.batches`) joined with their
    ``alias`` predictions, and the partitions left out because they were reloaded since they were scored.
    Unscored partitions are simply absent."""
    rows = read_batches(ctx.warehouse, ctx.spec, partitions, order="content")
    values = [c.name for c in ctx.task.prediction_columns()]
    predictions = read_predictions(ctx.warehouse, predictions_of(ctx), partitions, alias, values)
    joined = rows.merge(predictions, on=[PARTITION, ROW], how="inner")
    stale = joined["batch_checksum"] != joined[BATCH_CHECKSUM]
    stale_partitions = sorted(set(joined.loc[stale, PARTITION]))
    joined = joined.loc[~joined[PARTITION].isin(stale_partitions)]
    return joined.drop(columns=["batch_checksum"]).reset_index(drop=True), stale_partitions
