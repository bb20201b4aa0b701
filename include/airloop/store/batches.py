"""Reading a model's validated batches back from the warehouse, into pandas (in bulk: :mod:`airloop.store.bulk`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from airloop.core.spec import ColumnType, ModelSpec
from airloop.store.bulk import read_rows
from airloop.store.schema import BATCH_CHECKSUM, LOADED_AT, PARTITION, ROW, batches_table, contract_types

if TYPE_CHECKING:
    import pandas as pd

#: How each partition's rows are ordered: ``delivered``, as they were delivered (their ``_row``); ``time``, by the
#: time column, rows of the same time as delivered; ``content``, by the time column, then every other contract
#: column, so that a sample drawn from them depends only on what the rows hold, never on how a delivery ordered
#: them.
RowOrder = Literal["delivered", "time", "content"]


def read_batches(
    engine: Engine, spec: ModelSpec, partitions: Sequence[str], *, order: RowOrder = "delivered"
) -> pd.DataFrame:
    """The stored rows of ``partitions``, partition by partition in ``order``, with ``_partition`` and ``_row``."""
    table = batches_table(spec)
    query = sa.select(table).where(table.c[PARTITION].in_(list(partitions)))
    types: dict[str, ColumnType] = {PARTITION: "string", ROW: "integer", **contract_types(spec)}
    types.update({BATCH_CHECKSUM: "string", LOADED_AT: "timestamp"})
    if order == "delivered":
        sort_by = [PARTITION, ROW]
    elif order == "time" and types[spec.time_column] in ("timestamp", "integer", "number"):
        sort_by = [PARTITION, spec.time_column, ROW]
    else:  # text among the keys: the database's collation orders it
        time_then = [spec.time_column] + (
            [c.name for c in spec.contract.columns if c.name != spec.time_column]
            if order == "content"
            else []
        )
        by = [table.c[PARTITION], *(table.c[n] for n in time_then), table.c[ROW]]
        with engine.connect() as conn:
            return read_rows(conn, query.order_by(*by), types)
    # Partition keys (ISO dates), numbers, instants and row numbers: sorted by Arrow after the read.
    with engine.connect() as conn:
        return read_rows(conn, query, types, sort_by=sort_by)
