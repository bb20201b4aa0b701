"""Monitored windows named by partition keys of any cadence: by date, or by minute (``2013-01-07T05:00``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("airloop_monitoring") as table:
        for column in ("window_first", "window_last"):
            table.alter_column(
                column, type_=sa.String(32), existing_type=sa.String(10), existing_nullable=False
            )


def downgrade() -> None:
    with op.batch_alter_table("airloop_monitoring") as table:
        for column in ("window_first", "window_last"):
            table.alter_column(
                column, type_=sa.String(10), existing_type=sa.String(32), existing_nullable=False
            )
