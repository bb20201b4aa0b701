from __future__ import annotations

import dataclasses
from datetime import date
from pathlib import Path

import pytest
import yaml

from airloop import warehouse
from airloop.monitoring import open_drift_events, record_drift
from airloop.retraining import (
    AGE_RETRAIN,
    FAILED,
    KEPT,
    PROMOTED,
    ChampionFacts,
    champion_moved,
    retrain_check,
    retrain_choice,
    retrain_history,
    retrain_outcome,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MODEL = "flights_delay"
D = date.fromisoformat


def _event(event_id: int, last_day: str) -> dict:
    return {"id": event_id, "partition": last_day, "payload": {}}


def test_nothing_pending_means_no_retrain():
    choice = retrain_choice([], None, 72)
    assert choice.event is None and not choice.due and choice.reason == "no pending drift event"


def test_within_cooldown_waits():
    choice = retrain_choice([_event(7, "2013-05-10")], date(2013, 5, 8), 72)
    assert choice.event is None and not choice.due
    assert "within the 72 h cooldown" in choice.reason and "2013-05-08" in choice.reason


def test_cooldown_is_measured_in_data_time_between_windows():
    assert retrain_choice([_event(7, "2013-05-11")], date(2013, 5, 8), 72).event["id"] == 7
    assert retrain_choice([_event(7, "2013-05-10")], date(2013, 5, 8), 48).event["id"] == 7


def test_two_pending_events_give_one_retrain_on_the_newest():
    choice = retrain_choice([_event(3, "2013-06-01"), _event(4, "2013-06-08")], None, 72)
    assert choice.event["id"] == 4 and choice.window_end == D("2013-06-08")
    assert "1 older pending event(s) handled with it" in choice.reason


def test_first_retrain_has_no_cooldown():
    assert retrain_choice([_event(1, "2013-03-07")], None, 10_000).event["id"] == 1


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
    last = D("2013-05-01")
    day = date.fromordinal(last.toordinal() + days_after).isoformat()
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
        [_event(3, "2013-05-10"), _event(4, "2013-05-17")], D("2013-05-01"), "2013-04-01", "2013-05-20",
        True, 4, "2013-05-20", True, "drift event 4 on the window ending 2013-05-17 (1 older",
    ),
    "age due takes a drift event still within the cooldown with it": (
        [_event(5, "2013-05-18")], D("2013-05-16"), "2013-04-01", "2013-05-20",
        True, 5, "2013-05-20", True, "champion age 49 days > cap 30 (trained on data up to 2013-04-01, latest "
        "validated partition 2013-05-20) (1 pending drift event(s) handled with it)",
    ),
    "age within the cooldown after a retrain that kept the champion": (
        [], D("2013-05-18"), "2013-04-01", "2013-05-20",
        False, None, None, False, "within the 72 h cooldown after the retrain on data up to 2013-05-18",
    ),
    "age past the cooldown after a retrain that kept the champion": (
        [], D("2013-05-17"), "2013-04-01", "2013-05-20",
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
        [_event(9, "2013-05-19")], D("2013-05-18"), "2013-05-18", "2013-05-20",
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
        champion_data_end=D(champion_end) if champion_end else None,
        latest_partition=D(latest),
    )
    assert choice.due is due
    assert (choice.event["id"] if choice.event else None) == event_id
    assert choice.window_end == (D(window_end) if window_end else None)
    assert choice.age_due is age_due
    assert why in choice.reason, choice.reason


def test_without_a_cap_the_age_is_not_judged_and_the_payload_is_unchanged():
    event = {
        "id": 7,
        "partition": "2013-05-20",
        "payload": {"window": {"first": "2013-05-14", "last": "2013-05-20"}, "drift": {"share": 0.5}},
    }
    old_champion = {"champion_data_end": D("2012-01-01"), "latest_partition": D("2013-05-20")}
    choice = retrain_choice([event], None, 72, **old_champion)
    assert choice.payload() == {
        "id": 7,
        "partition": "2013-05-20",
        "window": "2013-05-14..2013-05-20",
        "drift_share": 0.5,
        "why": "drift event 7 on the window ending 2013-05-20",
    }
    assert retrain_choice([], None, 72, **old_champion).payload() is None


def test_an_age_retrain_trains_up_to_the_latest_partition():
    choice = retrain_choice(
        [],
        None,
        72,
        max_champion_age_days=30,
        champion_data_end=D("2013-04-01"),
        latest_partition=D("2013-05-20"),
    )
    assert choice.payload() == {
        "id": None,
        "partition": "2013-05-20",
        "window": "2013-04-02..2013-05-20",
        "drift_share": None,
        "why": choice.reason,
        "age_due": True,
        "champion_age_days": 49,
        "max_champion_age_days": 30,
    }


# The I/O around the decision, on a SQLite warehouse.


@pytest.fixture
def config(airloop_home, tmp_path):
    """Settings whose models folder holds the flights spec with a 30-day cap on the champion's age, a 72 h
    cooldown, doubled after each refused retrain."""
    raw = yaml.safe_load((ROOT / "config" / "models" / f"{MODEL}.yaml").read_text())
    raw["monitoring"].update(max_champion_age_days=30, cooldown_hours=72, refusal_backoff=2.0)
    models = tmp_path / "models"
    models.mkdir()
    (models / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    config = dataclasses.replace(airloop_home, models_dir=models)
    warehouse.ensure_tables(warehouse.engine_for(config.warehouse_url))
    return config


@pytest.fixture
def engine(config):
    return warehouse.engine_for(config.warehouse_url)


def _drift(config, first: str, last: str) -> int:
    result = {"window": {"first": first, "last": last}, "drift": {"share": 0.5}, "drifted": True}
    return record_drift(MODEL, result, airflow_run_id="test", config=config)["event_id"]


def _validated(engine, *days: str) -> None:
    for day in days:
        warehouse.record_batch(engine, MODEL, day, {"status": "passed", "rows": 10, "checksum": "c" * 64})


def _decision(engine, kind: str, train_run: str) -> None:
    payload = {
        "version": "2",
        "from_version": "1",
        "champion_version": "1",
        "reasons": ["gate: better"],
        "airflow_run_id": train_run,
    }
    warehouse.record_event(engine, MODEL, kind, payload)


def test_check_reads_the_ledger_and_drift_events_and_judges_the_given_champion(config, engine):
    _validated(engine, "2013-05-19", "2013-05-20")
    warehouse.record_batch(engine, MODEL, "2013-05-21", {"status": "quarantined", "checksum": "d" * 64})
    old = ChampionFacts(version="1", data_end="2013-04-01", moves_seen=0)
    choice = retrain_check(MODEL, old, config=config)
    assert choice.due and choice.age_due and choice.window_end == D("2013-05-20")
    assert choice.reason.startswith("champion age 49 days > cap 30")
    # Without champion facts (the spec has no cap, or they were not read) the age is not judged.
    assert not retrain_check(MODEL, None, config=config).due
    assert not retrain_check(MODEL, ChampionFacts(None, None, 0), config=config).due


def test_age_retrain_outcome_is_recorded_and_starts_the_cooldown(config, engine):
    _validated(engine, "2013-05-20")
    due = retrain_check(MODEL, ChampionFacts("1", "2013-04-01", 0), config=config).payload()
    _decision(engine, "promotion_refused", "retrain__r1")
    outcome = retrain_outcome(MODEL, due, "retrain__r1", "success", config=config)
    assert (
        outcome["outcome"] == KEPT and outcome["drift_event_id"] is None and outcome["handled_events"] == []
    )
    assert (
        outcome["reasons"][0].startswith("champion age 49 days > cap 30")
        and outcome["reasons"][1] == "gate: better"
    )
    [event] = warehouse.events_for(engine, MODEL, [AGE_RETRAIN])
    assert event["partition"] == "2013-05-20" and event["payload"]["window_last"] == "2013-05-20"
    assert event["payload"]["champion_age_days"] == 49
    assert retrain_history(MODEL, config) == (D("2013-05-20"), 1)
    # The champion was kept, so it is still old: the next retrain waits for the cooldown, doubled by the refusal.
    _validated(engine, "2013-05-21", "2013-05-22", "2013-05-25")
    later = retrain_check(MODEL, ChampionFacts("1", "2013-04-01", 0), config=config)
    assert not later.due and "within the 144 h cooldown (72 h, longer after 1 refused" in later.reason
    _validated(engine, "2013-05-26")
    assert retrain_check(MODEL, ChampionFacts("1", "2013-04-01", 0), config=config).age_due


def test_drift_and_age_at_once_give_one_retrain_that_handles_the_drift(config, engine):
    _validated(engine, "2013-05-20", "2013-05-21")
    first, second = _drift(config, "2013-05-12", "2013-05-18"), _drift(config, "2013-05-13", "2013-05-19")
    due = retrain_check(MODEL, ChampionFacts("1", "2013-04-01", 0), config=config).payload()
    assert due["id"] == second and due["partition"] == "2013-05-21" and due["age_due"] is True
    _decision(engine, "promotion", "retrain__r2")
    outcome = retrain_outcome(MODEL, due, "retrain__r2", "success", config=config)
    assert outcome["outcome"] == PROMOTED and outcome["handled_events"] == [first, second]
    assert open_drift_events(MODEL, config=config) == []
    assert len(warehouse.events_for(engine, MODEL, [AGE_RETRAIN])) == 1
    assert retrain_history(MODEL, config)[0] == D("2013-05-21")


def test_failed_age_retrain_records_nothing(config, engine):
    _validated(engine, "2013-05-20")
    pending = _drift(config, "2013-05-12", "2013-05-18")
    due = retrain_check(MODEL, ChampionFacts("1", "2013-04-01", 0), config=config).payload()
    outcome = retrain_outcome(MODEL, due, "retrain__r3", "failed", config=config)
    assert outcome["outcome"] == FAILED and "ended failed" in outcome["reasons"][-1]
    assert warehouse.events_for(engine, MODEL, [AGE_RETRAIN]) == []
    assert [e["id"] for e in open_drift_events(MODEL, config=config)] == [pending]
    assert retrain_history(MODEL, config) == (None, 0)


def test_champion_moved_sees_promotions_and_rollbacks_after_the_facts(config, engine):
    facts = ChampionFacts("1", "2013-04-01", 0)
    assert not champion_moved(MODEL, facts, config=config)
    _decision(engine, "promotion_refused", "r")
    assert not champion_moved(MODEL, facts, config=config)
    warehouse.record_event(engine, MODEL, "rollback", {"champion": "1"})
    assert champion_moved(MODEL, facts, config=config)
    [rollback] = warehouse.events_for(engine, MODEL, ["rollback"])
    assert not champion_moved(MODEL, dataclasses.replace(facts, moves_seen=rollback["id"]), config=config)
    assert ChampionFacts.from_dict(facts.as_dict()) == facts


def test_champion_facts_read_the_champions_training_window_from_the_registry(config, engine, tmp_path):
    from mlflow import MlflowClient

    from airloop.retraining import champion_facts

    config = dataclasses.replace(config, mlflow_tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    assert champion_facts(MODEL, config=config) == ChampionFacts(None, None, 0)
    client = MlflowClient(config.mlflow_tracking_uri)
    experiment = client.create_experiment(MODEL, artifact_location=str(tmp_path / "artifacts"))
    run = client.create_run(experiment, tags={"data.partitions": "2013-02-01..2013-04-01"})
    client.create_registered_model(MODEL)
    version = client.create_model_version(MODEL, source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    assert champion_facts(MODEL, config=config) == ChampionFacts(None, None, 0)  # registered, no champion yet
    client.set_registered_model_alias(MODEL, "champion", version.version)
    warehouse.record_event(engine, MODEL, "promotion", {"version": version.version})
    [promotion] = warehouse.events_for(engine, MODEL, ["promotion"])
    assert champion_facts(MODEL, config=config) == ChampionFacts("1", "2013-04-01", promotion["id"])


def test_history_counts_the_newest_refusals_in_a_row(config, engine):
    def retrain(day: str, outcome: str, events: int = 1) -> None:
        for _ in range(events):  # a retrain marks every drift event it handled
            warehouse.record_event(
                engine, MODEL, "drift_handled", {"outcome": outcome, "window_last": day, "train_run_id": day}
            )

    assert retrain_history(MODEL, config) == (None, 0)
    retrain("2013-05-01", PROMOTED)
    retrain("2013-05-15", KEPT, events=2)
    retrain("2013-05-29", KEPT)
    assert retrain_history(MODEL, config) == (D("2013-05-29"), 2)
    retrain("2013-06-26", PROMOTED)
    assert retrain_history(MODEL, config) == (D("2013-06-26"), 0)
    retrain("2013-07-03", FAILED)  # a failed training is no retrain: it neither starts nor lengthens a cooldown
    assert retrain_history(MODEL, config) == (D("2013-06-26"), 0)
