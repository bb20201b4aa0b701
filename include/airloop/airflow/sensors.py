"""Sensors of airloop's DAGs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from airloop.airflow.triggers import DriftEventTrigger, PartitionLandedTrigger
from airloop.settings import settings
from airloop.sources import is_landed, partition_dir


class LandedPartitionSensor(BaseSensorOperator):
    """Waits for a model's partition to land, deferred to the triggerer; fails clearly after ``wait_timeout``.

    :param model: the model whose landing folder is watched (``<landing_dir>/<model>``, resolved at run time).
    :param partition: the partition key, ``YYYY-MM-DD`` (templated).
    :param wait_timeout: how long a missing partition is waited for.
    """

    template_fields: Sequence[str] = ("partition",)
    ui_color = "#b7e1cd"

    def __init__(self, *, model: str, partition: str, wait_timeout: timedelta, **kwargs: Any) -> None:
        # The trigger enforces the deadline with a clear message; Airflow's own timeout is only a backstop.
        kwargs.setdefault("timeout", (wait_timeout + timedelta(minutes=5)).total_seconds())
        super().__init__(**kwargs)
        self.model = model
        self.partition = partition
        self.wait_timeout = wait_timeout

    def poke(self, context: Any) -> bool:
        return is_landed(settings().landing_for(self.model), self.partition)

    def execute(self, context: Any) -> None:
        if self.poke(context):
            return
        deadline = datetime.now(UTC) + self.wait_timeout
        self.defer(
            trigger=PartitionLandedTrigger(
                landing=str(settings().landing_for(self.model)),
                partition=self.partition,
                deadline=deadline.isoformat(),
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=self.wait_timeout + timedelta(minutes=5),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        if not event or event.get("status") != "landed":
            folder = partition_dir(settings().landing_for(self.model), self.partition)
            raise AirflowFailException(
                f"partition {self.partition} of {self.model} did not land within {self.wait_timeout}: "
                f"nothing in {folder}. Check the upstream export, then clear this task to wait again."
            )
        self.log.info("partition %s of %s has landed", self.partition, self.model)


class DriftEventSensor(BaseSensorOperator):
    """Waits, deferred to the triggerer, for a pending drift event outside the cooldown; returns it (XCom).

    Skips (rather than fails) after ``wait_timeout``: no drift due is a normal outcome, not an error.

    :param model: the model whose drift events are watched.
    :param wait_timeout: how long to wait for an eligible event.
    """

    ui_color = "#f6c8a8"

    def __init__(self, *, model: str, wait_timeout: timedelta, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", (wait_timeout + timedelta(minutes=5)).total_seconds())
        super().__init__(**kwargs)
        self.model = model
        self.wait_timeout = wait_timeout

    def poke(self, context: Any) -> bool:
        from airloop.retraining import due_drift_event

        return due_drift_event(self.model) is not None

    def execute(self, context: Any) -> dict[str, Any] | None:
        from airloop.retraining import due_drift_event

        event = due_drift_event(self.model)
        if event is not None:
            self.log.info("retraining %s: %s", self.model, event["why"])
            return event
        self.defer(
            trigger=DriftEventTrigger(
                model=self.model,
                deadline=(datetime.now(UTC) + self.wait_timeout).isoformat(),
                poke_interval=self.poke_interval,
            ),
            method_name="execute_complete",
            timeout=self.wait_timeout + timedelta(minutes=5),
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event or event.get("status") != "due":
            raise AirflowSkipException(
                f"no drift event of {self.model} due for retraining within {self.wait_timeout} "
                "(none pending, or all within the cooldown)"
            )
        self.log.info("retraining %s: %s", self.model, event["event"]["why"])
        return event["event"]
