"""Sensors of airloop's DAGs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException

from airloop.airflow.triggers import PartitionLandedTrigger
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
