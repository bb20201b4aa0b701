"""The wait of a chained SQL source: the trigger polls the upstream ledger, the sensor fails naming what is missing."""

from __future__ import annotations

import asyncio
import importlib
from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.unit

MODEL = "flights_arrival_minutes"  # shipped: reads flights_delay_batches after flights_delay
START, END = datetime(2013, 1, 6, tzinfo=UTC), datetime(2013, 1, 13, tzinfo=UTC)
DAYS = [f"2013-01-{d:02d}" for d in range(5, 13)]


def _trigger(**overrides):
    from airloop.airflow.triggers import UpstreamSettledTrigger

    kwargs = {
        "model": MODEL,
        "start": START.isoformat(),
        "end": END.isoformat(),
        "wait_seconds": 5.0,
        "poke_interval": 0.01,
    }
    return UpstreamSettledTrigger(**{**kwargs, **overrides})


def _first_event(trigger):
    async def first():
        async for event in trigger.run():
            return event

    return asyncio.run(first())


def _settle(days: list[str]) -> None:
    from airloop.model.context import ModelContext
    from airloop.store.ledger import LedgerEntry, record_batch

    engine = ModelContext.load(MODEL).warehouse
    for n, day in enumerate(days):
        record_batch(
            engine, "flights_delay", LedgerEntry(partition=day, status="passed", checksum=f"{n:064d}")
        )


def test_trigger_round_trips_through_its_serialization():
    path, kwargs = _trigger().serialize()
    module, name = path.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name)(**kwargs).serialize() == (path, kwargs)


def test_the_trigger_fires_once_the_upstream_has_settled_the_interval(airloop_home):
    _settle(DAYS)
    assert _first_event(_trigger()).payload == {"status": "settled"}


def test_a_settled_interval_ends_the_task_in_the_triggerer(airloop_home):
    from airflow.triggers.base import TaskSuccessEvent

    _settle(DAYS)
    assert isinstance(_first_event(_trigger(end_from_trigger=True)), TaskSuccessEvent)


def test_the_sensor_starts_from_its_trigger_with_the_interval_templated():
    from airloop.airflow.sensors import UpstreamSettledSensor

    sensor = UpstreamSettledSensor(
        task_id="wait_for_upstream", model=MODEL, wait_timeout=timedelta(hours=1), poke_interval=5
    )
    args = sensor.start_trigger_args
    assert sensor.start_from_trigger is True
    assert args.trigger_cls == "airloop.airflow.triggers.UpstreamSettledTrigger"
    assert args.trigger_kwargs == {
        "model": MODEL,
        "start": "{{ data_interval_start.isoformat() }}",
        "end": "{{ data_interval_end.isoformat() }}",
        "wait_seconds": 3600.0,
        "poke_interval": 5,
        "end_from_trigger": True,
    }
    # The triggerer renders the operator's template fields that are also trigger arguments.
    assert set(sensor.template_fields) & set(args.trigger_kwargs) == {"start", "end"}


def test_the_trigger_times_out_naming_what_is_missing(airloop_home):
    _settle(DAYS[:-2])
    event = _first_event(_trigger(wait_seconds=0.05))
    assert event.payload == {"status": "timeout", "missing": "flights_delay: 2013-01-11, 2013-01-12"}


def test_the_sensor_passes_at_once_when_settled_and_fails_naming_the_missing_partitions(airloop_home):
    from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

    from airloop.airflow.sensors import UpstreamSettledSensor

    sensor = UpstreamSettledSensor(task_id="wait_for_upstream", model=MODEL, wait_timeout=timedelta(hours=1))
    sensor.start, sensor.end = START.isoformat(), END.isoformat()  # as rendered
    context = {}
    _settle(DAYS[:-1])
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute(context)
    assert deferred.value.trigger.serialize()[1]["start"] == START.isoformat()
    with pytest.raises(AirflowFailException, match=r"still missing flights_delay: 2013-01-12\. Ingest those"):
        sensor.execute_complete(context, {"status": "timeout", "missing": "flights_delay: 2013-01-12"})
    _settle(DAYS[-1:])
    assert sensor.execute(context) is None
