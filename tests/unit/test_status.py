"""``airloop status`` from a real SQLite warehouse: batches, the last monitoring, drift events and retrains.

The event log is written by the library's own writers (``record_drift``, ``retrain_outcome``) in the order a
loop writes it; only the gate's decisions, which the promotion writes after scoring two models, are written here
as the promotion writes them.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import date, timedelta

import pytest

from airloop.core.contracts import ColumnDrift, DriftSummary, MonitoredWindow, MonitorResult, RetrainOutcome
from airloop.core.events import EventKind, PromotionPayload, PromotionRefusedPayload
from airloop.model.context import ModelContext
from airloop.monitor.monitor import record_drift
from airloop.retrain.policy import KEPT, PROMOTED
from airloop.retrain.retrain import ChampionFacts, retrain_check, retrain_outcome
from airloop.status import (
    TEXT_BATCHES,
    TEXT_NOT_PASSED,
    TEXT_RETRAINS,
    format_status,
    warehouse_status,
)
from airloop.store.events import events_of, record_event
from airloop.store.ledger import PASSED, QUARANTINED, LedgerEntry, record_batch
from airloop.store.monitoring import store_result

pytestmark = pytest.mark.unit

MODEL = "flights_delay"


@pytest.fixture
def airloop_home(airloop_home, tmp_path):
    """The shipped spec with the 72 h cooldown these retrain sequences are written for (it ships 336 h)."""
    import yaml

    raw = yaml.safe_load((airloop_home.models_dir / f"{MODEL}.yaml").read_text())
    raw["monitoring"]["cooldown_hours"] = 72
    models = tmp_path / "models72"
    models.mkdir()
    (models / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    return dataclasses.replace(airloop_home, models_dir=models)


@pytest.fixture
def ctx(airloop_home) -> ModelContext:
    return ModelContext.load(MODEL, airloop_home)


@pytest.fixture
def engine(ctx):
    return ctx.warehouse


def _batches(engine, first: date, days: int, quarantined: set[int] = frozenset()) -> None:
    for n in range(days):
        day = (first + timedelta(days=n)).isoformat()
        entry = LedgerEntry(partition=day, status=PASSED, rows=800 + n, checksum=f"{n:064d}")
        if n in quarantined:
            entry = dataclasses.replace(
                entry, status=QUARANTINED, rows=None, reason=f"arr_delay above 1800 on {day}"
            )
        record_batch(engine, MODEL, entry)


def _drift(ctx: ModelContext, first: str, last: str, share: float = 0.5, top: tuple[str, ...] = ()) -> int:
    """A drift event as a monitor run writes it (the result of ``monitor_window``, trimmed)."""
    result = MonitorResult(
        model=MODEL,
        window=MonitoredWindow(first=first, last=last),
        monitored=True,
        outcome="drift",
        drifted=True,
        decided=True,
        reasons=[f"{share:.0%} of the features drifted"],
        drift=DriftSummary(
            share=share,
            drifted_features=round(share * 17),
            features=17,
            threshold_share=0.3,
            top=[
                ColumnDrift(column=c, method="wasserstein", score=0.9 - i / 10, threshold=0.4, drifted=True)
                for i, c in enumerate(top)
            ],
        ),
        quality=None,
    )
    return record_drift(ctx, result, airflow_run_id="monitor").event_id


def _retrain(
    ctx: ModelContext,
    run: str,
    decision: EventKind | None,
    version: str,
    champion: str | None,
    facts: ChampionFacts | None = None,
) -> RetrainOutcome:
    """What the retrain DAG does once its sensor found a retrain due: the training run's gate decision (written
    as the promotion writes it), then ``retrain_outcome``."""
    due = retrain_check(ctx, facts).payload()
    assert due is not None
    common = {
        "version": version,
        "champion_before": champion,
        "run_id": f"mlflow-{run}",
        "airflow_run_id": run,
    }
    if decision == EventKind.PROMOTION:
        payload = PromotionPayload(
            **common,
            forced=False,
            reasons=["roc_auc +0.0300 meets the margin"],
            decision={},
            move_key=f"promotion:{MODEL}:{run}:v{version}",
        )
        record_event(ctx.warehouse, MODEL, payload)
    elif decision == EventKind.PROMOTION_REFUSED:
        payload = PromotionRefusedPayload(
            **common,
            stage="gate",
            reasons=["the challenger is not better", "the improvement is not significant"],
            decision={},
        )
        record_event(ctx.warehouse, MODEL, payload)
    return retrain_outcome(ctx, due, run, "success" if decision else "failed")


def _monitoring(engine, first: str, last: str) -> None:
    store_result(
        engine,
        {
            "model": MODEL,
            "window_first": first,
            "window_last": last,
            "champion_version": "2",
            "outcome": "drift",
            "drifted": True,
            "drift_share": 0.5294,
            "current_rows": 2400,
            "reference_rows": 20000,
            "labelled_rows": 2100,
            "reasons": json.dumps(["9 of 17 features drifted"]),
            "figures": "{}",
            "report_path": f"/reports/{first}..{last}.html",
        },
    )


def test_an_empty_warehouse_has_no_batch_no_drift_and_no_retrain(ctx):
    status = warehouse_status(ctx)
    assert status["batches"] == [] and status["retrains"] == [] and status["open_drift_events"] == []
    assert status["drift"] == {"events": 0, "pending": 0, "last": None}
    assert status["monitoring"] is None
    text = format_status(status)
    assert f"model {MODEL}: 0 passed, 0 quarantined, no batch yet" in text
    assert "drift events: none" in text and "retrains: none yet" in text


def test_a_pending_drift_event_is_the_last_one_with_its_top_features(ctx, engine):
    _batches(engine, date(2013, 7, 15), 6)
    _monitoring(engine, "2013-07-18", "2013-07-20")
    event = _drift(ctx, "2013-07-18", "2013-07-20", 0.53, top=("temp", "dewp", "month", "humid"))

    status = warehouse_status(ctx)
    last = status["drift"]["last"]
    assert status["drift"]["events"] == 1 and status["drift"]["pending"] == 1
    assert last["id"] == event and last["window"] == "2013-07-18..2013-07-20"
    assert last["status"] == "pending" and last["outcome"] is None and last["handled_at"] is None
    assert last["drift_share"] == 0.53 and (last["drifted_features"], last["features"]) == (9, 17)
    assert [f["column"] for f in last["top_features"]] == ["temp", "dewp", "month", "humid"]
    assert [e["id"] for e in status["open_drift_events"]] == [event]
    assert status["retrains"] == []

    text = format_status(status)
    assert "last monitoring: 2013-07-18..2013-07-20 drift, drift share 0.53" in text
    assert "drift events: 1, 1 pending" in text
    assert (
        f"last drift: event {event}, window 2013-07-18..2013-07-20, drift share 0.53 (9 of 17 features); "
        "top: temp 0.9, dewp 0.8, month 0.7\n  pending: no retrain has handled it yet"
    ) in text
    assert "humid" not in text


def test_retrains_promoted_then_champion_kept_with_a_superseded_event(ctx, engine):
    first = _drift(ctx, "2013-07-18", "2013-07-20")
    promoted = _retrain(ctx, "retrain__a", EventKind.PROMOTION, "2", "1")
    assert promoted.outcome == PROMOTED
    # Two drift events before the next retrain: it trains on the newest and closes both.
    older = _drift(ctx, "2013-07-25", "2013-07-27", top=("temp",))
    newer = _drift(ctx, "2013-07-26", "2013-07-28", 0.7, top=("wind_gust", "temp"))
    kept = _retrain(ctx, "retrain__b", EventKind.PROMOTION_REFUSED, "3", "2")
    assert kept.outcome == KEPT and kept.handled_events == [older, newer]

    status = warehouse_status(ctx)
    assert status["drift"]["events"] == 3 and status["drift"]["pending"] == 0
    assert status["open_drift_events"] == []
    last = status["drift"]["last"]
    assert (last["id"], last["status"], last["outcome"]) == (newer, "handled", KEPT)
    assert (last["train_run_id"], last["version"], last["superseded"]) == ("retrain__b", "3", False)
    retrains = status["retrains"]
    assert [
        (r["train_run_id"], r["trigger"], r["outcome"], r["version"], r["champion_before"]) for r in retrains
    ] == [
        ("retrain__a", "drift", PROMOTED, "2", "1"),
        ("retrain__b", "drift", KEPT, "3", "2"),
    ]
    assert [r["window"] for r in retrains] == ["2013-07-18..2013-07-20", "2013-07-26..2013-07-28"]
    assert [r["drift_event_id"] for r in retrains] == [first, newer]
    assert retrains[1]["handled_events"] == [older, newer]
    assert retrains[1]["reasons"] == ["the challenger is not better", "the improvement is not significant"]
    assert all(r["at"] for r in retrains)
    # The gate's decisions are the promotion history, each with the champion of its time.
    assert [(h["kind"], h["version"], h["from_version"]) for h in status["history"]] == [
        ("promotion", "2", "1"),
        ("promotion_refused", "3", "2"),
    ]
    json.dumps(status)  # --json prints it as it is

    text = format_status(status)
    assert "drift events: 3, 0 pending" in text
    assert f"last drift: event {newer}, window 2013-07-26..2013-07-28, drift share 0.70" in text
    assert ": champion kept (train run retrain__b)" in text
    assert "retrains: 2 (1 promoted, 1 champion kept):" in text
    assert "on drift in 2013-07-18..2013-07-20: promoted v2 (champion was v1), train run retrain__a" in text
    assert (
        "on drift in 2013-07-26..2013-07-28: champion v2 kept, challenger v3 refused, train run retrain__b"
        in text
    )
    assert "    why: the challenger is not better; the improvement is not significant" in text
    assert "promotion history: 2 decisions" in text
    assert "promotion v2 (was v1): roc_auc +0.0300 meets the margin" in text
    assert "promotion_refused v3 (was v2): the challenger is not better" in text


def test_a_failed_retrain_leaves_its_drift_event_pending_and_is_no_retrain(ctx, engine):
    event = _drift(ctx, "2013-07-18", "2013-07-20")
    failed = _retrain(ctx, "retrain__a", None, "2", "1")
    assert failed.outcome == "retrain failed"

    status = warehouse_status(ctx)
    assert status["retrains"] == []
    assert (status["drift"]["last"]["id"], status["drift"]["last"]["status"]) == (event, "pending")
    assert [e["id"] for e in status["open_drift_events"]] == [event]


def test_the_text_is_bounded_and_the_json_complete(ctx, engine):
    days = 60
    quarantined = set(range(2, days, 4))  # 15 batches
    _batches(engine, date(2013, 1, 1), days, quarantined)
    for n in range(8):
        last = date(2013, 3, 1) + timedelta(weeks=n)
        _drift(ctx, (last - timedelta(days=6)).isoformat(), last.isoformat())
        _retrain(ctx, f"retrain__{n}", EventKind.PROMOTION, str(n + 2), str(n + 1))
    # Two drift events no retrain has handled yet.
    pending = [_drift(ctx, f"2013-10-{d:02d}", f"2013-10-{d + 6:02d}") for d in (1, 8)]

    status = warehouse_status(ctx)
    assert len(status["batches"]) == days and status["counts"] == {"passed": days - 15, "quarantined": 15}
    assert len(status["retrains"]) == 8
    assert [e["id"] for e in status["open_drift_events"]] == pending

    text = format_status(status)
    assert len(text.splitlines()) < 50, text
    assert f"model {MODEL}: 45 passed, 15 quarantined (partitions 2013-01-01..2013-03-01)" in text
    assert f"not passed: the last {TEXT_NOT_PASSED} of 15 batches" in text
    assert f"the last {TEXT_BATCHES} of {days} batches:" in text
    shown = [line.split()[0] for line in text.splitlines() if line.startswith("  2013-")]
    not_passed = sorted((date(2013, 1, 1) + timedelta(days=n)).isoformat() for n in quarantined)
    last_days = [(date(2013, 1, 1) + timedelta(days=n)).isoformat() for n in range(days - TEXT_BATCHES, days)]
    assert shown == not_passed[-TEXT_NOT_PASSED:] + last_days
    assert f"retrains: 8 (8 promoted), the last {TEXT_RETRAINS}:" in text
    assert "train run retrain__2\n" not in text and "train run retrain__3\n" in text
    assert "drift events: 10, 2 pending" in text
    assert "open drift events: 2 events" in text


def test_retrains_on_the_champions_age_alone_and_with_a_drift_event(engine, airloop_home, tmp_path):
    import yaml

    models = tmp_path / "models"
    models.mkdir()
    raw = yaml.safe_load((airloop_home.models_dir / f"{MODEL}.yaml").read_text())
    raw["monitoring"]["max_champion_age_days"] = 30
    (models / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    capped = ModelContext.load(MODEL, dataclasses.replace(airloop_home, models_dir=models))
    _batches(engine, date(2013, 7, 1), 51)  # up to 2013-08-20
    aged = _retrain(
        capped, "retrain__age", EventKind.PROMOTION, "3", "2", ChampionFacts("2", "2013-07-10", 0)
    )
    assert aged.drift_event_id is None and aged.handled_events == []
    # Later, a drift event due while the champion (trained up to 2013-08-20) is past the cap again.
    _batches(engine, date(2013, 8, 21), 41)  # up to 2013-09-30
    event = _drift(capped, "2013-09-26", "2013-09-28")
    both = _retrain(
        capped, "retrain__both", EventKind.PROMOTION_REFUSED, "4", "3", ChampionFacts("3", "2013-08-20", 0)
    )
    assert both.handled_events == [event]
    assert len(events_of(engine, MODEL, [EventKind.AGE_RETRAIN])) == 2

    status = warehouse_status(capped)
    retrains = status["retrains"]
    assert [(r["train_run_id"], r["trigger"], r["outcome"], r["champion_age_days"]) for r in retrains] == [
        ("retrain__age", "age", PROMOTED, 41),
        ("retrain__both", "drift and age", KEPT, 41),
    ]
    assert retrains[0]["window"] == "2013-07-11..2013-08-20" and retrains[0]["handled_events"] == []
    assert retrains[1]["drift_event_id"] == event and retrains[1]["handled_events"] == [event]
    assert retrains[1]["window"] == "2013-09-26..2013-09-28"
    assert "champion age 41 days > cap 30" in retrains[0]["reasons"][0]
    last = status["drift"]["last"]
    assert (last["id"], last["status"], last["outcome"], last["train_run_id"]) == (
        event,
        "handled",
        KEPT,
        "retrain__both",
    )

    text = format_status(status)
    assert "retrains: 2 (1 promoted, 1 champion kept):" in text
    assert (
        "on the champion's age (41 days), data 2013-07-11..2013-08-20: promoted v3 (champion was v2), "
        "train run retrain__age"
    ) in text
    assert (
        "on drift in 2013-09-26..2013-09-28 and the champion's age (41 days): champion v3 kept, challenger v4 "
        "refused, train run retrain__both"
    ) in text


def test_alerts_a_channel_still_owes_are_listed_until_delivered(ctx, engine):
    from airloop.core.events import AlertQueuedPayload, AlertSentPayload
    from airloop.store.outbox import queue_alert, record_delivery

    keys = [f"alert:drift:flights_delay:2013-01-{d:02d}:" for d in range(1, 9)]
    for key in keys:
        queue_alert(
            engine,
            "flights_delay",
            AlertQueuedPayload(
                key=key,
                channels=["email", "slack"],
                subject=f"drift {key}",
                text="t",
                html="h",
                slack_text="s",
                dag_id="flights_delay_monitor",
                run_id="r",
            ),
        )
    for key in keys[:-1]:
        record_delivery(
            engine,
            "flights_delay",
            key,
            AlertSentPayload(channel="email", conn_id="c", subject="s", dag_id=None, run_id=None),
        )
    record_delivery(
        engine,
        "flights_delay",
        keys[0],
        AlertSentPayload(channel="slack", conn_id="c", subject="s", dag_id=None, run_id=None),
    )

    status = warehouse_status(ctx)
    owed = status["undelivered_alerts"]
    assert [a["subject"] for a in owed] == [f"drift {k}" for k in keys[1:]]
    assert [a["channels"] for a in owed] == [["slack"]] * 6 + [["email", "slack"]]
    text = format_status(status)
    assert "undelivered alerts: the last 5 of 7 alerts" in text
    assert text.rstrip().endswith(f"owed by email, slack: drift {keys[-1]}")
    assert f"drift {keys[1]}" not in text
