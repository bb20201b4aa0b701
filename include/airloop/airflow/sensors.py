"""Sensors of airloop's DAGs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from airflow.triggers.base import StartTriggerArgs

from airloop.airflow.triggers import DriftEventTrigger, PartitionLandedTrigger, UpstreamSettledTrigger
from airloop.core.contracts import RetrainDue
from airloop.core.settings import settings
from airloop.ingest.landing import is_landed, partition_dir
from airloop.ingest.upstream import describe_unsettled, unsettled_upstream, upstream_specs
from airloop.model.context import ModelContext
from airloop.retrain.retrain import champion_facts, retrain_check


class LandedPartitionSensor(BaseSensorOperator):
    """Waits for a model's partition to land, in the triggerer from the start; fails clearly after ``wait_timeout``.

    The scheduler hands the task straight to :class:`~airloop.airflow.triggers.PartitionLandedTrigger`
    (``start_from_trigger``; ``partition`` is rendered there), which ends it as soon as the partition folder holds
    its completion marker (or, without one, a file): a day ingested costs no worker process for waiting. Only a timeout resumes the task on a worker, to fail
    it with the folder it watched. Where tasks run in-process (``dag.test()``), ``execute`` checks once and defers to
    the same trigger.

    :param model: the model whose landing folder is watched (``<landing_dir>/<model>``, resolved at run time).
    :param partition: the partition key, ``YYYY-MM-DD`` (templated).
    :param wait_timeout: how long a missing partition is waited for.
    :param marker: the completion marker the partition is waited for (None: any data file).
    :param part_folders: the source reads part-file folders: the marker may be in each of them (as Spark writes
        it) instead of beside them.
    """

    template_fields: Sequence[str] = ("partition",)
    ui_color = "#b7e1cd"

    def __init__(
        self,
        *,
        model: str,
        partition: str,
        wait_timeout: timedelta,
        marker: str | None = "_SUCCESS",
        part_folders: bool = False,
        **kwargs: Any,
    ) -> None:
        # The trigger enforces the deadline with a clear message; Airflow's own timeout is only a backstop.
        backstop = wait_timeout + timedelta(minutes=5)
        kwargs.setdefault("timeout", backstop.total_seconds())
        super().__init__(**kwargs)
        self.model = model
        self.partition = partition
        self.wait_timeout = wait_timeout
        self.marker = marker
        self.part_folders = part_folders
        self.start_from_trigger = True
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls="airloop.airflow.triggers.PartitionLandedTrigger",
            trigger_kwargs={**self._trigger_kwargs(), "end_from_trigger": True},
            next_method="execute_complete",
            next_kwargs=None,
            timeout=backstop,
        )

    def poke(self, context: Any) -> bool:
        return is_landed(settings().landing_for(self.model), self.partition, self.marker, self.part_folders)

    def execute(self, context: Any) -> None:
        if self.poke(context):
            return
        self.defer(
            trigger=PartitionLandedTrigger(**self._trigger_kwargs()),
            method_name="execute_complete",
            timeout=self.start_trigger_args.timeout,
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        if not event or event.get("status") != "landed":
            folder = partition_dir(settings().landing_for(self.model), self.partition)
            missing = f"no completion marker {self.marker}" if self.marker else "nothing"
            raise AirflowFailException(
                f"partition {self.partition} of {self.model} did not land within {self.wait_timeout}: "
                f"{missing} in {folder}. Check the upstream export, then clear this task to wait again."
            )
        self.log.info("partition %s of %s has landed", self.partition, self.model)

    def _trigger_kwargs(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "partition": self.partition,
            "wait_seconds": self.wait_timeout.total_seconds(),
            "poke_interval": self.poke_interval,
            "marker": self.marker,
            "part_folders": self.part_folders,
        }


class UpstreamSettledSensor(BaseSensorOperator):
    """Waits until the models a SQL source reads after (``source.after``) have settled every partition of the
    run's data interval; fails clearly, naming what is missing, after ``wait_timeout``.

    Like :class:`LandedPartitionSensor`, it starts in the triggerer (``start_from_trigger``; ``start`` and ``end``,
    the data interval's bounds, are rendered there) and a settled interval ends it there: waiting costs no worker
    process. Only a timeout resumes it on a worker, to fail. Where tasks run in-process (``dag.test()``),
    ``execute`` checks once and defers to the same trigger.

    :param model: the model whose source waits.
    :param wait_timeout: how long the upstream models are waited for.
    """

    template_fields: Sequence[str] = ("start", "end")
    ui_color = "#b7e1cd"

    def __init__(
        self,
        *,
        model: str,
        wait_timeout: timedelta,
        start: str = "{{ data_interval_start.isoformat() }}",
        end: str = "{{ data_interval_end.isoformat() }}",
        **kwargs: Any,
    ) -> None:
        backstop = wait_timeout + timedelta(minutes=5)
        kwargs.setdefault("timeout", backstop.total_seconds())
        super().__init__(**kwargs)
        self.model = model
        self.wait_timeout = wait_timeout
        self.start = start
        self.end = end
        self.start_from_trigger = True
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls="airloop.airflow.triggers.UpstreamSettledTrigger",
            trigger_kwargs={**self._trigger_kwargs(), "end_from_trigger": True},
            next_method="execute_complete",
            next_kwargs=None,
            timeout=backstop,
        )

    def _trigger_kwargs(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "start": self.start,
            "end": self.end,
            "wait_seconds": self.wait_timeout.total_seconds(),
            "poke_interval": self.poke_interval,
        }

    def poke(self, context: Any) -> bool:
        return not self._missing(context)

    def execute(self, context: Any) -> None:
        missing = self._missing(context)
        if not missing:
            return
        self.log.info("waiting for upstream partitions of %s: %s", self.model, describe_unsettled(missing))
        self.defer(
            trigger=UpstreamSettledTrigger(**self._trigger_kwargs()),
            method_name="execute_complete",
            timeout=self.start_trigger_args.timeout,
        )

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> None:
        if not event or event.get("status") != "settled":
            missing = (event or {}).get("missing", "unknown")
            raise AirflowFailException(
                f"the models {self.model} reads after did not settle its interval within {self.wait_timeout}: "
                f"still missing {missing}. Ingest those, then clear this task to wait again."
            )
        self.log.info("every upstream partition of %s's interval has settled", self.model)

    def _missing(self, context: Any) -> dict[str, list[str]]:
        ctx = ModelContext.load(self.model)
        start, end = datetime.fromisoformat(self.start), datetime.fromisoformat(self.end)
        return unsettled_upstream(ctx.warehouse, upstream_specs(ctx), start, end)


class DriftEventSensor(BaseSensorOperator):
    """Waits, deferred to the triggerer, for a retrain to be due; returns what to retrain on (XCom).

    Due: a pending drift event outside the cooldown or, when the spec sets ``monitoring.max_champion_age_days``,
    a champion older than that cap (see :func:`airloop.retrain.policy.retrain_choice`). The champion's training window
    is read from the registry here, on the worker, once per wait; the trigger polls only the warehouse and hands
    back when the champion moves, to have it read again. Skips (rather than fails) after ``wait_timeout``: no
    retrain due is a normal outcome, not an error.

    :param model: the model whose drift events and champion are watched.
    :param wait_timeout: how long to wait for a retrain to be due.
    """

    ui_color = "#f6c8a8"

    def __init__(self, *, model: str, wait_timeout: timedelta, **kwargs: Any) -> None:
        kwargs.setdefault("timeout", (wait_timeout + timedelta(minutes=5)).total_seconds())
        super().__init__(**kwargs)
        self.model = model
        self.wait_timeout = wait_timeout

    def poke(self, context: Any) -> bool:
        ctx = ModelContext.load(self.model)
        return retrain_check(ctx, champion_facts(ctx)).due

    def execute(self, context: Any) -> dict[str, Any] | None:
        return self._due_or_defer(datetime.now(UTC) + self.wait_timeout)

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any] | None:
        status = (event or {}).get("status")
        if status == "due":
            due = RetrainDue.model_validate(event["event"])
            self.log.info("retraining %s: %s", self.model, due.why)
            return due.to_json()
        if status == "champion_moved":
            self.log.info("the champion of %s moved while waiting: reading it again", self.model)
            return self._due_or_defer(datetime.fromisoformat(event["deadline"]))
        why = (event or {}).get("why") or "none pending, or all within the cooldown"
        raise AirflowSkipException(f"no retrain of {self.model} due within {self.wait_timeout} ({why})")

    def _due_or_defer(self, deadline: datetime) -> dict[str, Any] | None:
        ctx = ModelContext.load(self.model)
        champion = champion_facts(ctx)
        choice = retrain_check(ctx, champion)
        due = choice.payload()
        if due is not None:
            self.log.info("retraining %s: %s", self.model, choice.reason)
            return due.to_json()
        remaining = deadline - datetime.now(UTC)
        if remaining <= timedelta(0):
            raise AirflowSkipException(
                f"no retrain of {self.model} due within {self.wait_timeout} ({choice.reason})"
            )
        self.log.info("no retrain of %s due yet (%s): waiting until %s", self.model, choice.reason, deadline)
        self.defer(
            trigger=DriftEventTrigger(
                model=self.model,
                deadline=deadline.isoformat(),
                poke_interval=self.poke_interval,
                champion=champion.as_dict() if champion else None,
            ),
            method_name="execute_complete",
            timeout=remaining + timedelta(minutes=5),
        )
