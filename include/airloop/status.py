"""What ``airloop status`` reports about a model: its batches, its champion and promotion history."""

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


def full_status(model: str, config: Settings) -> dict[str, Any]:
    """Batches from the warehouse, plus the champion from the MLflow registry when the tracking server answers."""
    from airloop.monitoring import last_monitoring, open_drift_events
    from airloop.registry import champion_summary

    status = model_status(model, config)
    status["monitoring"] = last_monitoring(model, config=config)
    status["open_drift_events"] = [
        {
            "id": e["id"],
            "window": f"{e['payload']['window']['first']}..{e['payload']['window']['last']}",
            "drift_share": e["payload"].get("drift", {}).get("share"),
            "at": e["created_at"],
        }
        for e in open_drift_events(model, config=config)
    ]
    try:
        summary = champion_summary(model, config=config)
    except Exception as exc:  # noqa: BLE001 - the ledger is still worth showing without the registry
        status.update(champion=None, history=[], registry_error=f"{type(exc).__name__}: {exc}"[:500])
    else:
        status.update(champion=summary["champion"], aliases=summary["aliases"], history=summary["history"])
    return status


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
    champion = status.get("champion")
    if champion:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(champion["metrics"].items()) if k != "rows")
        lines += ["", f"champion: version {champion['version']} (data {champion['data']}): {metrics}"]
        lines.append(f"  {champion['run_url']}")
    elif "registry_error" in status:
        lines += ["", f"champion: unknown, the registry did not answer ({status['registry_error']})"]
    elif "champion" in status:
        lines += ["", "champion: none yet"]
    monitoring = status.get("monitoring")
    if monitoring:
        lines += [
            "",
            f"last monitoring: {monitoring['window_first']}..{monitoring['window_last']} {monitoring['outcome']}, "
            f"drift share {monitoring['drift_share']}, report {monitoring['report_path']}",
        ]
    for event in status.get("open_drift_events", []):
        lines.append(f"open drift event {event['id']}: window {event['window']}, drift share {event['drift_share']}")
    for event in status.get("history", []):
        what = f"{event['kind']} v{event['version']}" + (f" (was v{event['from_version']})" if event["from_version"] else "")
        lines.append(f"  {event['at']}  {what}{' forced' if event['forced'] else ''}: {'; '.join(event['reasons'])}")
    return "\n".join(lines)
