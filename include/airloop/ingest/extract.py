"""SQL sources: a partition read by the spec's query for the run's data interval, kept as the partition's delivery.

The query's ``:start`` and ``:end`` are bound as parameters (typed as instants, so every database compares them
with its own timestamps), never formatted into the SQL. The rows come back as the database gives them; timestamp
columns that arrive as text (SQLite) are read as instants, as CSV files are, and every timestamp is kept in UTC
(one without a zone read in the contract's ``timezone``). They are written to the landing
folder as one Parquet file, and from there validated, loaded or quarantined (kept byte for byte) exactly as a
landed file: a re-run of the same interval delivers the same bytes again.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from airloop.core.contracts import Extracted
from airloop.core.errors import ConfigError, SourceError
from airloop.core.spec import SQL_BOUNDS, SqlSourceSpec
from airloop.ingest.landing import find_partition, land_frame, parse_timestamps
from airloop.model.context import ModelContext

#: The name of the file a SQL source's delivery is kept in.
DELIVERY = "query"


def extract_partition(
    ctx: ModelContext, database: Engine, start: datetime, end: datetime, partition: str
) -> Extracted:
    """Run the spec's query for ``[start, end)`` on ``database`` and deliver its result as ``partition``."""
    import pandas as pd

    source = ctx.spec.source
    if not isinstance(source, SqlSourceSpec):
        raise ConfigError(f"{ctx.name}: source.kind is {source.kind}, not sql: there is no query to run")
    query = sa.text(source.query).bindparams(
        *(sa.bindparam(name, type_=sa.DateTime(timezone=True)) for name in SQL_BOUNDS)
    )
    try:
        with database.connect() as conn:
            frame = pd.read_sql(query, conn, params={"start": start, "end": end})
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError(
            f"partition {partition} of {ctx.name}: the query on connection {source.conn_id!r} failed: "
            f"{type(exc).__name__}: {str(exc.orig if hasattr(exc, 'orig') and exc.orig else exc).splitlines()[0]}"
        ) from exc
    timestamps = [c.name for c in ctx.spec.contract.columns if c.type == "timestamp"]
    frame = parse_timestamps(frame, timestamps, ctx.spec.contract.timezone)
    land_frame(frame, ctx.landing, partition, DELIVERY)
    landed = find_partition(ctx.landing, partition)
    return Extracted(model=ctx.name, partition=partition, rows=len(frame), checksum=landed.checksum)
