"""A model's stored predictions: one row per batch row (its ``_row``) and alias, with the model version that made
it and the checksum of the delivery it was made from.

A partition is written per (partition, alias) in one transaction, old rows deleted and new ones inserted, so
re-scoring replaces and never duplicates; the primary key (partition, alias, row) enforces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from airloop.store.schema import PARTITION, ROW, ROW_INDEX

if TYPE_CHECKING:
    import pandas as pd


def write_predictions(
    engine: Engine, table: sa.Table, partition: str, alias: str, records: Sequence[Mapping[str, Any]]
) -> int:
    """Replace the ``alias`` predictions of ``partition`` with ``records`` (full rows of ``table``)."""
    key = (table.c.partition == partition) & (table.c.alias == alias)
    with engine.begin() as conn:
        conn.execute(table.delete().where(key))
        if records:
            conn.execute(table.insert(), list(records))
    return len(records)


def scored_deliveries(engine: Engine, table: sa.Table, alias: str) -> set[tuple[str, str]]:
    """The (partition, batch checksum) pairs ``alias`` has predictions for."""
    query = sa.select(table.c.partition, table.c.batch_checksum).where(table.c.alias == alias).distinct()
    with engine.connect() as conn:
        return {(p, c) for p, c in conn.execute(query)}


def partitions_scored_by(engine: Engine, table: sa.Table, alias: str, airflow_run_id: str) -> set[str]:
    """The partitions whose ``alias`` predictions the Airflow run ``airflow_run_id`` wrote (an earlier try of it)."""
    query = (
        sa.select(table.c.partition)
        .where(table.c.alias == alias, table.c.airflow_run_id == airflow_run_id)
        .distinct()
    )
    with engine.connect() as conn:
        return {p for (p,) in conn.execute(query)}


def scored_partitions(engine: Engine, table: sa.Table, partitions: Sequence[str], alias: str) -> set[str]:
    """Which of ``partitions`` have ``alias`` predictions (answered from the primary key's index)."""
    query = (
        sa.select(table.c.partition)
        .where(table.c.partition.in_(list(partitions)), table.c.alias == alias)
        .distinct()
    )
    with engine.connect() as conn:
        return {p for (p,) in conn.execute(query)}


def read_predictions(
    engine: Engine, table: sa.Table, partitions: Sequence[str], alias: str, values: Sequence[str]
) -> pd.DataFrame:
    """The ``alias`` predictions of ``partitions``: ``_partition``, ``_row``, ``values``, the version and the
    delivery checksum they were made from."""
    import pandas as pd

    query = sa.select(
        table.c.partition.label(PARTITION),
        table.c[ROW_INDEX].label(ROW),
        *(table.c[v] for v in values),
        table.c.version,
        table.c.batch_checksum,
    ).where(table.c.partition.in_(list(partitions)), table.c.alias == alias)
    with engine.connect() as conn:
        return pd.read_sql(query, conn)
