"""One row per model for the Models page: what it is, who serves, what came in last, what monitoring said, and a
health badge. Built from :func:`airloop.status.warehouse_status` alone (the ledger, the monitoring table and the
event log, where every champion move is recorded): the page asks nothing of the tracking server, so it answers
fast and answers when MLflow does not. :func:`model_row` and :func:`health` are pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airloop.core.spec import ModelSpec
from airloop.model.context import ModelContext
from airloop.status import warehouse_status

HEALTHY, DRIFTING, FAILING = "healthy", "drifting", "failing"


@dataclass(frozen=True)
class Health:
    """A model's badge (``healthy``, ``drifting``, ``failing``) and why."""

    badge: str
    reasons: list[str] = field(default_factory=list)


def health(status: Mapping[str, Any]) -> Health:
    """``failing``: the latest batch was quarantined, alerts wait undelivered, or batches came in and no champion
    was ever recorded; ``drifting``: drift that no retrain has handled yet; ``healthy`` otherwise."""
    failing, drifting = [], []
    batches = status.get("batches") or []
    if batches and batches[-1]["status"] != "passed":
        failing.append(f"the latest batch, {batches[-1]['partition']}, was {batches[-1]['status']}")
    undelivered = status.get("undelivered_alerts") or []
    if undelivered:
        failing.append(f"{len(undelivered)} alert(s) not delivered")
    if batches and champion_record(status) is None:
        failing.append("no champion recorded")
    pending = len(status.get("open_drift_events") or [])
    if pending:
        drifting.append(f"{pending} drift event(s) not handled by a retrain yet")
    if failing:
        return Health(FAILING, failing + drifting)
    if drifting:
        return Health(DRIFTING, drifting)
    return Health(HEALTHY)


def champion_record(status: Mapping[str, Any]) -> dict[str, Any] | None:
    """The champion as the event log records it: the version of the latest promotion or rollback, and when."""
    moves = [h for h in status.get("history") or [] if h["kind"] in ("promotion", "rollback")]
    return moves[-1] if moves else None


def model_row(spec: ModelSpec, status: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The Models page's row of one model, from its warehouse status."""
    move = champion_record(status)
    served = None
    if move is not None:
        since = datetime.fromisoformat(move["at"]) if move.get("at") else None
        served = {
            "version": move["version"],
            "since": move.get("at"),
            "age_days": round((now - since).total_seconds() / 86400, 1) if since else None,
            "how": move["kind"] + (" (forced)" if move.get("forced") else ""),
            "by": move.get("by"),
        }
    refused = [h for h in status.get("history") or [] if h["kind"] == "promotion_refused"]
    batches = status.get("batches") or []
    monitoring = status.get("monitoring")
    verdict = health(status)
    return {
        "model": spec.name,
        "kind": spec.target.kind,
        "champion": served,
        "refused_promotions": len(refused),
        "last_batch": batches[-1] if batches else None,
        "batches": dict(status.get("counts") or {}),
        "last_window": (
            {
                "window": f"{monitoring['window_first']}..{monitoring['window_last']}",
                "outcome": monitoring["outcome"],
                "drifted": bool(monitoring["drifted"]),
                "drift_share": monitoring["drift_share"],
            }
            if monitoring
            else None
        ),
        "open_alerts": len(status.get("undelivered_alerts") or [])
        + len(status.get("open_drift_events") or []),
        "health": verdict.badge,
        "health_reasons": verdict.reasons,
    }


def models_overview(contexts: list[ModelContext], now: datetime) -> list[dict[str, Any]]:
    """The rows of ``contexts``' models, by name."""
    return [model_row(ctx.spec, warehouse_status(ctx), now) for ctx in sorted(contexts, key=lambda c: c.name)]
