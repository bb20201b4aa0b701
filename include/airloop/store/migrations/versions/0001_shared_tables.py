"""The shared tables: batch ledger, event log, monitoring results, champion moves, per-model table versions.

Revision ID: 0001
Revises:
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_PENDING = "state = 'pending'"


def upgrade() -> None:
    op.create_table(
        "airloop_batch_ledger",
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
    op.create_table(
        "airloop_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("partition", sa.String(32)),
        sa.Column("dedup_key", sa.String(300), unique=True),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_airloop_events_model", "airloop_events", ["model"])
    op.create_table(
        "airloop_monitoring",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(64), nullable=False),
        sa.Column("window_first", sa.String(10), nullable=False),
        sa.Column("window_last", sa.String(10), nullable=False),
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
    op.create_table(
        "airloop_champion_moves",
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
    )
    op.create_index(
        "uq_airloop_champion_moves_pending",
        "airloop_champion_moves",
        ["model"],
        unique=True,
        sqlite_where=sa.text(_PENDING),
        postgresql_where=sa.text(_PENDING),
    )
    op.create_table(
        "airloop_table_versions",
        sa.Column("table_name", sa.String(128), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "airloop_table_versions",
        "airloop_champion_moves",
        "airloop_monitoring",
        "airloop_events",
        "airloop_batch_ledger",
    ):
        op.drop_table(table)
