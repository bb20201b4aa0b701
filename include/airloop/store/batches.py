"""Reading a model's validated batches back from the warehouse, into pandas (imported when called)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from airloop.core.spec import ModelSpec
from airloop.store.schema import PARTITION, ROW, batches_table

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
    import pandas as pd

    table = batches_table(spec)
    if order == "delivered":
        by = [table.c[PARTITION], table.c[ROW]]
    elif order == "time":
        by = [table.c[PARTITION], table.c[spec.time_column], table.c[ROW]]
    else:
        others = [c.name for c in spec.contract.columns if c.name != spec.time_column]
        by = [table.c[PARTITION], table.c[spec.time_column], *(table.c[n] for n in others), table.c[ROW]]
    query = sa.select(table).where(table.c[PARTITION].in_(list(partitions))).order_by(*by)
    with engine.connect() as conn:
        return pd.read_sql(query, conn)
