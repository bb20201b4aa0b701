"""What ``airloop status`` reports about a model: its batches, the loop (monitoring, drift, retrains), its champion
and promotion history.

Everything but the champion comes from the warehouse: the batch ledger, the monitoring table and the event log,
where a drift event (``drift``) is closed by a ``drift_handled`` event carrying what the retrain decided, and a
retrain on the champion's age leaves an ``age_retrain`` event (:func:`airloop.retrain.retrain.retrain_outcome`).
``--json`` gives every batch and retrain; the text form is a summary of bounded length, since a year of data holds
hundreds of batches and a retrain every few weeks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from airloop.core.events import Event, EventKind
from airloop.model.context import ModelContext
from airloop.monitor.monitor import last_monitoring
from airloop.promote.guard import check_champion
from airloop.promote.promote import champion_summary, promotion_history
from airloop.retrain.policy import KEPT, PROMOTED
from airloop.store.events import events_of
from airloop.store.ledger import ledger_entries
from airloop.store.outbox import undelivered_alerts

#: How many of each list the text form shows (the latest ones); ``--json`` has them all.
TEXT_BATCHES = 5
TEXT_NOT_PASSED = 10
TEXT_RETRAINS = 5
TEXT_HISTORY = 10
TEXT_OPEN_DRIFT = 5
TEXT_UNDELIVERED = 5
#: Drifted features named per drift event.
TEXT_TOP_FEATURES = 3


def model_status(ctx: ModelContext) -> dict[str, Any]:
    """The model's batch ledger, one entry per partition, oldest first."""
    batches = [
        {
            "partition": e.partition,
            "status": e.status,
            "rows": e.rows,
            "reason": e.reason,
            "checksum": e.checksum,
            "validation_result_id": e.validation_result_id,
            "quarantine_path": e.quarantine_path,
            "updated_at": _iso(e.updated_at),
        }
        for e in ledger_entries(ctx.warehouse, ctx.name)
    ]
    counts = {"passed": 0, "quarantined": 0}
    for batch in batches:
        counts[batch["status"]] = counts.get(batch["status"], 0) + 1
    return {"model": ctx.name, "counts": counts, "batches": batches}


def warehouse_status(ctx: ModelContext) -> dict[str, Any]:
    """:func:`model_status` plus the loop as the warehouse records it: the last monitored window, the drift
    events (the last one, open ones, counts), every retrain and the promotion history. No call to the tracking
    server."""
    status = model_status(ctx)
    status["monitoring"] = last_monitoring(ctx.warehouse, ctx.name)
    events = events_of(
        ctx.warehouse, ctx.name, [EventKind.DRIFT, EventKind.DRIFT_HANDLED, EventKind.AGE_RETRAIN]
    )
    status.update(drift_status(events))
    status["retrains"] = retrain_history(events)
    status["history"] = promotion_history(ctx)
    status["undelivered_alerts"] = [
        {
            "subject": item.alert.subject,
            "channels": list(item.missing),
            "queued_at": _iso(item.queued_at),
            "dag_id": item.alert.dag_id,
            "run_id": item.alert.run_id,
        }
        for item in undelivered_alerts(ctx.warehouse, ctx.name)
    ]
    return status


def full_status(ctx: ModelContext) -> dict[str, Any]:
    """:func:`warehouse_status`, plus the champion from the MLflow registry when the tracking server answers."""
    status = warehouse_status(ctx)
    try:
        summary = champion_summary(ctx)
        unrecorded = check_champion(ctx).unrecorded
    except Exception as exc:  # noqa: BLE001 - the ledger is still worth showing without the registry
        status.update(champion=None, registry_error=f"{type(exc).__name__}: {exc}"[:500])
    else:
        status.update(
            champion=summary["champion"], aliases=summary["aliases"], champion_unrecorded=unrecorded
        )
    return status


def drift_status(events: Iterable[Event]) -> dict[str, Any]:
    """The drift events of a model's event log (``drift`` and ``drift_handled`` events): ``drift`` holds their
    counts and the last one, how it was handled or that it is pending; ``open_drift_events`` the ones no retrain
    has handled yet."""
    drifts, handled, _aged = _split(events)
    summaries = [_drift_summary(e, handled.get(e.id)) for e in drifts]
    pending = [s for s in summaries if s["status"] == "pending"]
    return {
        "drift": {
            "events": len(summaries),
            "pending": len(pending),
            "last": summaries[-1] if summaries else None,
        },
        "open_drift_events": [
            {"id": s["id"], "window": s["window"], "drift_share": s["drift_share"], "at": s["at"]}
            for s in pending
        ],
    }


def retrain_history(events: Iterable[Event]) -> list[dict[str, Any]]:
    """One entry per retrain that decided something (promoted, champion kept), oldest first, from a model's event
    log: a retrain on drift closes its drift event and the older pending ones, each with a ``drift_handled`` event
    carrying the outcome; a retrain on the champion's age writes an ``age_retrain`` event (and closes the pending
    drift events too). ``trigger`` says which: ``drift``, ``age`` or ``drift and age``."""
    _drifts, handled, aged = _split(events)
    runs: dict[str, list[Event]] = {}
    for event in handled.values():
        runs.setdefault(event.payload.train_run_id, []).append(event)
    ages = {event.payload.train_run_id: event for event in aged}
    retrains = []
    for run in runs.keys() | ages.keys():
        closing, age = runs.get(run, []), ages.get(run)
        # The retrain's own drift event (the others were superseded by it), else its age record.
        main = next((e for e in closing if not e.payload.superseded), age or closing[-1])
        payload = main.payload
        retrains.append(
            {
                "at": _iso(main.created_at),
                "trigger": "drift and age" if age and payload.drift_event_id else "age" if age else "drift",
                "window": payload.window,
                "drift_event_id": payload.drift_event_id,
                "handled_events": sorted(e.payload.drift_event_id for e in closing),
                "train_run_id": payload.train_run_id,
                "outcome": payload.outcome,
                "version": payload.version,
                "champion_before": payload.champion_before,
                "reasons": list(payload.reasons),
                "champion_age_days": age.payload.champion_age_days if age else None,
                "order": min(e.id for e in [*closing, *([age] if age else [])]),
            }
        )
    retrains.sort(key=lambda r: r["order"])
    return [{k: v for k, v in r.items() if k != "order"} for r in retrains]


def format_status(status: Mapping[str, Any]) -> str:
    """A plain-text summary of a model's status (from any of the ``*_status`` functions above)."""
    lines = _batch_lines(status)
    champion = status.get("champion")
    if champion:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(champion["metrics"].items()) if k != "rows")
        lines += ["", f"champion: version {champion['version']} (data {champion['data']}): {metrics}"]
        lines.append(f"  {champion['run_url']}")
    elif "registry_error" in status:
        lines += ["", f"champion: unknown, the registry did not answer ({status['registry_error']})"]
    elif "champion" in status:
        lines += ["", "champion: none yet"]
    if status.get("champion_unrecorded"):
        lines.append(f"  WARNING: {status['champion_unrecorded']}")
    lines += _loop_lines(status)
    history = status.get("history") or []
    if history:
        lines += ["", f"promotion history: {_latest(len(history), TEXT_HISTORY, 'decisions')}"]
    for event in history[-TEXT_HISTORY:]:
        what = f"{event['kind']} v{event['version']}" + (
            f" (was v{event['from_version']})" if event["from_version"] else ""
        )
        lines.append(
            f"  {event['at']}  {what}{' forced' if event['forced'] else ''}: {'; '.join(event['reasons'])}"
        )
    undelivered = status.get("undelivered_alerts") or []
    if undelivered:
        lines += ["", f"undelivered alerts: {_latest(len(undelivered), TEXT_UNDELIVERED, 'alerts')}"]
        lines += [
            f"  {_when(a['queued_at'])}  owed by {', '.join(a['channels'])}: {a['subject']}"
            for a in undelivered[-TEXT_UNDELIVERED:]
        ]
    return "\n".join(lines)


def _batch_lines(status: Mapping[str, Any]) -> list[str]:
    batches = status["batches"]
    counts = status["counts"]
    head = f"model {status['model']}: {counts.get('passed', 0)} passed, {counts.get('quarantined', 0)} quarantined"
    others = {k: n for k, n in counts.items() if k not in ("passed", "quarantined") and n}
    head += "".join(f", {n} {k}" for k, n in sorted(others.items()))
    if not batches:
        return [head + ", no batch yet"]
    lines = [head + f" (partitions {batches[0]['partition']}..{batches[-1]['partition']})"]
    not_passed = [b for b in batches if b["status"] != "passed"]
    if not_passed:
        lines.append(f"not passed: {_latest(len(not_passed), TEXT_NOT_PASSED, 'batches')}")
        lines += [_batch_line(b) for b in not_passed[-TEXT_NOT_PASSED:]]
    lines.append(f"{_latest(len(batches), TEXT_BATCHES, 'batches')}:")
    lines.append(f"  {'partition':<12} {'status':<12} {'rows':>6}  reason")
    lines += [_batch_line(b) for b in batches[-TEXT_BATCHES:]]
    return lines


def _batch_line(batch: Mapping[str, Any]) -> str:
    rows = "" if batch["rows"] is None else str(batch["rows"])
    return f"  {batch['partition']:<12} {batch['status']:<12} {rows:>6}  {batch['reason'] or ''}".rstrip()


def _loop_lines(status: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    monitoring = status.get("monitoring")
    if monitoring:
        lines.append(
            f"last monitoring: {monitoring['window_first']}..{monitoring['window_last']} {monitoring['outcome']}, "
            f"drift share {_share(monitoring['drift_share'])}, report {monitoring['report_path']}"
        )
    drift = status.get("drift")
    if drift and drift["last"]:
        last = drift["last"]
        lines.append(f"drift events: {drift['events']}, {drift['pending']} pending")
        lines.append(f"last drift: event {last['id']}, window {last['window']}, {_drift_figures(last)}")
        if last["status"] == "pending":
            lines.append("  pending: no retrain has handled it yet")
        else:
            lines.append(
                f"  handled {_when(last['handled_at'])}: {last['outcome']} (train run {last['train_run_id']})"
            )
    elif drift:
        lines.append("drift events: none")
    open_events = status.get("open_drift_events") or []
    # Open events are the newest (a retrain closes every one up to its own): a single one is the last, above.
    if len(open_events) > 1:
        lines.append(f"open drift events: {_latest(len(open_events), TEXT_OPEN_DRIFT, 'events')}")
        lines += [
            f"  {e['id']}: window {e['window']}, drift share {_share(e['drift_share'])}"
            for e in open_events[-TEXT_OPEN_DRIFT:]
        ]
    retrains = status.get("retrains")
    if retrains:
        outcomes: dict[str, int] = {}
        for retrain in retrains:
            outcomes[retrain["outcome"]] = outcomes.get(retrain["outcome"], 0) + 1
        tally = ", ".join(f"{n} {outcome}" for outcome, n in outcomes.items())
        shown = f", the last {TEXT_RETRAINS}" if len(retrains) > TEXT_RETRAINS else ""
        lines.append(f"retrains: {len(retrains)} ({tally}){shown}:")
        for retrain in retrains[-TEXT_RETRAINS:]:
            lines.append(
                f"  {_when(retrain['at'])}  {_trigger(retrain)}: {_decided(retrain)}, "
                f"train run {retrain['train_run_id']}"
            )
            if retrain["reasons"]:
                lines.append(f"    why: {'; '.join(retrain['reasons'])}")
    elif retrains is not None:
        lines.append("retrains: none yet")
    return ["", *lines] if lines else []


def _split(events: Iterable[Event]) -> tuple[list[Event], dict[int, Event], list[Event]]:
    """Drift events, the handling of each handled one by its id, and age retrains; each oldest first."""
    drifts: list[Event] = []
    handled: dict[int, Event] = {}
    aged: list[Event] = []
    for event in sorted(events, key=lambda e: e.id):
        if event.kind == EventKind.DRIFT:
            drifts.append(event)
        elif event.kind == EventKind.DRIFT_HANDLED:
            # Written once per drift event (its dedup key): the first is the only one.
            handled.setdefault(event.payload.drift_event_id, event)
        elif event.kind == EventKind.AGE_RETRAIN:
            aged.append(event)
    return drifts, handled, aged


def _drift_summary(event: Event, handling: Event | None) -> dict[str, Any]:
    payload = event.payload
    drift = payload.drift
    outcome = handling.payload if handling else None
    return {
        "id": event.id,
        "window": payload.window.label,
        "at": _iso(event.created_at),
        "drift_share": drift.share if drift else None,
        "drifted_features": drift.drifted_features if drift else None,
        "features": drift.features if drift else None,
        "top_features": [
            {"column": f.column, "score": f.score, "method": f.method, "threshold": f.threshold}
            for f in (drift.top if drift else [])
        ],
        "quality_drop": payload.quality.drop if payload.quality else None,
        "reasons": list(payload.reasons),
        "status": "handled" if handling else "pending",
        "outcome": outcome.outcome if outcome else None,
        "handled_at": _iso(handling.created_at) if handling else None,
        "train_run_id": outcome.train_run_id if outcome else None,
        "version": outcome.version if outcome else None,
        "superseded": outcome.superseded if outcome else None,
    }


def _drift_figures(drift: Mapping[str, Any]) -> str:
    text = f"drift share {_share(drift['drift_share'])}"
    if drift["features"]:
        text += f" ({drift['drifted_features']} of {drift['features']} features)"
    top = drift["top_features"][:TEXT_TOP_FEATURES]
    if top:
        text += "; top: " + ", ".join(f"{f['column']} {f['score']:.3g}" for f in top)
    if drift["quality_drop"] is not None:
        text += f"; quality drop {drift['quality_drop']:.4f}"
    return text


def _trigger(retrain: Mapping[str, Any]) -> str:
    if retrain["trigger"] == "drift":
        return f"on drift in {retrain['window']}"
    age = f"the champion's age ({retrain['champion_age_days']:g} days)"
    if retrain["trigger"] == "age":
        return f"on {age}, data {retrain['window']}"
    return f"on drift in {retrain['window']} and {age}"


def _decided(retrain: Mapping[str, Any]) -> str:
    before = f"v{retrain['champion_before']}" if retrain["champion_before"] else "none"
    if retrain["outcome"] == PROMOTED:
        return f"promoted v{retrain['version']} (champion was {before})"
    if retrain["outcome"] == KEPT:
        return f"champion {before} kept, challenger v{retrain['version']} refused"
    return str(retrain["outcome"])


def _latest(total: int, shown: int, noun: str) -> str:
    """``12 batches``, or ``the last 5 of 12 batches`` when only ``shown`` of them are listed."""
    return f"{total} {noun}" if total <= shown else f"the last {shown} of {total} {noun}"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _when(iso: str | None) -> str:
    """``2026-11-22T10:31:07.123+00:00`` as ``2026-11-22 10:31``."""
    return "?" if not iso else iso[:16].replace("T", " ")


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value
