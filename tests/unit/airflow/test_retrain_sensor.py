"""The retrain sensor and its trigger: they wait deferred, poll only the warehouse, and re-read the champion on a
worker when it moves."""

from __future__ import annotations

import asyncio
import importlib
from datetime import UTC, datetime, timedelta

import pytest
import yaml

from airloop.core.contracts import RetrainDue
from airloop.core.events import PromotionPayload
from airloop.core.settings import project_root
from airloop.model.context import ModelContext
from airloop.retrain.policy import RetrainChoice
from airloop.retrain.retrain import ChampionFacts, champion_facts
from airloop.store.db import open_warehouse
from airloop.store.events import record_event
from airloop.store.ledger import PASSED, LedgerEntry, record_batch

pytestmark = pytest.mark.unit

MODEL = "flights_delay"
OLD = ChampionFacts(version="1", data_end="2013-04-01", moves_seen=0)


@pytest.fixture
def capped(airloop_home, tmp_path, monkeypatch):
    """AIRLOOP_MODELS_DIR holds the flights spec with a 30-day cap; one validated partition, 2013-05-20."""
    from airloop.core.settings import load_settings, settings

    raw = yaml.safe_load((project_root() / "config" / "models" / f"{MODEL}.yaml").read_text())
    raw["monitoring"]["max_champion_age_days"] = 30
    models = tmp_path / "models"
    models.mkdir()
    (models / f"{MODEL}.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("AIRLOOP_MODELS_DIR", str(models))
    settings.cache_clear()
    config = load_settings()
    engine = open_warehouse(config.warehouse_url)
    record_batch(
        engine, MODEL, LedgerEntry(partition="2013-05-20", status=PASSED, rows=10, checksum="c" * 64)
    )
    yield engine
    settings.cache_clear()


def _trigger(deadline: datetime, champion: ChampionFacts | None = OLD):
    from airloop.airflow.triggers import DriftEventTrigger

    return DriftEventTrigger(
        model=MODEL,
        deadline=deadline.isoformat(),
        poke_interval=0.01,
        champion=champion.as_dict() if champion else None,
    )


def _first_event(trigger) -> dict:
    async def first():
        async for event in trigger.run():
            return event.payload

    return asyncio.run(first())


def test_trigger_serializes_its_champion_facts():
    trigger = _trigger(datetime(2030, 1, 1, tzinfo=UTC))
    path, kwargs = trigger.serialize()
    module, name = path.rsplit(".", 1)
    again = getattr(importlib.import_module(module), name)(**kwargs)
    assert again.serialize() == (path, kwargs) and kwargs["champion"] == OLD.as_dict()


def test_trigger_fires_when_the_champion_is_too_old(capped):
    event = _first_event(_trigger(datetime.now(UTC) + timedelta(minutes=1)))
    assert event["status"] == "due"
    assert event["event"]["partition"] == "2013-05-20" and event["event"]["age_due"] is True


def test_trigger_hands_back_when_the_champion_moves(capped):
    promotion = PromotionPayload(
        version="2",
        champion_before="1",
        run_id="mlflow-run-2",
        forced=False,
        reasons=["better"],
        airflow_run_id="train__1",
        decision={},
        move_key=f"promotion:{MODEL}:train__1:v2",
    )
    record_event(capped, MODEL, promotion)
    deadline = datetime.now(UTC) + timedelta(minutes=1)
    assert _first_event(_trigger(deadline)) == {"status": "champion_moved", "deadline": deadline.isoformat()}


def test_trigger_times_out_with_the_reason(capped):
    young = ChampionFacts(version="1", data_end="2013-05-10", moves_seen=0)
    event = _first_event(_trigger(datetime.now(UTC) - timedelta(seconds=1), young))
    assert event == {
        "status": "timeout",
        "why": "no pending drift event; champion age 10 days within the cap 30",
    }


def test_champion_facts_without_a_cap_reads_nothing(airloop_home):
    assert champion_facts(ModelContext.load(MODEL, airloop_home)) is None


def _sensor():
    from airloop.airflow.sensors import DriftEventSensor

    return DriftEventSensor(
        task_id="wait_for_drift", model=MODEL, wait_timeout=timedelta(minutes=30), poke_interval=5
    )


def _choice(due: bool) -> RetrainChoice:
    if due:
        return RetrainChoice(
            None,
            "champion age 49 days > cap 30",
            "2013-05-20",
            age_due=True,
            max_champion_age_days=30,
            champion_age_days=49,
            champion_data_end="2013-04-01",
        )
    return RetrainChoice(None, "no pending drift event")


def _patch(monkeypatch, facts: ChampionFacts | None, check) -> None:
    """The sensor's reads, replaced: ``check(champion)`` decides; both are asked about this model's context."""
    from airloop.airflow import sensors

    def facts_of(ctx: ModelContext) -> ChampionFacts | None:
        assert ctx.name == MODEL
        return facts

    def retrain_check(ctx: ModelContext, champion: ChampionFacts | None) -> RetrainChoice:
        assert ctx.name == MODEL
        return check(champion)

    monkeypatch.setattr(sensors, "champion_facts", facts_of)
    monkeypatch.setattr(sensors, "retrain_check", retrain_check)


def test_sensor_returns_a_due_retrain_at_once(airloop_home, monkeypatch):
    _patch(monkeypatch, OLD, lambda champion: _choice(champion == OLD))
    due = _sensor().execute({})
    assert due["partition"] == "2013-05-20" and due["age_due"] is True
    assert RetrainDue.model_validate(due) == _choice(True).payload()


def test_sensor_defers_with_the_champion_facts_and_rechecks_when_it_moves(airloop_home, monkeypatch):
    from airflow.sdk.exceptions import TaskDeferred

    from airloop.airflow.triggers import DriftEventTrigger

    _patch(monkeypatch, OLD, lambda champion: _choice(False))
    sensor = _sensor()
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, DriftEventTrigger) and trigger.champion == OLD.as_dict()
    assert timedelta(minutes=34) < deferred.value.timeout <= timedelta(minutes=35)
    # The champion moved: read again on the worker; still nothing due, so wait again until the same deadline.
    with pytest.raises(TaskDeferred) as again:
        sensor.execute_complete({}, {"status": "champion_moved", "deadline": trigger.deadline})
    assert again.value.trigger.deadline == trigger.deadline
    _patch(monkeypatch, OLD, lambda champion: _choice(True))
    assert sensor.execute_complete({}, {"status": "champion_moved", "deadline": trigger.deadline})["age_due"]


def test_sensor_skips_with_the_reason_when_nothing_became_due():
    from airflow.sdk.exceptions import AirflowSkipException

    with pytest.raises(
        AirflowSkipException, match=r"no retrain of flights_delay due within 0:30:00 \(because\)"
    ):
        _sensor().execute_complete({}, {"status": "timeout", "why": "because"})
    due = RetrainDue(
        id=3, partition="2013-05-20", window="2013-05-14..2013-05-20", drift_share=0.4, why="drift"
    )
    assert _sensor().execute_complete({}, {"status": "due", "event": due.to_json()}) == due.to_json()


def test_sensor_refuses_a_due_event_that_is_not_a_retrain():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="partition"):
        _sensor().execute_complete({}, {"status": "due", "event": {"id": 3, "why": "drift"}})
