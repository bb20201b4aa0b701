"""What every airloop DAG file shares: the specs, default arguments (with the failure alert), the timetables,
the partition key and the reading of triggering Asset events.

Cheap at parse time: reads YAML specs, touches no database, connection or tracking server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable
from airflow.sdk.bases.notifier import BaseNotifier

from airloop.settings import settings
from airloop.spec import ModelSpec, load_specs


class FailureAlert(BaseNotifier):
    """Alerts the model's channels (e-mail, Slack) when a task fails for good, its retries used up.

    The on-failure callback of every airloop task (see :func:`default_args`). Building it at parse time costs
    nothing: the alerting code, the providers' notifiers and the connections are loaded only when it fires.
    """

    def __init__(self, *, model: str) -> None:
        super().__init__()
        self.model = model

    def notify(self, context: Any) -> None:
        from airloop.airflow.alerting import alert_task_failure

        alert_task_failure(self.model, context)


def model_specs() -> list[ModelSpec]:
    """Every model spec under the configured models folder."""
    return load_specs(settings().models_dir)


def dag_args(spec: ModelSpec, stage: str, doc_md: str | None) -> dict[str, Any]:
    """What every DAG of a model shares: its id (``<model>_<stage>``), start, task defaults, tags and docs, and
    that it is not paused when first parsed."""
    return {
        "dag_id": f"{spec.name}_{stage}",
        "start_date": start(spec),
        "default_args": default_args(spec),
        "tags": ["airloop", spec.name, stage, *spec.tags],
        "doc_md": doc_md,
        "is_paused_upon_creation": False,
    }


def default_args(spec: ModelSpec) -> dict[str, Any]:
    """Owner, retry policy and failure alert of every task of a model's DAGs."""
    return {
        "owner": spec.owner,
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
        "on_failure_callback": FailureAlert(model=spec.name),
    }


def timetable(spec: ModelSpec) -> CronDataIntervalTimetable:
    """A data-interval timetable: the run for [D, D+1) starts once D is over, and D is the partition key."""
    return CronDataIntervalTimetable(spec.schedule, timezone="UTC")


def monitoring_timetable(spec: ModelSpec) -> CronDataIntervalTimetable:
    """The monitor's data-interval timetable on ``monitoring.schedule``: a run starts once its interval is over."""
    if spec.monitoring is None:
        raise ValueError(f"{spec.name}: the spec has no 'monitoring' section")
    return CronDataIntervalTimetable(spec.monitoring.schedule, timezone="UTC")


def start(spec: ModelSpec) -> datetime:
    return datetime.combine(spec.start_date, datetime.min.time(), tzinfo=UTC)


def end(spec: ModelSpec) -> datetime | None:
    return datetime.combine(spec.end_date, datetime.min.time(), tzinfo=UTC) if spec.end_date else None


def partition_key(data_interval_start: datetime) -> str:
    """The partition of a run: the UTC date its data interval starts on."""
    return data_interval_start.astimezone(UTC).date().isoformat()


def asset_event_extras(triggering_asset_events: Mapping[Any, Iterable[Any]] | None) -> list[dict[str, Any]]:
    """The ``extra`` of every Asset event that triggered the run (none for a manual run)."""
    if not triggering_asset_events:
        return []
    return [dict(event.extra or {}) for events in triggering_asset_events.values() for event in events]


def skip_unless_done(result: dict[str, Any], flag: str) -> dict[str, Any]:
    """``result`` when ``result[flag]`` is true, else the task is skipped with ``result["reason"]``."""
    if not result[flag]:
        from airflow.sdk.exceptions import AirflowSkipException

        raise AirflowSkipException(result["reason"])
    return result
