"""Triggers run by the Airflow triggerer: they wait without holding a worker slot."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airloop.core.settings import settings
from airloop.ingest.landing import is_landed
from airloop.ingest.upstream import describe_unsettled, unsettled_upstream, upstream_specs
from airloop.model.context import ModelContext
from airloop.retrain.retrain import ChampionFacts, champion_moved, retrain_check


class PartitionLandedTrigger(BaseTrigger):
    """Fires once a model's partition has its completion marker (without one: once its folder holds a file), or
    with ``status="timeout"`` after ``wait_seconds``.

    With ``end_from_trigger`` (how :class:`~airloop.airflow.sensors.LandedPartitionSensor` starts it, straight
    from the scheduler) a landed partition ends the task here, in the triggerer (``TaskSuccessEvent``): no worker
    runs for it at all. Otherwise, and always on a timeout, the task resumes on a worker with the event.
    The landing folder is resolved here from the settings, so the trigger's arguments hold no path. The wait is
    counted from the trigger's start (its arguments are fixed when the DAG is parsed): a triggerer restart starts
    it again, within the sensor's own timeout, which Airflow enforces as a backstop.
    """

    def __init__(
        self,
        *,
        model: str,
        partition: str,
        wait_seconds: float,
        poke_interval: float = 30.0,
        end_from_trigger: bool = False,
        marker: str | None = None,
        part_folders: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.partition = partition
        self.wait_seconds = wait_seconds
        self.poke_interval = poke_interval
        self.end_from_trigger = end_from_trigger
        self.marker = marker
        self.part_folders = part_folders

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airloop.airflow.triggers.PartitionLandedTrigger",
            {
                "model": self.model,
                "partition": self.partition,
                "wait_seconds": self.wait_seconds,
                "poke_interval": self.poke_interval,
                "end_from_trigger": self.end_from_trigger,
                "marker": self.marker,
                "part_folders": self.part_folders,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        landing = settings().landing_for(self.model)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            if await asyncio.to_thread(is_landed, landing, self.partition, self.marker, self.part_folders):
                if self.end_from_trigger:
                    self.log.info("partition %s of %s has landed in %s", self.partition, self.model, landing)
                    yield TaskSuccessEvent()
                else:
                    yield TriggerEvent({"status": "landed", "partition": self.partition})
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                yield TriggerEvent({"status": "timeout", "partition": self.partition})
                return
            await asyncio.sleep(min(self.poke_interval, remaining))


class UpstreamSettledTrigger(BaseTrigger):
    """Fires once every upstream model (``source.after``) has settled its partitions of ``[start, end)`` (ISO,
    UTC), or with ``status="timeout"`` and what is still missing after ``wait_seconds``. Polls the warehouse.
    With ``end_from_trigger`` a settled interval ends the task here, in the triggerer (no worker runs for it)."""

    def __init__(
        self,
        *,
        model: str,
        start: str,
        end: str,
        wait_seconds: float,
        poke_interval: float = 30.0,
        end_from_trigger: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.start = start
        self.end = end
        self.wait_seconds = wait_seconds
        self.poke_interval = poke_interval
        self.end_from_trigger = end_from_trigger

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airloop.airflow.triggers.UpstreamSettledTrigger",
            {
                "model": self.model,
                "start": self.start,
                "end": self.end,
                "wait_seconds": self.wait_seconds,
                "poke_interval": self.poke_interval,
                "end_from_trigger": self.end_from_trigger,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ctx = await asyncio.to_thread(ModelContext.load, self.model)
        upstreams = await asyncio.to_thread(upstream_specs, ctx)
        start, end = datetime.fromisoformat(self.start), datetime.fromisoformat(self.end)
        deadline = time.monotonic() + self.wait_seconds
        while True:
            missing = await asyncio.to_thread(unsettled_upstream, ctx.warehouse, upstreams, start, end)
            if not missing:
                if self.end_from_trigger:
                    self.log.info("upstream of %s settled for %s..%s", self.model, self.start, self.end)
                    yield TaskSuccessEvent()
                else:
                    yield TriggerEvent({"status": "settled"})
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                yield TriggerEvent({"status": "timeout", "missing": describe_unsettled(missing)})
                return
            await asyncio.sleep(min(self.poke_interval, remaining))


class DriftEventTrigger(BaseTrigger):
    """Fires with the retrain that is due, with ``status="champion_moved"`` when the champion was promoted or
    rolled back since ``champion`` was read, or with ``status="timeout"`` at ``deadline`` (ISO, UTC).

    Polls the warehouse only. ``champion`` (:class:`airloop.retrain.retrain.ChampionFacts` as a dict, read by the
    sensor; ``None`` when the spec sets no age cap) is what the champion's age is judged on. The name predates the
    age cap and is kept: a deferred task stores its trigger's class path and keyword arguments.
    """

    def __init__(
        self,
        *,
        model: str,
        deadline: str,
        poke_interval: float = 10.0,
        champion: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.deadline = deadline
        self.poke_interval = poke_interval
        self.champion = champion

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airloop.airflow.triggers.DriftEventTrigger",
            {
                "model": self.model,
                "deadline": self.deadline,
                "poke_interval": self.poke_interval,
                "champion": self.champion,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        champion = ChampionFacts.from_dict(self.champion) if self.champion else None
        deadline = datetime.fromisoformat(self.deadline)
        ctx = await asyncio.to_thread(ModelContext.load, self.model)
        while True:
            if champion is not None and await asyncio.to_thread(champion_moved, ctx, champion):
                yield TriggerEvent({"status": "champion_moved", "deadline": self.deadline})
                return
            choice = await asyncio.to_thread(retrain_check, ctx, champion)
            due = choice.payload()
            if due is not None:
                yield TriggerEvent({"status": "due", "event": due.to_json()})
                return
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                yield TriggerEvent({"status": "timeout", "why": choice.reason})
                return
            await asyncio.sleep(min(self.poke_interval, remaining))
