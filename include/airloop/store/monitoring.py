"""The monitoring table: one row per model and monitored window, the figures of its latest monitor run."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from airloop.store.schema import monitoring


def store_result(engine: Engine, row: Mapping[str, Any]) -> int:
    """Replace the model's row for the window (one transaction); returns its id."""
    key = (
        (monitoring.c.model == row["model"])
        & (monitoring.c.window_first == row["window_first"])
        & (monitoring.c.window_last == row["window_last"])
    )
    with engine.begin() as conn:
        conn.execute(monitoring.delete().where(key))
        result = conn.execute(monitoring.insert().values(**row, created_at=datetime.now(UTC)))
        return int(result.inserted_primary_key[0])


def monitoring_history(engine: Engine, model: str, *, limit: int | None = None) -> list[dict[str, Any]]:
    """The model's monitoring rows, latest window first (``limit`` of them), figures and reasons decoded."""
    query = (
        sa.select(monitoring)
        .where(monitoring.c.model == model)
        .order_by(monitoring.c.window_last.desc(), monitoring.c.id.desc())
    )
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [
            {**r._mapping, "reasons": json.loads(r.reasons), "figures": json.loads(r.figures)}
            for r in conn.execute(query)
        ]
