"""The warehouse's tables: the shared ones (batch ledger, event log, monitoring results, champion moves), versioned
by the Alembic migrations in :mod:`airloop.store.migrations`, and the per-model ones, whose columns come from a
model's spec (validated batches, predictions), kept in step with it by :func:`airloop.store.db.sync_table`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from airloop.core.spec import ColumnType, ModelSpec

#: The partition key column of a model's batch table.
PARTITION = "_partition"
#: A row's stable id within its partition: its position in the batch as delivered, assigned at load.
ROW = "_row"
#: The checksum of the delivery a row came from: predictions made from another delivery are stale.
BATCH_CHECKSUM = "_batch_checksum"
LOADED_AT = "_loaded_at"

#: The predictions table's reference to a batch row (its ``_row``).
ROW_INDEX = "row_index"

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

#: One row per model and window: the figures of a monitoring run, for trends and status.
monitoring = sa.Table(
    "airloop_monitoring",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("window_first", sa.String(32), nullable=False),
    sa.Column("window_last", sa.String(32), nullable=False),
    sa.Column("champion_version", sa.String(32)),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("drifted", sa.Boolean, nullable=False),
    sa.Column("drift_share", sa.Float),
    sa.Column("drifted_features", sa.Integer),
    sa.Column("features", sa.Integer),
    sa.Column("prediction_drift", sa.Float),
    sa.Column("quality_metric", sa.String(32)),
    sa.Column("quality_current", sa.Float),
    sa.Column("quality_baseline", sa.Float),
    sa.Column("quality_drop", sa.Float),
    sa.Column("current_rows", sa.Integer, nullable=False),
    sa.Column("reference_rows", sa.Integer, nullable=False),
    sa.Column("labelled_rows", sa.Integer, nullable=False),
    sa.Column("reasons", sa.Text, nullable=False),
    sa.Column("figures", sa.Text, nullable=False),
    sa.Column("report_path", sa.Text),
    sa.Column("mlflow_run_id", sa.String(64)),
    sa.Column("mlflow_run_url", sa.Text),
    sa.Column("airflow_run_id", sa.String(250)),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("model", "window_first", "window_last", name="uq_airloop_monitoring_window"),
)

#: Champion moves (promotions, rollbacks): an intent recorded before the registry's aliases move, completed with
#: the event that reports it; see :mod:`airloop.promote.champion`.
champion_moves = sa.Table(
    "airloop_champion_moves",
    metadata,
    sa.Column("key", sa.String(300), primary_key=True),
    sa.Column("model", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("expected", sa.String(32)),
    sa.Column("target", sa.String(32), nullable=False),
    sa.Column("previous", sa.String(32)),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("event_id", sa.Integer),
    sa.Column("lease_token", sa.String(32), nullable=False),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # At most one move of a model in progress: a second intent cannot be written while one is pending.
    sa.Index(
        "uq_airloop_champion_moves_pending",
        "model",
        unique=True,
        sqlite_where=sa.text("state = 'pending'"),
        postgresql_where=sa.text("state = 'pending'"),
    ),
)

#: The definition (a digest of its DDL) each per-model table was last brought in step with.
table_versions = sa.Table(
    "airloop_table_versions",
    metadata,
    sa.Column("table_name", sa.String(128), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

_SQL_TYPES: dict[str, Any] = {
    "integer": sa.BigInteger,
    "number": sa.Float,
    "string": sa.Text,
    "timestamp": lambda: sa.DateTime(timezone=True),
    "boolean": sa.Boolean,
}


def contract_types(spec: ModelSpec) -> dict[str, ColumnType]:
    """The contract's columns and their types, in the contract's order."""
    return {c.name: c.type for c in spec.contract.columns}


def batches_table(spec: ModelSpec, meta: sa.MetaData | None = None) -> sa.Table:
    """The table of a model's validated batches: the contract's columns, typed, keyed by partition and row, and
    unique on the partition and the contract's key when it declares one."""
    meta = meta if meta is not None else sa.MetaData()
    columns = [sa.Column(c.name, _SQL_TYPES[c.type](), nullable=True) for c in spec.contract.columns]
    key = spec.contract.key
    return sa.Table(
        spec.batches_table,
        meta,
        sa.Column(PARTITION, sa.String(32), primary_key=True),
        sa.Column(ROW, sa.BigInteger, primary_key=True, autoincrement=False),
        *columns,
        sa.Column(BATCH_CHECKSUM, sa.String(64), nullable=False),
        sa.Column(LOADED_AT, sa.DateTime(timezone=True), nullable=False),
        # The contract's key, enforced by the database within each partition (validation refuses a delivery
        # that repeats a key before it gets here; this makes a doubled row impossible, not only unlikely).
        *([sa.Index(f"{spec.batches_table}_key", PARTITION, *key, unique=True)] if key else []),
    )


def predictions_table(
    spec: ModelSpec, values: Sequence[sa.Column[Any]], meta: sa.MetaData | None = None
) -> sa.Table:
    """A model's predictions: one row per batch row and alias, with what the model's kind stores (``values``,
    new columns, see :meth:`airloop.model.task.Task.prediction_columns`) and the version that made them."""
    meta = meta if meta is not None else sa.MetaData()
    return sa.Table(
        f"{spec.name}_predictions",
        meta,
        sa.Column("partition", sa.String(32), primary_key=True),
        sa.Column("alias", sa.String(32), primary_key=True),
        sa.Column(ROW_INDEX, sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(32), nullable=False),
        *values,
        sa.Column("batch_checksum", sa.String(64), nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("airflow_run_id", sa.String(250)),
    )
