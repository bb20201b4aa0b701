"""The SQL warehouse: validated batches per model, the batch ledger and the event log.

SQLite by default, PostgreSQL in production; everything goes through SQLAlchemy Core. Writes of one partition
happen in one transaction (delete + insert), so a re-run or a backfill replaces and never duplicates.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from airloop.spec import ColumnSpec, ModelSpec

if TYPE_CHECKING:
    import pandas as pd

PARTITION_COLUMN = "_partition"

metadata = sa.MetaData()

ledger = sa.Table(
    "airloop_batch_ledger",
    metadata,
    sa.Column("model", sa.String(64), primary_key=True),
    sa.Column("partition", sa.String(32), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("rows", sa.Integer),
    sa.Column("checksum", sa.String(64), nullable=False),
    sa.Column("validation_result_id", sa.String(200)),
    sa.Column("reason", sa.Text),
    sa.Column("files", sa.Text, nullable=False),
    sa.Column("quarantine_path", sa.Text),
    sa.Column("airflow_run_id", sa.String(250)),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

events = sa.Table(
    "airloop_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("partition", sa.String(32)),
    sa.Column("dedup_key", sa.String(300), unique=True),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

_SQL_TYPES: dict[str, Any] = {
    "integer": sa.BigInteger,
    "number": sa.Float,
    "string": sa.Text,
    "timestamp": lambda: sa.DateTime(timezone=True),
    "boolean": sa.Boolean,
}


@cache
def engine_for(url: str) -> Engine:
    """One engine per URL and process. SQLite gets WAL and a busy timeout: several tasks write at once."""
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=60000")
            cursor.close()

        return engine
    return sa.create_engine(url, pool_pre_ping=True)


def batches_table(spec: ModelSpec, meta: sa.MetaData | None = None) -> sa.Table:
    """The table of a model's validated batches, typed from its contract, plus the partition key."""
    meta = meta if meta is not None else sa.MetaData()
    columns = [sa.Column(c.name, _SQL_TYPES[c.type](), nullable=True) for c in spec.contract.columns]
    return sa.Table(
        spec.batches_table,
        meta,
        sa.Column(PARTITION_COLUMN, sa.String(32), nullable=False, index=True),
        *columns,
        sa.Column("_batch_checksum", sa.String(64), nullable=False),
        sa.Column("_loaded_at", sa.DateTime(timezone=True), nullable=False),
    )


def ensure_tables(engine: Engine, spec: ModelSpec | None = None) -> None:
    """Create the shared tables (and the model's batch table) if missing; safe when tasks race to do it."""
    tables = [ledger, events]
    if spec is not None:
        tables.append(batches_table(spec))
    for table in tables:
        try:
            table.create(engine, checkfirst=True)
        except (sa.exc.IntegrityError, sa.exc.ProgrammingError, sa.exc.OperationalError):
            # Another task created it between the check and the CREATE; anything else shows up below.
            if not sa.inspect(engine).has_table(table.name):
                raise


def _now() -> datetime:
    return datetime.now(UTC)


def _records(frame: pd.DataFrame, spec: ModelSpec) -> list[dict[str, Any]]:
    names = [c.name for c in spec.contract.columns]
    kinds = {c.name: c for c in spec.contract.columns}
    rows = frame[names].astype(object).where(frame[names].notna(), None).to_dict("records")
    for row in rows:
        for name, value in row.items():
            row[name] = _python_value(value, kinds[name])
    return rows


def _python_value(value: Any, column: ColumnSpec) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if column.type == "timestamp":
        return value.to_pydatetime() if hasattr(value, "to_pydatetime") else value
    if column.type == "integer":
        return int(value)
    if column.type == "number":
        return float(value)
    if column.type == "boolean":
        return bool(value)
    return value


def replace_partition(
    engine: Engine,
    spec: ModelSpec,
    partition: str,
    frame: pd.DataFrame,
    *,
    ledger_row: Mapping[str, Any],
) -> int:
    """Atomically replace a partition's rows and record it in the ledger; returns the rows written."""
    table = batches_table(spec)
    rows = _records(frame, spec)
    loaded_at = _now()
    for row in rows:
        row[PARTITION_COLUMN] = partition
        row["_batch_checksum"] = ledger_row["checksum"]
        row["_loaded_at"] = loaded_at
    with engine.begin() as conn:
        conn.execute(table.delete().where(table.c[PARTITION_COLUMN] == partition))
        if rows:
            conn.execute(table.insert(), rows)
        _upsert_ledger(conn, spec.name, partition, {**ledger_row, "status": "passed", "rows": len(rows)})
    return len(rows)


def record_batch(engine: Engine, model: str, partition: str, row: Mapping[str, Any]) -> None:
    """Record a batch in the ledger without touching the warehouse (e.g. a quarantined one)."""
    with engine.begin() as conn:
        _upsert_ledger(conn, model, partition, row)


def _upsert_ledger(conn: Connection, model: str, partition: str, row: Mapping[str, Any]) -> None:
    values = {
        "model": model,
        "partition": partition,
        "status": row["status"],
        "rows": row.get("rows"),
        "checksum": row["checksum"],
        "validation_result_id": row.get("validation_result_id"),
        "reason": row.get("reason") or None,
        "files": json.dumps(list(row.get("files", []))),
        "quarantine_path": row.get("quarantine_path"),
        "airflow_run_id": row.get("airflow_run_id"),
        "updated_at": _now(),
    }
    key = (ledger.c.model == model) & (ledger.c.partition == partition)
    conn.execute(ledger.delete().where(key))
    conn.execute(ledger.insert().values(**values))


def event_row(
    model: str,
    kind: str,
    payload: Mapping[str, Any],
    *,
    partition: str | None = None,
    dedup_key: str | None = None,
) -> dict[str, Any]:
    """One row of the event log, for writing inside a caller's own transaction."""
    return {
        "model": model,
        "kind": kind,
        "partition": partition,
        "dedup_key": dedup_key,
        "payload": json.dumps(payload, default=str, sort_keys=True),
        "created_at": _now(),
    }


def record_event(
    engine: Engine,
    model: str,
    kind: str,
    payload: Mapping[str, Any],
    *,
    partition: str | None = None,
    dedup_key: str | None = None,
) -> bool:
    """Append to the event log; with ``dedup_key`` an event is written once. Returns whether it was written."""
    values = event_row(model, kind, payload, partition=partition, dedup_key=dedup_key)
    with engine.begin() as conn:
        if dedup_key is not None and conn.execute(
            sa.select(events.c.id).where(events.c.dedup_key == dedup_key)
        ).first():
            return False
        conn.execute(events.insert().values(**values))
    return True


def event_keys(engine: Engine, prefix: str) -> set[str]:
    """The dedup keys of logged events starting with ``prefix``."""
    with engine.connect() as conn:
        rows = conn.execute(sa.select(events.c.dedup_key).where(events.c.dedup_key.startswith(prefix)))
        return {r[0] for r in rows}


def ledger_rows(engine: Engine, model: str) -> list[dict[str, Any]]:
    """A model's batches, oldest partition first."""
    with engine.connect() as conn:
        result = conn.execute(sa.select(ledger).where(ledger.c.model == model).order_by(ledger.c.partition))
        return [_ledger_dict(r._mapping) for r in result]


def _ledger_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    out["files"] = json.loads(out["files"])
    return out


def events_for(engine: Engine, model: str, kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """A model's events, oldest first."""
    query = sa.select(events).where(events.c.model == model).order_by(events.c.id)
    if kinds is not None:
        query = query.where(events.c.kind.in_(list(kinds)))
    with engine.connect() as conn:
        return [{**r._mapping, "payload": json.loads(r.payload)} for r in conn.execute(query)]


def partition_row_count(engine: Engine, spec: ModelSpec, partition: str) -> int:
    """Rows stored for one partition."""
    table = batches_table(spec)
    with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(table).where(table.c[PARTITION_COLUMN] == partition)
        return int(conn.execute(query).scalar_one())
