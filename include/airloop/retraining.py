"""Retraining: which drift event to act on, and what came of acting on it.

Time here is the data's time: a drift event belongs to the last day of its monitored window, and the cooldown is
measured between windows, not on the wall clock, so a backfill or an accelerated replay obeys it exactly as live
data would.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from airloop import warehouse
from airloop.monitoring import DRIFT_HANDLED, mark_drift_handled, open_drift_events
from airloop.settings import Settings, settings

#: Outcomes of a retrain, as written to the drift events it handled.
PROMOTED, KEPT, FAILED = "promoted", "champion kept", "retrain failed"


@dataclass(frozen=True)
class RetrainChoice:
    """The drift event to retrain on (``None``: none is due) and why."""

    event: Mapping[str, Any] | None
    reason: str


def retrain_choice(
    pending: Sequence[Mapping[str, Any]], last_retrain_day: date | None, cooldown_hours: float
) -> RetrainChoice:
    """The newest pending drift event whose window ends at least ``cooldown_hours`` after the last retrain's.

    Pure: ``pending`` are open drift events (oldest first, each with ``partition`` = last day of its window).
    """
    if not pending:
        return RetrainChoice(None, "no pending drift event")
    newest = pending[-1]
    day = date.fromisoformat(newest["partition"])
    if last_retrain_day is not None:
        elapsed = (day - last_retrain_day).days * 24
        if elapsed < cooldown_hours:
            return RetrainChoice(
                None,
                f"{len(pending)} pending drift event(s), the newest ending {day}, within the {cooldown_hours:g} h "
                f"cooldown after the retrain on data up to {last_retrain_day}",
            )
    superseded = len(pending) - 1
    extra = f" ({superseded} older pending event(s) handled with it)" if superseded else ""
    return RetrainChoice(newest, f"drift event {newest['id']} on the window ending {day}{extra}")


def due_drift_event(model: str, *, config: Settings | None = None) -> dict[str, Any] | None:
    """The drift event a retrain should start on now, as a small dict, or ``None``."""
    from airloop.ingest import model_spec

    config = config or settings()
    spec = model_spec(model, config)
    cooldown = spec.monitoring.cooldown_hours if spec.monitoring else 0.0
    choice = retrain_choice(open_drift_events(model, config=config), last_retrain_day(model, config), cooldown)
    if choice.event is None:
        return None
    event = choice.event
    payload = event["payload"]
    return {
        "id": event["id"],
        "partition": event["partition"],
        "window": f"{payload['window']['first']}..{payload['window']['last']}",
        "drift_share": payload.get("drift", {}).get("share"),
        "why": choice.reason,
    }


def last_retrain_day(model: str, config: Settings) -> date | None:
    """The last day of the newest window that a retrain was run on (promoted or not)."""
    engine = warehouse.engine_for(config.warehouse_url)
    days = [
        e["payload"].get("window_last")
        for e in warehouse.events_for(engine, model, [DRIFT_HANDLED])
        if e["payload"].get("outcome") in (PROMOTED, KEPT)
    ]
    days = [d for d in days if d]
    return date.fromisoformat(max(days)) if days else None


def retrain_outcome(model: str, event: Mapping[str, Any], train_run_id: str, train_state: str | None,
                    *, config: Settings | None = None) -> dict[str, Any]:
    """What the triggered training run decided (from the event log), written to every drift event up to ``event``.

    A failed training leaves the events pending, so the next drift (or a re-run) tries again.
    """
    config = config or settings()
    engine = warehouse.engine_for(config.warehouse_url)
    decisions = [
        e
        for e in warehouse.events_for(engine, model, ["promotion", "promotion_refused"])
        if e["payload"].get("airflow_run_id") == train_run_id
    ]
    if decisions:
        last = decisions[-1]
        payload = last["payload"]
        outcome = PROMOTED if last["kind"] == "promotion" else KEPT
        result = {
            "outcome": outcome,
            "version": payload.get("version") or payload.get("challenger_version"),
            "champion_before": payload.get("from_version") or payload.get("champion_version"),
            "reasons": payload.get("reasons") or [],
        }
    else:
        result = {"outcome": FAILED, "version": None, "champion_before": None,
                  "reasons": [f"training run {train_run_id} ended {train_state or 'without a decision'}"]}
    result.update(model=model, drift_event_id=event["id"], window=event["window"], train_run_id=train_run_id)
    if result["outcome"] != FAILED:
        handled = [e for e in open_drift_events(model, config=config) if e["id"] <= event["id"]]
        for drift in handled:
            mark_drift_handled(
                engine,
                model,
                drift["id"],
                {**result, "window_last": event["partition"], "superseded": drift["id"] != event["id"]},
            )
        result["handled_events"] = [e["id"] for e in handled]
    return result

