"""Triggers run by the Airflow triggerer: they wait without holding a worker slot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airloop.sources import is_landed


class PartitionLandedTrigger(BaseTrigger):
    """Fires once a partition folder holds a file, or with ``status="timeout"`` at ``deadline`` (ISO, UTC)."""

    def __init__(self, *, landing: str, partition: str, deadline: str, poke_interval: float = 30.0) -> None:
        super().__init__()
        self.landing = landing
        self.partition = partition
        self.deadline = deadline
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airloop.airflow.triggers.PartitionLandedTrigger",
            {
                "landing": self.landing,
                "partition": self.partition,
                "deadline": self.deadline,
                "poke_interval": self.poke_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        deadline = datetime.fromisoformat(self.deadline)
        while True:
            if await asyncio.to_thread(is_landed, Path(self.landing), self.partition):
                yield TriggerEvent({"status": "landed", "partition": self.partition})
                return
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                yield TriggerEvent({"status": "timeout", "partition": self.partition})
                return
            await asyncio.sleep(min(self.poke_interval, remaining))


class DriftEventTrigger(BaseTrigger):
    """Fires with the retrain that is due, with ``status="champion_moved"`` when the champion was promoted or
    rolled back since ``champion`` was read, or with ``status="timeout"`` at ``deadline`` (ISO, UTC).

    Polls the warehouse only. ``champion`` (:class:`airloop.retraining.ChampionFacts` as a dict, read by the
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
        from airloop.retraining import ChampionFacts, champion_moved, retrain_check

        champion = ChampionFacts.from_dict(self.champion) if self.champion else None
        deadline = datetime.fromisoformat(self.deadline)
        while True:
            if champion is not None and await asyncio.to_thread(champion_moved, self.model, champion):
                yield TriggerEvent({"status": "champion_moved", "deadline": self.deadline})
                return
            choice = await asyncio.to_thread(retrain_check, self.model, champion)
            if choice.due:
                yield TriggerEvent({"status": "due", "event": choice.payload()})
                return
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                yield TriggerEvent({"status": "timeout", "why": choice.reason})
                return
            await asyncio.sleep(min(self.poke_interval, remaining))
