"""The ingest sensor and its trigger: the scheduler starts the wait in the triggerer, a landed partition ends the
task there, and only a timeout comes back to a worker, to fail with the folder it watched."""

from __future__ import annotations

import asyncio
import importlib
from datetime import timedelta

import pytest

pytestmark = pytest.mark.unit

MODEL = "flights_delay"


def _trigger(**overrides):
    from airloop.airflow.triggers import PartitionLandedTrigger

    kwargs = {"model": MODEL, "partition": "2013-01-05", "wait_seconds": 5.0, "poke_interval": 0.01}
    return PartitionLandedTrigger(**{**kwargs, **overrides})


def _first_event(trigger):
    async def first():
        async for event in trigger.run():
            return event

    return asyncio.run(first())


def _land(config, partition: str = "2013-01-05") -> None:
    folder = config.landing_for(MODEL) / f"date={partition}"
    folder.mkdir(parents=True)
    (folder / "flights.parquet").write_bytes(b"PAR1")


def _sensor():
    from airloop.airflow.sensors import LandedPartitionSensor

    return LandedPartitionSensor(
        task_id="wait_for_partition",
        model=MODEL,
        partition="{{ data_interval_start | ds }}",
        wait_timeout=timedelta(minutes=60),
        poke_interval=1,
    )


def test_trigger_round_trips_through_its_serialization():
    path, kwargs = _trigger(end_from_trigger=True).serialize()
    module, name = path.rsplit(".", 1)
    assert getattr(importlib.import_module(module), name)(**kwargs).serialize() == (path, kwargs)


def test_a_landed_partition_ends_the_task_in_the_triggerer(airloop_home):
    from airflow.triggers.base import TaskSuccessEvent

    _land(airloop_home)
    assert isinstance(_first_event(_trigger(end_from_trigger=True)), TaskSuccessEvent)


def test_a_landed_partition_resumes_a_deferred_task_with_the_event(airloop_home):
    _land(airloop_home)
    assert _first_event(_trigger()).payload == {"status": "landed", "partition": "2013-01-05"}


def test_the_trigger_hands_back_a_timeout_to_the_worker(airloop_home):
    event = _first_event(_trigger(wait_seconds=0.05, end_from_trigger=True))
    assert event.payload == {"status": "timeout", "partition": "2013-01-05"}


def test_the_sensor_starts_from_its_trigger_with_the_partition_templated():
    sensor = _sensor()
    args = sensor.start_trigger_args
    assert sensor.start_from_trigger is True
    assert args.trigger_cls == "airloop.airflow.triggers.PartitionLandedTrigger"
    assert args.next_method == "execute_complete"
    assert args.trigger_kwargs == {
        "model": MODEL,
        "partition": "{{ data_interval_start | ds }}",
        "wait_seconds": 3600.0,
        "poke_interval": 1,
        "marker": "_SUCCESS",
        "part_folders": False,
        "end_from_trigger": True,
    }
    # The triggerer renders the operator's template fields that are also trigger arguments.
    assert set(sensor.template_fields) & set(args.trigger_kwargs) == {"partition"}
    assert args.timeout == timedelta(minutes=65)


def test_a_timeout_fails_the_task_naming_the_folder(airloop_home):
    from airflow.sdk.exceptions import AirflowFailException

    sensor = _sensor()
    sensor.partition = "2013-01-05"
    with pytest.raises(
        AirflowFailException,
        match=r"did not land within 1:00:00: no completion marker _SUCCESS in .*date=2013-01-05",
    ):
        sensor.execute_complete({}, {"status": "timeout", "partition": "2013-01-05"})


def test_with_a_marker_files_without_it_are_still_waited_for(airloop_home):
    """A writer still writing (files there, no _SUCCESS yet) is waited for; the marker ends the wait."""
    _land(airloop_home)
    event = _first_event(_trigger(wait_seconds=0.2, marker="_SUCCESS"))
    assert event.payload == {"status": "timeout", "partition": "2013-01-05"}
    (airloop_home.landing_for(MODEL) / "date=2013-01-05" / "_SUCCESS").touch()
    assert _first_event(_trigger(marker="_SUCCESS")).payload == {
        "status": "landed",
        "partition": "2013-01-05",
    }


def test_with_part_folders_the_trigger_ends_on_the_marker_inside_the_folder(airloop_home):
    """Spark writes _SUCCESS inside the folder it writes: with part folders, that lands the partition."""
    folder = airloop_home.landing_for(MODEL) / "date=2013-01-05" / "flights.parquet"
    folder.mkdir(parents=True)
    (folder / "part-00000.parquet").write_bytes(b"x")
    (folder / "_SUCCESS").touch()
    timeout = {"status": "timeout", "partition": "2013-01-05"}
    assert _first_event(_trigger(wait_seconds=0.2, marker="_SUCCESS")).payload == timeout
    landed = _first_event(_trigger(marker="_SUCCESS", part_folders=True))
    assert landed.payload == {"status": "landed", "partition": "2013-01-05"}
    assert _trigger(part_folders=True).serialize()[1]["part_folders"] is True
