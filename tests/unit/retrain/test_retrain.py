"""The retrain policy on typed drift events (pure), then the I/O around it on a SQLite warehouse: the checks read
the ledger and the event log, and a retrain's outcome is written back to it."""

from __future__ import annotations

import dataclasses
import os
from datetime import UTC, date, datetime, timedelta

import pytest
import yaml

from airloop.core.contracts import DriftSummary, MonitoredWindow, MonitorResult, RetrainDue
from airloop.core.events import (
    DriftHandledPayload,
    DriftPayload,
    Event,
    EventKind,
    PromotionPayload,
    PromotionRefusedPayload,
    RollbackPayload,
)
from airloop.core.settings import project_root
from airloop.model.context import ModelContext
from airloop.monitor.monitor import open_drift_events, record_drift
from airloop.retrain.policy import FAILED, KEPT, PROMOTED, retrain_choice
from airloop.retrain.retrain import (
    ChampionFacts,
    champion_facts,
    champion_moved,
    retrain_check,
    retrain_history,
    retrain_outcome,
)
from airloop.store.events import events_of, record_event
from airloop.store.ledger import PASSED, QUARANTINED, LedgerEntry, record_batch

pytestmark = pytest.mark.unit

MODEL = "flights_delay"


def _window(last_day: str, days: int = 7) -> MonitoredWindow:
    last = date.fromisoformat(last_day)
    return MonitoredWindow(first=(last - timedelta(days=days - 1)).isoformat(), last=last_day)


def _result(window: MonitoredWindow, share: float | None = 0.5) -> MonitorResult:
    """A drifted window as a monitor run summarises it (trimmed to what the retrain reads)."""
    drift = None
    if share is not None:
        drift = DriftSummary(share=share, drifted_features=5, features=10, threshold_share=0.3, top=[])
    return MonitorResult(
        model=MODEL, window=window, monitored=True, outcome="drift", drifted=True, decided=True, drift=drift
    )


def _event(event_id: int, last_day: str, *, first_day: str | None = None, share: float | None = 0.5) -> Event:
    """A pending drift event of the window ending ``last_day``, as the event log hands it back."""
    window = MonitoredWindow(first=first_day, last=last_day) if first_day else _window(last_day)
    return Event(
        id=event_id,
        model=MODEL,
        kind=EventKind.DRIFT,
        partition=last_day,
        dedup_key=f"drift:{MODEL}:{window.label}",
        payload=DriftPayload(**_result(window, share).model_dump(), airflow_run_id="monitor"),
        created_at=datetime(2013, 6, 1, tzinfo=UTC),
    )


def _id(event: Event | None) -> int | None:
    return event.id if event is not None else None


def test_nothing_pending_means_no_retrain():
    choice = retrain_choice([], None, 72)
    assert choice.event is None and not choice.due and choice.reason == "no pending drift event"


def test_within_cooldown_waits():
    choice = retrain_choice([_event(7, "2013-05-10")], "2013-05-08", 72)
    assert choice.event is None and not choice.due
    assert "within the 72 h cooldown" in choice.reason and "2013-05-08" in choice.reason


def test_cooldown_is_measured_in_data_time_between_windows():
    assert retrain_choice([_event(7, "2013-05-11")], "2013-05-08", 72).event.id == 7
    assert retrain_choice([_event(7, "2013-05-10")], "2013-05-08", 48).event.id == 7


def test_hourly_partitions_measure_the_cooldown_and_the_age_in_hours():
    hourly = _event(9, "2013-05-10T06:00", first_day="2013-05-09T07:00")
    assert not retrain_choice([hourly], "2013-05-10T00:00", 7).due  # 6 h after the last retrain's window
    assert retrain_choice([hourly], "2013-05-09T23:00", 7).event.id == 9  # 7 h
    aged = retrain_choice(
        [],
        None,
        72,
        max_champion_age_days=0.5,
        champion_data_end="2013-05-09T17:00",
        latest_partition="2013-05-10T06:00",
        schedule="@hourly",
    )
    assert aged.due and aged.champion_age_days == 13 / 24 and aged.window_end == "2013-05-10T06:00"
    assert aged.payload().window == "2013-05-09T18:00..2013-05-10T06:00"


def test_two_pending_events_give_one_retrain_on_the_newest():
    choice = retrain_choice([_event(3, "2013-06-01"), _event(4, "2013-06-08")], None, 72)
    assert choice.event.id == 4 and choice.window_end == "2013-06-08"
    assert "1 older pending event(s) handled with it" in choice.reason


def test_first_retrain_has_no_cooldown():
    assert retrain_choice([_event(1, "2013-03-07")], None, 10_000).event.id == 1


@pytest.mark.parametrize(
    ("refused", "backoff", "days_after", "due"),
    [
        (0, 2.0, 14, True),  # no refusal: the spec's cooldown (336 h = 14 days)
        (1, 2.0, 14, False),  # one refusal: 28 days
        (1, 2.0, 28, True),
        (2, 2.0, 42, False),  # two in a row: 56 days
        (2, 2.0, 56, True),
        (5, 2.0, 111, False),  # at most 8 times: 112 days
        (5, 2.0, 112, True),
        (3, 1.0, 14, True),  # no backoff: refusals change nothing
    ],
)
def test_refused_retrains_in_a_row_lengthen_the_cooldown(refused, backoff, days_after, due):
    last = "2013-05-01"
    day = (date.fromisoformat(last) + timedelta(days=days_after)).isoformat()
    choice = retrain_choice([_event(9, day)], last, 336, refused_in_a_row=refused, refusal_backoff=backoff)
    assert choice.due is due, choice.reason
    if not due:
        assert f"longer after {refused} refused retrain(s) in a row" in choice.reason, choice.reason


# The champion's age, with a 30-day cap and the 72 h cooldown. Columns: pending drift events, last retrain's
# window end, champion's training window end, latest validated partition | due, drift event handled, training
# window end, whether the age started it, a piece of the reason.
AGE_CASES = {
    "neither": (
        [], None, "2013-05-01", "2013-05-20",
        False, None, None, False, "no pending drift event; champion age 19 days within the cap 30",
    ),
    "drift only": (
        [_event(7, "2013-05-20")], None, "2013-05-01", "2013-05-21",
        True, 7, "2013-05-20", False, "drift event 7 on the window ending 2013-05-20",
    ),
    "age only": (
        [], None, "2013-04-01", "2013-05-20",
        True, None, "2013-05-20", True, "champion age 49 days > cap 30 (trained on data up to 2013-04-01",
    ),
    "both: one retrain on the latest partition, handling the drift": (
        [_event(3, "2013-05-10"), _event(4, "2013-05-17")], "2013-05-01", "2013-04-01", "2013-05-20",
        True, 4, "2013-05-20", True, "drift event 4 on the window ending 2013-05-17 (1 older",
    ),
    "age due takes a drift event still within the cooldown with it": (
        [_event(5, "2013-05-18")], "2013-05-16", "2013-04-01", "2013-05-20",
        True, 5, "2013-05-20", True, "champion age 49 days > cap 30 (trained on data up to 2013-04-01, latest "
        "validated partition 2013-05-20) (1 pending drift event(s) handled with it)",
    ),
    "age within the cooldown after a retrain that kept the champion": (
        [], "2013-05-18", "2013-04-01", "2013-05-20",
        False, None, None, False, "within the 72 h cooldown after the retrain on data up to 2013-05-18",
    ),
    "age past the cooldown after a retrain that kept the champion": (
        [], "2013-05-17", "2013-04-01", "2013-05-20",
        True, None, "2013-05-20", True, "champion age 49 days > cap 30",
    ),
    "age equal to the cap is not older than it": (
        [], None, "2013-04-20", "2013-05-20",
        False, None, None, False, "champion age 30 days within the cap 30",
    ),
    "no champion yet": (
        [], None, None, "2013-05-20",
        False, None, None, False, "no pending drift event; no champion yet: its age is not judged",
    ),
    "no champion yet, drift still retrains": (
        [_event(2, "2013-05-20")], None, None, "2013-05-20",
        True, 2, "2013-05-20", False, "drift event 2",
    ),
    "drift within the cooldown, champion young": (
        [_event(9, "2013-05-19")], "2013-05-18", "2013-05-18", "2013-05-20",
        False, None, None, False, "cooldown after the retrain on data up to 2013-05-18; champion age 2 days",
    ),
}  # fmt: skip


@pytest.mark.parametrize(
    ("pending", "last", "champion_end", "latest", "due", "event_id", "window_end", "age_due", "why"),
    list(AGE_CASES.values()),
    ids=list(AGE_CASES),
)
def test_retrain_on_drift_or_the_champions_age(
    pending, last, champion_end, latest, due, event_id, window_end, age_due, why
):
    choice = retrain_choice(
        pending,
        last,
        72,
        max_champion_age_days=30,
        champion_data_end=champion_end,
        latest_partition=latest,
    )
    assert choice.due is due
    assert _id(choice.event) == event_id
    assert choice.window_end == window_end
    assert choice.age_due is age_due
    assert why in choice.reason, choice.reason


def test_without_a_cap_the_age_is_not_judged_and_the_payload_is_unchanged():
    event = _event(7, "2013-05-20", first_day="2013-05-14", share=0.5)
    old_champion = {"champion_data_end": "2012-01-01", "latest_partition": "2013-05-20"}
    choice = retrain_choice([event], None, 72, **old_champion)
    assert choice.event is event and not choice.age_due
    assert choice.payload() == RetrainDue(
        id=7,
        partition="2013-05-20",
        window="2013-05-14..2013-05-20",
        drift_share=0.5,
        why="drift event 7 on the window ending 2013-05-20",
    )
    # No age figures are handed on when the age was not judged.
    assert {k: v for k, v in choice.payload().to_json().items() if "age" in k} == {
        "age_due": False,
        "champion_age_days": None,
        "max_champion_age_days": None,
    }
    assert retrain_choice([], None, 72, **old_champion).payload() is None


def test_a_drift_event_without_drift_figures_hands_on_no_share():
    choice = retrain_choice([_event(8, "2013-05-20", share=None)], None, 72)
    due = choice.payload()
    assert (
        due is not None and due.id == 8 and due.drift_share is None and due.window == "2013-05-14..2013-05-20"
    )


def test_an_age_retrain_trains_up_to_the_latest_partition():
    choice = retrain_choice(
        [],
        None,
        72,
        max_champion_age_days=30,
        champion_data_end="2013-04-01",
        latest_partition="2013-05-20",
    )
    assert choice.payload() == RetrainDue(
        id=None,
        partition="2013-05-20",
        window="2013-04-02..2013-05-20",
        drift_share=None,
        why=choice.reason,
        age_due=True,
        champion_age_days=49,
        max_champion_age_days=30,
    )
    # What the sensor hands on through XCom reads back the same.
    assert RetrainDue.model_validate(choice.payload().to_json()) == choice.payload()


# The I/O around the decision, on a SQLite warehouse.


@pytest.fixture
def config(airloop_home, tmp_path):
    """Settings whose models folder holds the flights spec with a 30-day cap on the champion's age, a 72 h
    cooldown, doubled after each refused retrain."""
    raw = yaml.safe_load((project_root() / "config" / "models" / f"{MODEL}.yaml").read_text())
    raw["monitoring"].update(max_champion_age_days=30, cooldown_hours=72, refusal_backoff=2.0)
    models = tmp_path / "models"
    models.mkdir()
    (models / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    return dataclasses.replace(airloop_home, models_dir=models)


@pytest.fixture
def ctx(config) -> ModelContext:
    return ModelContext.load(MODEL, config)


@pytest.fixture
def engine(ctx):
    return ctx.warehouse


def _drift(ctx: ModelContext, first: str, last: str) -> int:
    window = MonitoredWindow(first=first, last=last)
    return record_drift(ctx, _result(window), airflow_run_id="test").event_id


def _validated(engine, *days: str) -> None:
    for day in days:
        record_batch(engine, MODEL, LedgerEntry(partition=day, status=PASSED, rows=10, checksum="c" * 64))


def _decision(engine, kind: EventKind, train_run: str) -> None:
    """The gate's decision as the training run writes it: v2 against champion v1."""
    common = {
        "version": "2",
        "champion_before": "1",
        "run_id": "mlflow-run-2",
        "reasons": ["gate: better"],
        "airflow_run_id": train_run,
        "decision": {},
    }
    if kind == EventKind.PROMOTION:
        payload = PromotionPayload(**common, forced=False, move_key=f"promotion:{MODEL}:{train_run}:v2")
    else:
        payload = PromotionRefusedPayload(**common, stage="gate")
    record_event(engine, MODEL, payload)


def test_check_reads_the_ledger_and_drift_events_and_judges_the_given_champion(ctx, engine):
    _validated(engine, "2013-05-19", "2013-05-20")
    record_batch(engine, MODEL, LedgerEntry(partition="2013-05-21", status=QUARANTINED, checksum="d" * 64))
    old = ChampionFacts(version="1", data_end="2013-04-01", moves_seen=0)
    choice = retrain_check(ctx, old)
    assert choice.due and choice.age_due and choice.window_end == "2013-05-20"
    assert choice.reason.startswith("champion age 49 days > cap 30")
    # Without champion facts (the spec has no cap, or they were not read) the age is not judged.
    assert not retrain_check(ctx, None).due
    assert not retrain_check(ctx, ChampionFacts(None, None, 0)).due


def test_age_retrain_outcome_is_recorded_and_starts_the_cooldown(ctx, engine):
    _validated(engine, "2013-05-20")
    due = retrain_check(ctx, ChampionFacts("1", "2013-04-01", 0)).payload()
    _decision(engine, EventKind.PROMOTION_REFUSED, "retrain__r1")
    outcome = retrain_outcome(ctx, due, "retrain__r1", "success")
    assert outcome.outcome == KEPT and outcome.drift_event_id is None and outcome.handled_events == []
    assert (outcome.version, outcome.champion_before) == ("2", "1")
    assert (
        outcome.reasons[0].startswith("champion age 49 days > cap 30")
        and outcome.reasons[1] == "gate: better"
    )
    [event] = events_of(engine, MODEL, [EventKind.AGE_RETRAIN])
    assert event.partition == "2013-05-20" and event.payload.window_last == "2013-05-20"
    assert event.payload.champion_age_days == 49 and event.payload.outcome == KEPT
    assert retrain_history(engine, MODEL) == ("2013-05-20", 1)
    # The champion was kept, so it is still old: the next retrain waits for the cooldown, doubled by the refusal.
    _validated(engine, "2013-05-21", "2013-05-22", "2013-05-25")
    later = retrain_check(ctx, ChampionFacts("1", "2013-04-01", 0))
    assert not later.due and "within the 144 h cooldown (72 h, longer after 1 refused" in later.reason
    _validated(engine, "2013-05-26")
    assert retrain_check(ctx, ChampionFacts("1", "2013-04-01", 0)).age_due


def test_drift_and_age_at_once_give_one_retrain_that_handles_the_drift(ctx, engine):
    _validated(engine, "2013-05-20", "2013-05-21")
    first, second = _drift(ctx, "2013-05-12", "2013-05-18"), _drift(ctx, "2013-05-13", "2013-05-19")
    assert [e.id for e in open_drift_events(engine, MODEL)] == [first, second]
    due = retrain_check(ctx, ChampionFacts("1", "2013-04-01", 0)).payload()
    assert due.id == second and due.partition == "2013-05-21" and due.age_due is True
    _decision(engine, EventKind.PROMOTION, "retrain__r2")
    outcome = retrain_outcome(ctx, due, "retrain__r2", "success")
    assert outcome.outcome == PROMOTED and outcome.handled_events == [first, second]
    assert open_drift_events(engine, MODEL) == []
    handled = {
        e.payload.drift_event_id: e.payload for e in events_of(engine, MODEL, [EventKind.DRIFT_HANDLED])
    }
    assert handled[first].superseded is True and handled[second].superseded is False
    assert {p.window_last for p in handled.values()} == {"2013-05-21"}
    assert len(events_of(engine, MODEL, [EventKind.AGE_RETRAIN])) == 1
    assert retrain_history(engine, MODEL)[0] == "2013-05-21"


def test_failed_age_retrain_records_nothing(ctx, engine):
    _validated(engine, "2013-05-20")
    pending = _drift(ctx, "2013-05-12", "2013-05-18")
    due = retrain_check(ctx, ChampionFacts("1", "2013-04-01", 0)).payload()
    outcome = retrain_outcome(ctx, due, "retrain__r3", "failed")
    assert outcome.outcome == FAILED and "ended failed" in outcome.reasons[-1]
    assert events_of(engine, MODEL, [EventKind.AGE_RETRAIN]) == []
    assert [e.id for e in open_drift_events(engine, MODEL)] == [pending]
    assert retrain_history(engine, MODEL) == (None, 0)


def test_champion_moved_sees_promotions_and_rollbacks_after_the_facts(ctx, engine):
    facts = ChampionFacts("1", "2013-04-01", 0)
    assert not champion_moved(ctx, facts)
    _decision(engine, EventKind.PROMOTION_REFUSED, "r")
    assert not champion_moved(ctx, facts)
    rollback = RollbackPayload(
        version="1", champion_before="2", by="alice", reasons=["bad"], move_key="rollback:1"
    )
    record_event(engine, MODEL, rollback)
    assert champion_moved(ctx, facts)
    [event] = events_of(engine, MODEL, [EventKind.ROLLBACK])
    assert not champion_moved(ctx, dataclasses.replace(facts, moves_seen=event.id))
    assert ChampionFacts.from_dict(facts.as_dict()) == facts


@pytest.fixture
def mlflow_uri():
    """Opening a registry sets MLflow's process-wide tracking URI (and its variable): put it back after."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    mlflow.set_tracking_uri(before)


def test_champion_facts_read_the_champions_training_window_from_the_registry(
    config, engine, tmp_path, mlflow_uri
):
    from mlflow import MlflowClient

    ctx = ModelContext.load(
        MODEL, dataclasses.replace(config, mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    )
    assert champion_facts(ctx) == ChampionFacts(None, None, 0)
    client = MlflowClient(ctx.settings.mlflow_tracking_uri)
    experiment = client.create_experiment(MODEL, artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment, tags={"data.partitions": "2013-02-01..2013-04-01"})
    client.create_registered_model(MODEL)
    version = client.create_model_version(
        MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    assert champion_facts(ctx) == ChampionFacts(None, None, 0)  # registered, no champion yet
    client.set_registered_model_alias(MODEL, "champion", version.version)
    _decision(engine, EventKind.PROMOTION, "train__1")
    [promotion] = events_of(engine, MODEL, [EventKind.PROMOTION])
    assert champion_facts(ctx) == ChampionFacts("1", "2013-04-01", promotion.id)


def test_without_a_cap_champion_facts_read_nothing(airloop_home):
    # The shipped spec sets no cap on the champion's age: the registry is not even opened.
    ctx = ModelContext.load(
        MODEL, dataclasses.replace(airloop_home, mlflow_tracking_uri="http://127.0.0.1:9")
    )
    assert ctx.spec.monitoring.max_champion_age_days is None
    assert champion_facts(ctx) is None


def test_history_counts_the_newest_refusals_in_a_row(engine):
    def retrain(day: str, outcome: str, events: int = 1) -> None:
        for n in range(events):  # a retrain marks every drift event it handled
            handled = DriftHandledPayload(
                model=MODEL,
                outcome=outcome,
                version="2",
                champion_before="1",
                reasons=[],
                drift_event_id=n + 1,
                window=f"{day}..{day}",
                train_run_id=day,
                window_last=day,
                superseded=n > 0,
            )
            record_event(engine, MODEL, handled)

    assert retrain_history(engine, MODEL) == (None, 0)
    retrain("2013-05-01", PROMOTED)
    retrain("2013-05-15", KEPT, events=2)
    retrain("2013-05-29", KEPT)
    assert retrain_history(engine, MODEL) == ("2013-05-29", 2)
    retrain("2013-06-26", PROMOTED)
    assert retrain_history(engine, MODEL) == ("2013-06-26", 0)
    retrain(
        "2013-07-03", FAILED
    )  # a failed training is no retrain: it neither starts nor lengthens a cooldown
    assert retrain_history(engine, MODEL) == ("2013-06-26", 0)
