"""The closed loop on the real stack (LocalExecutor, PostgreSQL), driven through the REST API.

A first champion is trained on February; a drifted July batch lands and is ingested (backfill), scored by the
score DAG off the batches Asset and monitored (a manual run of the weekly monitor); the drift is recorded and
alerted by email and Slack; the retrain DAG runs off the drift Asset, its sensor fires, it trains through
`<model>_train` and gates the challenger; the outcome is alerted; the next batch is scored by the champion then
in place (the new version when the gate promoted it).

Before that drift, a retrain whose challenger fails the gate: a drift event on the first champion's own training
window makes the retrain fit the same data with the same seed, so the challenger is the champion again and the
gate (a margin and a paired bootstrap) refuses it; the champion stays and both channels say why. After it, two
drift events in a row give one retrain.

Training days are written to the warehouse directly (with their ledger rows): ingestion has its own e2e test, and
these days (February, late June/early July) are not the ones it uses. The specs are shrunk by the e2e conftest
(28-day training window, 5-day holdout, 3 trials, 3-day monitoring window).
"""

from __future__ import annotations

import hashlib
import html
import json
import time
from datetime import UTC, date, datetime
from email import message_from_bytes

import pytest
import sqlalchemy as sa

from airloop.core.contracts import (
    DriftRecorded,
    DriftSummary,
    Gate,
    MonitoredWindow,
    MonitorResult,
    PromotionResult,
    RetrainDue,
    RetrainOutcome,
    Trained,
    WindowSpan,
)
from airloop.core.events import EventKind
from airloop.local.demo.replay import day_frame, days, write_partition
from airloop.model.context import ModelContext
from airloop.model.predictions import predictions_of
from airloop.model.registry import CHALLENGER, CHAMPION
from airloop.monitor.monitor import open_drift_events, record_drift
from airloop.retrain.policy import KEPT, PROMOTED
from airloop.store.db import sync_table
from airloop.store.events import events_of
from airloop.store.ledger import PASSED, LedgerEntry, replace_partition
from airloop.store.schema import batches_table

pytestmark = pytest.mark.e2e

MODEL = "flights_delay"
INGEST, SCORE, TRAIN, MONITOR, RETRAIN = (
    f"{MODEL}_{kind}" for kind in ("ingest", "score", "train", "monitor", "retrain")
)
FIRST_WINDOW = list(days(date(2013, 2, 1), date(2013, 2, 28)))  # the first champion's training window
RECENT = list(days(date(2013, 6, 23), date(2013, 7, 17)))  # validated days before the drift (retrain window)
#: The drifted batch: lands, is ingested, scored and monitored.
DRIFTED = list(days(date(2013, 7, 18), date(2013, 7, 20)))
NEXT = date(2013, 7, 21)  # the next batch, scored after the retrain
#: A drift window ending on the first champion's last training day: a retrain on it trains on FIRST_WINDOW.
SAME_WINDOW = (date(2013, 2, 26), FIRST_WINDOW[-1])
#: A manual run of the @weekly monitor with this logical date covers [2013-07-14, 2013-07-21): the last complete
#: week ending at or before it; with window_days 3 the monitored days are DRIFTED.
MONITOR_LOGICAL = datetime(2013, 7, 21, tzinfo=UTC)

TIMINGS: dict[str, float] = {}


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _timed(step: str, started: float) -> float:
    TIMINGS[step] = round(time.monotonic() - started, 1)
    print(f"[loop] {step}: {TIMINGS[step]} s")
    return TIMINGS[step]


@pytest.fixture(scope="module")
def loop(stack) -> ModelContext:
    """The model's context on the stack, its training days (February, 2013-06-23..07-17) in the warehouse with
    their ledger rows, and its DAGs parsed."""
    ctx = ModelContext.load(MODEL, stack.settings)
    sync_table(ctx.warehouse, batches_table(ctx.spec))
    for day in FIRST_WINDOW + RECENT:
        frame = day_frame(day)
        checksum = hashlib.sha256(f"e2e-seed:{day}:{len(frame)}".encode()).hexdigest()
        entry = LedgerEntry(partition=day.isoformat(), status=PASSED, checksum=checksum)
        replace_partition(ctx.warehouse, ctx.spec, frame, entry)
    for dag_id in (INGEST, SCORE, TRAIN, MONITOR, RETRAIN):
        stack.wait_for_dag(dag_id)
    return ctx


@pytest.fixture(scope="module")
def first_champion(stack, loop) -> dict:
    """The first champion, trained on FIRST_WINDOW through the train DAG (once per module): the run, with
    ``v1`` (its version) and ``promoted`` (the promotion task's result) added."""
    started = time.monotonic()
    run_id = stack.trigger(TRAIN, conf={"window_end": FIRST_WINDOW[-1].isoformat()})
    run = stack.wait_for_run(TRAIN, run_id, timeout=360)
    _timed("first training (trigger to end)", started)
    assert run["state"] == "success", run["task_states"]
    assert run["task_states"]["promote_champion"] == "success", run["task_states"]
    promoted = PromotionResult.model_validate(stack.xcom(TRAIN, run_id, "promote_champion"))
    print(f"[loop] first champion: {promoted}")
    return {**run, "v1": promoted.version, "promoted": promoted}


def _predictions(ctx: ModelContext, partitions: list[str]) -> dict[str, set[str]]:
    """{partition: {versions}} of the champion's predictions for ``partitions``."""
    table = predictions_of(ctx)
    query = (
        sa.select(table.c.partition, table.c.version)
        .where(table.c.alias == CHAMPION, table.c.partition.in_(partitions))
        .distinct()
    )
    out: dict[str, set[str]] = {}
    with ctx.warehouse.connect() as conn:
        for partition, version in conn.execute(query):
            out.setdefault(partition, set()).add(str(version))
    return out


def _wait_scored(ctx: ModelContext, days_: list[date], timeout: float = 240) -> dict[str, set[str]]:
    partitions = [d.isoformat() for d in days_]
    deadline = time.monotonic() + timeout
    while True:
        scored = _predictions(ctx, partitions)
        if set(scored) == set(partitions):
            return scored
        assert time.monotonic() < deadline, f"not scored by the champion after {timeout} s: {scored}"
        time.sleep(1)


def _alerts(stack) -> tuple[list, list]:
    emails = [message_from_bytes(p.read_bytes()) for p in sorted((stack.catcher_dir / "email").glob("*.eml"))]
    hooks = [json.loads(p.read_text()) for p in sorted((stack.catcher_dir / "slack").glob("*.json"))]
    return emails, hooks


def _wait_alert(stack, subject: str, slack: str, timeout: float = 60) -> tuple[list[str], list[str]]:
    """Email subjects containing ``subject`` and Slack texts containing ``slack``, once both channels have one."""
    deadline = time.monotonic() + timeout
    while True:
        emails, hooks = _alerts(stack)
        subjects = [str(m["Subject"]) for m in emails if subject in str(m["Subject"])]
        texts = [h["text"] for h in hooks if slack in h.get("text", "")]
        if subjects and texts:
            return subjects, texts
        assert time.monotonic() < deadline, (
            f"no alert with {subject!r} / {slack!r} on both channels after {timeout} s: "
            f"{[str(m['Subject']) for m in emails]} {[h.get('text', '')[:120] for h in hooks]}"
        )
        time.sleep(1)


def _email_bodies(stack, subject: str) -> list[str]:
    """The decoded bodies (HTML unescaped) of the emails whose subject contains ``subject``."""
    emails, _ = _alerts(stack)
    return [
        html.unescape(
            "\n".join(
                part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8")
                for part in message.walk()
                if part.get_content_maintype() == "text"
            )
        )
        for message in emails
        if subject in str(message["Subject"])
    ]


def _new_run(stack, dag_id: str, before: set[str], timeout: float = 60) -> str:
    """The id of the first run of ``dag_id`` not in ``before``, once there is one."""
    deadline = time.monotonic() + timeout
    while not (new := [r for r in _runs(stack, dag_id) if r["dag_run_id"] not in before]):
        assert time.monotonic() < deadline, f"no new run of {dag_id} after {timeout} s"
        time.sleep(1)
    return str(new[0]["dag_run_id"])


def _runs(stack, dag_id: str) -> list[dict]:
    return stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns", query={"limit": 100, "order_by": "run_after"})[
        "dag_runs"
    ]


def _span(run: dict) -> float:
    """A run's duration from its start and end dates."""
    start, end = (datetime.fromisoformat(run[k].replace("Z", "+00:00")) for k in ("start_date", "end_date"))
    return round((end - start).total_seconds(), 1)


def _land(ctx: ModelContext, day_list: list[date]) -> None:
    for day in day_list:
        write_partition(day_frame(day), ctx.landing, day)


def _drift(first: str, last: str) -> MonitorResult:
    """A drifted window as a monitor run finds it (what record_drift writes): half of the features drifted."""
    return MonitorResult(
        model=MODEL,
        window=MonitoredWindow(first=first, last=last),
        monitored=True,
        outcome="drift",
        drifted=True,
        decided=True,
        reasons=["e2e: half of the features drifted"],
        drift=DriftSummary(share=0.5, drifted_features=8, features=16, threshold_share=0.3, top=[]),
    )


def _announce(stack, asset: dict, event: DriftRecorded) -> None:
    """What monitor_window's alias does in a monitor run that found drift: a drift Asset event with the recorded event as extra."""
    stack.api("POST", "/api/v2/assets/events", asset_id=asset["id"], extra=event.to_json())


def _drift_asset(stack, ctx: ModelContext) -> dict:
    [asset] = stack.api("GET", "/api/v2/assets", query={"uri_pattern": ctx.spec.drift_asset})["assets"]
    return asset


def _wait_asset_events_consumed(stack, dag_id: str, timeout: float = 120) -> None:
    """Wait until no Asset event is queued for ``dag_id``: every one has become (part of) a run."""
    deadline = time.monotonic() + timeout
    while (queued := stack.api("GET", f"/api/v2/dags/{dag_id}/assets/queuedEvents"))["total_entries"]:
        assert time.monotonic() < deadline, (
            f"Asset events still queued for {dag_id} after {timeout} s: {queued}"
        )
        time.sleep(1)


def test_first_champion(stack, loop, first_champion):
    run, promoted = first_champion, first_champion["promoted"]
    assert run["state"] == "success", run["task_states"]
    assert run["task_states"]["promote_champion"] == "success", run["task_states"]
    assert promoted.promoted and promoted.champion_before is None, promoted
    assert loop.registry.version_of(CHAMPION) == promoted.version


def test_a_challenger_that_fails_the_gate_leaves_the_champion_and_says_so(stack, loop, first_champion):
    """A drift event on the window the champion was trained on: the retrain trains on the same partitions with
    the same seed, so the challenger's scores equal the champion's and it cannot be better by the policy's
    margin. The champion stays, the drift event is handled as "champion kept", and both channels say so and why.

    The event is written as a monitor run writes it (the July drift below goes through the monitor); the retrain
    and its gate are the real ones. It is the model's first retrain, so no cooldown applies, and the July drift
    is months past this one's."""
    from airloop.status import format_status, full_status

    ctx, v1 = loop, first_champion["v1"]
    asset = _drift_asset(stack, ctx)
    retrains_before = {r["dag_run_id"] for r in _runs(stack, RETRAIN)}
    started = time.monotonic()

    # (1) the drift event, announced on the drift Asset: the retrain DAG runs, its sensor finds the event due.
    first, last = (day.isoformat() for day in SAME_WINDOW)
    window = f"{first}..{last}"
    event = record_drift(ctx, _drift(first, last), airflow_run_id="e2e")
    assert event.new and event.window == window, event
    _announce(stack, asset, event)
    run_id = _new_run(stack, RETRAIN, retrains_before)
    run = stack.wait_for_run(RETRAIN, run_id, timeout=420)
    _timed("drift on the champion's own window -> retrain done", started)
    assert run["state"] == "success" and set(run["task_states"].values()) == {"success"}, run["task_states"]
    due = RetrainDue.model_validate(stack.xcom(RETRAIN, run_id, "wait_for_drift"))
    assert (due.id, due.partition) == (event.event_id, last), due

    # (2) the training run: the champion's own window, and a gate that refused a challenger equal to it.
    train_run_id = f"retrain__{run_id}"
    train = stack.wait_for_run(TRAIN, train_run_id)
    assert train["conf"]["window_end"] == last, train["conf"]
    assert train["task_states"]["evaluate_gate"] == "success", train["task_states"]
    assert train["task_states"]["promote_champion"] == "skipped", train["task_states"]
    trained = Trained.model_validate(stack.xcom(TRAIN, train_run_id, "train_challenger"))
    assert trained.window == WindowSpan(
        first=FIRST_WINDOW[0].isoformat(), last=FIRST_WINDOW[-1].isoformat(), partitions=len(FIRST_WINDOW)
    ), trained.window
    gate = Gate.model_validate(stack.xcom(TRAIN, train_run_id, "evaluate_gate", key="gate"))
    evidence = gate.evidence
    assert (gate.champion_version, gate.challenger_version) == (v1, trained.version), gate
    # The premise: same data, same seed, same model. Were it not so, this case would test nothing definite.
    assert evidence["challenger"] == evidence["champion"], (evidence["challenger"], evidence["champion"])
    assert not gate.promote and not gate.approval_required, gate.reasons
    assert any("the challenger is not better" in r for r in gate.reasons), gate.reasons
    assert any("the improvement is not significant" in r for r in gate.reasons), gate.reasons

    # (3) the outcome: champion kept, in the run's result, the registry and the drift event's handling.
    outcome = RetrainOutcome.model_validate(stack.xcom(RETRAIN, run_id, "record_outcome"))
    print(f"[loop] challenger equal to the champion: {outcome.outcome}, {outcome.reasons}")
    assert outcome.outcome == KEPT, outcome
    assert (outcome.version, outcome.champion_before) == (trained.version, v1), outcome
    assert outcome.reasons == gate.reasons and outcome.handled_events == [event.event_id], outcome
    registry = ctx.registry.aliases()
    assert (registry[CHAMPION], registry[CHALLENGER]) == (v1, trained.version), registry
    handled = [
        e.payload
        for e in events_of(ctx.warehouse, MODEL, [EventKind.DRIFT_HANDLED])
        if e.payload.drift_event_id == event.event_id
    ]
    assert [(h.outcome, h.train_run_id) for h in handled] == [(KEPT, train_run_id)], handled
    assert open_drift_events(ctx.warehouse, MODEL) == []

    # (4) the alert, on both channels: the champion stays, and the gate's reasons.
    subject = f"retrained, champion kept (drift in {window})"
    subjects, texts = _wait_alert(stack, subject, f"retrained on drift in {window}")
    bodies = _email_bodies(stack, subject)
    assert len(subjects) == len(texts) == len(bodies) == 1, (subjects, texts)
    stays = f"the challenger v{trained.version} did not pass the gate, champion v{v1} stays"
    for channel, message in (("email", bodies[0]), ("slack", texts[0])):
        assert stays in message, (channel, message)
        assert all(reason in message for reason in gate.reasons), (channel, message, gate.reasons)

    # (5) airloop status shows it: the last drift, handled, and the retrain.
    status = full_status(ctx)
    assert status["champion"]["version"] == v1
    last_drift = status["drift"]["last"]
    assert (last_drift["id"], last_drift["status"], last_drift["outcome"]) == (
        event.event_id,
        "handled",
        KEPT,
    )
    assert [(r["train_run_id"], r["outcome"], r["version"], r["window"]) for r in status["retrains"]] == [
        (train_run_id, KEPT, trained.version, window)
    ], status["retrains"]
    text = format_status(status)
    assert f"champion v{v1} kept, challenger v{trained.version} refused, train run {train_run_id}" in text, (
        text
    )
    _timed("drift on the champion's own window -> champion kept, alerted", started)


def test_drifted_batch_is_scored_monitored_alerted_and_retrained(stack, loop, first_champion):
    ctx, v1 = loop, first_champion["v1"]

    # (1) the drifted batch lands and is ingested; the score DAG runs off the batches Asset.
    t0 = time.monotonic()
    _land(ctx, DRIFTED)
    # Day by day: Airflow 3.3 drops an Asset event that arrives while the score DAG (max_active_runs=1) already
    # has a run queued for an earlier one (the queued run consumes only the events up to its queue time, and
    # the queue row is then deleted), so a 3-day backfill left its last day unscored until the next batch.
    for day in DRIFTED:
        runs = stack.backfill(INGEST, _at(day), _at(day))
        assert [r["state"] for r in runs] == ["success"], runs
        _wait_scored(ctx, [day])
    _timed("ingest of the drifted batch, day by day", t0)
    scored = _wait_scored(ctx, DRIFTED)
    _timed("drifted batch landed -> scored", t0)
    assert all(versions == {v1} for versions in scored.values()), scored

    # (2) a manual run of the monitor for the week ending 2013-07-21.
    t1 = time.monotonic()
    retrains_before = {r["dag_run_id"] for r in _runs(stack, RETRAIN)}
    monitor_run = stack.trigger(MONITOR, logical_date=MONITOR_LOGICAL.isoformat())
    run = stack.wait_for_run(MONITOR, monitor_run, timeout=300)
    _timed("monitor run", t1)
    assert run["data_interval_end"].startswith("2013-07-21"), run
    assert run["data_interval_start"].startswith("2013-07-14"), run
    assert run["state"] == "success", run["task_states"]
    assert {k: run["task_states"][k] for k in ("monitor_window", "alert_drift")} == {
        "monitor_window": "success",
        "alert_drift": "success",
    }, (run["task_states"], stack.xcom(MONITOR, monitor_run, "monitor_window", key="result"))
    result = MonitorResult.model_validate(stack.xcom(MONITOR, monitor_run, "monitor_window", key="result"))
    window = f"{DRIFTED[0]}..{DRIFTED[-1]}"
    assert result.window.label == window, result.window
    assert result.drifted and result.outcome == "drift", result
    drift_event = DriftRecorded.model_validate(
        stack.xcom(MONITOR, monitor_run, "monitor_window", key="drift_event")
    )
    assert drift_event.new and drift_event.window == window, drift_event
    print(f"[loop] drift: share {result.drift.share if result.drift else None}, reasons {result.reasons}")

    # (3) the drift alert, on both channels.
    subjects, texts = _wait_alert(
        stack, f"{MODEL}: drift in {window}", f"Model {MODEL} has drifted in {window}"
    )
    assert len(subjects) == len(texts) == 1 and "features drifted" in subjects[0], (subjects, texts)
    _timed("drifted batch landed -> drift alert", t0)

    # (4) the retrain DAG runs off the drift Asset: sensor, training, gate, outcome, alert.
    deadline = time.monotonic() + 60
    while not (new := [r for r in _runs(stack, RETRAIN) if r["dag_run_id"] not in retrains_before]):
        assert time.monotonic() < deadline, "the drift Asset started no retrain run"
        time.sleep(1)
    retrain_run = new[0]
    assert retrain_run["run_type"] == "asset_triggered", retrain_run
    t2 = time.monotonic()
    run = stack.wait_for_run(RETRAIN, retrain_run["dag_run_id"], timeout=420)
    _timed("retrain run (from its first poll)", t2)
    assert run["state"] == "success", run["task_states"]
    assert set(run["task_states"].values()) == {"success"}, run["task_states"]
    due = RetrainDue.model_validate(stack.xcom(RETRAIN, retrain_run["dag_run_id"], "wait_for_drift"))
    assert due.id == drift_event.event_id and due.partition == DRIFTED[-1].isoformat(), due
    train_run_id = f"retrain__{retrain_run['dag_run_id']}"
    train = stack.wait_for_run(TRAIN, train_run_id)
    TIMINGS["retrain run (scheduler timestamps)"] = _span(run)
    TIMINGS["triggered training run (scheduler timestamps)"] = _span(train)
    assert train["conf"]["window_end"] == DRIFTED[-1].isoformat(), train["conf"]
    outcome = RetrainOutcome.model_validate(stack.xcom(RETRAIN, retrain_run["dag_run_id"], "record_outcome"))
    print(f"[loop] retrain outcome: {outcome}")
    assert outcome.outcome in (PROMOTED, KEPT), outcome
    assert outcome.handled_events == [drift_event.event_id], outcome
    if outcome.outcome == PROMOTED:
        assert train["task_states"]["promote_champion"] == "success", train["task_states"]
        assert outcome.version != v1 and outcome.champion_before == v1, outcome
        serving = str(outcome.version)
        _wait_alert(
            stack,
            f"retrained, v{serving} promoted (drift in {window})",
            f"retrained on drift in {window}: version {serving} is the new champion",
        )
    else:
        assert train["task_states"]["promote_champion"] == "skipped", train["task_states"]
        serving = v1
        _, texts = _wait_alert(
            stack, f"retrained, champion kept (drift in {window})", f"retrained on drift in {window}"
        )
        assert any(f"champion v{v1} stays" in t for t in texts), texts
    _timed("drifted batch landed -> retrain outcome alerted", t0)

    # (5) the next batch is scored by the champion now in place.
    t3 = time.monotonic()
    _land(ctx, [NEXT])
    runs = stack.backfill(INGEST, _at(NEXT), _at(NEXT))
    assert [r["state"] for r in runs] == ["success"], runs
    scored = _wait_scored(ctx, [NEXT])
    _timed("next batch landed -> scored", t3)
    total = _timed("drifted batch landed -> first prediction by the serving champion", t0)
    assert scored == {NEXT.isoformat(): {serving}}, (scored, outcome)
    # The drifted days keep the predictions of the version that served them.
    assert all(v == {v1} for v in _predictions(ctx, [d.isoformat() for d in DRIFTED]).values())
    print(f"[loop] outcome {outcome.outcome}: v{v1} -> v{serving}; landed-to-new-prediction {total} s")
    print(f"[loop] timings: {json.dumps(TIMINGS, indent=1)}")


def test_two_drift_events_in_a_row_give_one_retrain(stack, loop, first_champion):
    """A retrain run started with no drift due waits deferred in the triggerer (no worker slot); two drift events
    recorded back to back, each announced on the drift Asset, make its trigger fire once: one training, on the
    newest event (or, if the trigger saw only the first, the second falls in the cooldown): at most one promotion.
    Any further retrain run the Asset events start finds nothing due and waits deferred too.

    It needs a champion only: after the retrain of the drifted batch above (on data up to 2013-07-20) its events
    are outside the 72 h cooldown, and without it no retrain came before them."""
    ctx = loop
    asset = _drift_asset(stack, ctx)
    trains_before = {r["dag_run_id"] for r in _runs(stack, TRAIN)}
    retrains_before = {r["dag_run_id"] for r in _runs(stack, RETRAIN)}
    assert open_drift_events(ctx.warehouse, MODEL) == []
    started = time.monotonic()

    # (1) a retrain run with nothing due: its sensor defers to the triggerer.
    stack.api("POST", "/api/v2/assets/events", asset_id=asset["id"], extra={"e2e": "nothing due"})
    deadline = time.monotonic() + 60
    while not (new := [r for r in _runs(stack, RETRAIN) if r["dag_run_id"] not in retrains_before]):
        assert time.monotonic() < deadline, "the drift Asset event started no retrain run"
        time.sleep(1)
    waiting = new[0]["dag_run_id"]
    deadline = time.monotonic() + 90
    while stack.task_states(RETRAIN, waiting).get("wait_for_drift") != "deferred":
        assert time.monotonic() < deadline, stack.task_states(RETRAIN, waiting)
        time.sleep(1)
    _timed("retrain run with nothing due -> sensor deferred", started)

    # (2) two drift events in a row, outside the 72 h cooldown after the retrain on data up to 2013-07-20 and
    # one day apart from each other.
    windows = [("2013-07-21", "2013-07-23"), ("2013-07-22", "2013-07-24")]
    recorded = [record_drift(ctx, _drift(first, last), airflow_run_id="e2e") for first, last in windows]
    events = [event.event_id for event in recorded]
    for event in recorded:
        _announce(stack, asset, event)
    t1 = time.monotonic()
    run = stack.wait_for_run(RETRAIN, waiting, timeout=420)
    _timed("two drift events -> deferred sensor fired -> retrain done", t1)
    assert run["state"] == "success", run["task_states"]
    due = RetrainDue.model_validate(stack.xcom(RETRAIN, waiting, "wait_for_drift"))
    outcome = RetrainOutcome.model_validate(stack.xcom(RETRAIN, waiting, "record_outcome"))
    print(f"[loop] two events {events}: sensor fired on {due.id}; {outcome.outcome}, {outcome.reasons[:2]}")
    assert outcome.outcome in (PROMOTED, KEPT), outcome
    if due.id == events[-1]:
        assert outcome.handled_events == events and open_drift_events(ctx.warehouse, MODEL) == [], outcome
    else:  # the trigger polled between the two writes: the second is within the cooldown, left pending
        assert outcome.handled_events == events[:1], outcome
        assert [e.id for e in open_drift_events(ctx.warehouse, MODEL)] == events[1:]

    # (3) whatever other retrain runs the Asset events started find nothing due: they wait, deferred. Every
    # Asset event has started its run (or joined one) once none is queued for the DAG any more.
    _wait_asset_events_consumed(stack, RETRAIN)
    for extra in [r for r in _runs(stack, RETRAIN) if r["dag_run_id"] not in retrains_before | {waiting}]:
        deadline = time.monotonic() + 90
        while stack.task_states(RETRAIN, extra["dag_run_id"]).get("wait_for_drift") != "deferred":
            assert time.monotonic() < deadline, stack.task_states(RETRAIN, extra["dag_run_id"])
            time.sleep(1)
    trains = [r["dag_run_id"] for r in _runs(stack, TRAIN) if r["dag_run_id"] not in trains_before]
    assert trains == [f"retrain__{waiting}"], trains
    promotions = [
        e
        for e in events_of(ctx.warehouse, MODEL, [EventKind.PROMOTION])
        if e.payload.airflow_run_id == trains[0]
    ]
    assert len(promotions) == (outcome.outcome == PROMOTED), promotions
    print(f"[loop] timings: {json.dumps(TIMINGS)}")
