"""What ``airloop status`` reports about a model: its batches (and, later, champion and drift)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from airloop import warehouse
from airloop.settings import Settings


def model_status(model: str, config: Settings) -> dict[str, Any]:
    """The model's batch ledger, one entry per partition, oldest first."""
    engine = warehouse.engine_for(config.warehouse_url)
    if not sa.inspect(engine).has_table(warehouse.ledger.name):
        rows: list[dict[str, Any]] = []
    else:
        rows = warehouse.ledger_rows(engine, model)
    batches = [
        {
            "partition": r["partition"],
            "status": r["status"],
            "rows": r["rows"],
            "reason": r["reason"],
            "checksum": r["checksum"],
            "validation_result_id": r["validation_result_id"],
            "quarantine_path": r["quarantine_path"],
            "updated_at": r["updated_at"].isoformat() if r["updated_at"] else None,
        }
        for r in rows
    ]
    counts = {"passed": 0, "quarantined": 0}
    for batch in batches:
        counts[batch["status"]] = counts.get(batch["status"], 0) + 1
    return {"model": model, "counts": counts, "batches": batches}


def format_status(status: dict[str, Any]) -> str:
    """A plain-text table of a model's status."""
    lines = [
        f"model {status['model']}: {status['counts'].get('passed', 0)} passed, "
        f"{status['counts'].get('quarantined', 0)} quarantined",
        f"{'partition':<12} {'status':<12} {'rows':>6}  reason",
    ]
    for batch in status["batches"]:
        rows = "" if batch["rows"] is None else str(batch["rows"])
        lines.append(f"{batch['partition']:<12} {batch['status']:<12} {rows:>6}  {batch['reason'] or ''}")
    return "\n".join(lines)
