"""The monthly table of a model's year in ``airloop demo``: what served each month, and how well."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

from airloop.core.events import EventKind
from airloop.model.context import ModelContext
from airloop.model.features import model_input
from airloop.model.predictions import scored_rows
from airloop.model.task import primary_metric
from airloop.store.events import events_of
from airloop.store.ledger import passed_entries
from airloop.store.monitoring import monitoring_history


def model_months(
    ctx: ModelContext, first_champion: str | None, start: date, until: date
) -> list[dict[str, Any]]:
    """Per month from ``start`` to ``until`` (months of partition starts): rows, monitored windows and drift,
    retrains, the versions that scored the month, and the primary metric of those predictions on the labelled
    rows against the first champion's on the same rows."""
    import pandas as pd

    engine, spec, task, metric = ctx.warehouse, ctx.spec, ctx.task, primary_metric(ctx.spec)
    first = ctx.registry.load(first_champion) if first_champion else None
    passed = passed_entries(engine, ctx.name)
    monitored = monitoring_history(engine, ctx.name)
    retrains: dict[str, dict[str, Any]] = {}
    for event in events_of(engine, ctx.name, [EventKind.DRIFT_HANDLED]):
        # One retrain can handle several drift events: count it once.
        retrains.setdefault(event.payload.train_run_id, event.payload.to_json())
    table = []
    for month in range(start.month, until.month + 1):
        key = f"{start.year}-{month:02d}"
        # Partitions by the month they start in, none before ``start`` (those the first champion was fitted on).
        partitions = sorted(p for p in passed if p.startswith(key) and p >= start.isoformat())
        if not partitions:
            continue
        rows, _ = scored_rows(ctx, partitions)
        labelled, truth, _unlabelled = task.labelled(rows)
        windows = [m for m in monitored if str(m["window_last"]).startswith(key)]
        shares = [m["drift_share"] for m in windows if m["drift_share"] is not None]
        month_retrains = [r for r in retrains.values() if str(r.get("window_last", "")).startswith(key)]
        versions = Counter(str(v) for v in rows["version"])
        table.append(
            {
                "month": pd.Timestamp(f"{key}-01").strftime("%b"),
                "rows": sum(passed[p].rows or 0 for p in partitions),
                "weeks_monitored": len(windows),
                "weeks_drifted": sum(bool(m["drifted"]) for m in windows),
                "drift_share_max": max(shares) if shares else None,
                "retrains": len(month_retrains),
                "promoted": [r.get("version") for r in month_retrains if r.get("outcome") == "promoted"],
                "serving_versions": sorted(versions, key=int),
                "labelled_rows": len(labelled),
                "metric": metric.name,
                "higher_is_better": metric.higher_is_better,
                "serving": metric(truth, task.stored_predictions(labelled)) if len(labelled) else None,
                "first_champion": (
                    metric(truth, task.predict(first, model_input(labelled, spec, first)))
                    if len(labelled) and first is not None
                    else None
                ),
            }
        )
    return table


def format_table(table: list[dict[str, Any]], first_champion: str | None, metric: str = "AUC") -> str:
    """The monthly table as text; ``metric`` is how the primary metric is headed."""
    head = (
        f"{'month':<5} {'rows':>6} {'windows':>7} {'drifted':>7} {'drift share':>11} {'retrains':>8} "
        f"{'promoted':<9} {'serving':<11} {f'{metric} serving':>11} {f'{metric} v{first_champion}':>11} {'gain':>7}"
    )
    lines = [head, "-" * len(head)]
    for m in table:
        share = "-" if m["drift_share_max"] is None else f"{m['drift_share_max']:.2f}"
        promoted = ",".join(f"v{v}" for v in m["promoted"]) or "-"
        serving = ",".join(f"v{v}" for v in m["serving_versions"]) or "-"
        value, base = m["serving"], m["first_champion"]
        # Positive when serving did better than the first champion, whichever way the metric counts.
        better = (
            (value - base if m.get("higher_is_better", True) else base - value)
            if None not in (value, base)
            else None
        )
        gain = "-" if better is None else f"{better:+.4f}"
        lines.append(
            f"{m['month']:<5} {m['rows']:>6} {m['weeks_monitored']:>7} {m['weeks_drifted']:>7} {share:>11} "
            f"{m['retrains']:>8} {promoted:<9} {serving:<11} {_f(value):>11} {_f(base):>11} {gain:>7}"
        )
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
