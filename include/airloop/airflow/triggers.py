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
    """Fires with the drift event a retrain is due for, or with ``status="timeout"`` at ``deadline`` (ISO, UTC)."""

    def __init__(self, *, model: str, deadline: str, poke_interval: float = 10.0) -> None:
        super().__init__()
        self.model = model
        self.deadline = deadline
        self.poke_interval = poke_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "airloop.airflow.triggers.DriftEventTrigger",
            {"model": self.model, "deadline": self.deadline, "poke_interval": self.poke_interval},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from airloop.retraining import due_drift_event

        deadline = datetime.fromisoformat(self.deadline)
        while True:
            event = await asyncio.to_thread(due_drift_event, self.model)
            if event is not None:
                yield TriggerEvent({"status": "due", "event": event})
                return
            remaining = (deadline - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                yield TriggerEvent({"status": "timeout"})
                return
            await asyncio.sleep(min(self.poke_interval, remaining))
