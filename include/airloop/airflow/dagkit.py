"""What every airloop DAG file shares: the specs, default arguments, the timetable and the partition key.

Cheap at parse time: reads YAML specs, touches no database, connection or tracking server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import CronDataIntervalTimetable

from airloop.settings import settings
from airloop.spec import ModelSpec, load_specs


def model_specs() -> list[ModelSpec]:
    """Every model spec under the configured models folder."""
    return load_specs(settings().models_dir)


def default_args(spec: ModelSpec) -> dict[str, Any]:
    """Owner and retry policy of every task of a model's DAGs."""
    return {
        "owner": spec.owner,
        "retries": 2,
        "retry_delay": timedelta(seconds=20),
        "retry_exponential_backoff": True,
    }


def timetable(spec: ModelSpec) -> CronDataIntervalTimetable:
    """A data-interval timetable: the run for [D, D+1) starts once D is over, and D is the partition key."""
    return CronDataIntervalTimetable(spec.schedule, timezone="UTC")


def start(spec: ModelSpec) -> datetime:
    return datetime.combine(spec.start_date, datetime.min.time(), tzinfo=UTC)


def end(spec: ModelSpec) -> datetime | None:
    return datetime.combine(spec.end_date, datetime.min.time(), tzinfo=UTC) if spec.end_date else None


def partition_key(data_interval_start: datetime) -> str:
    """The partition of a run: the UTC date its data interval starts on."""
    return data_interval_start.astimezone(UTC).date().isoformat()
