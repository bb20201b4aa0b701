"""What every airloop DAG file shares at parse time: the specs, default arguments (with the failure alert) and
the timetables. What tasks do when they run is :mod:`airloop.airflow.tasks`.

Cheap at parse time: reads YAML specs (through the state folder's cache of parsed YAML), touches no database,
connection or tracking server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import DAG, CronDataIntervalTimetable, get_parsing_context
from airflow.sdk.bases.notifier import BaseNotifier
from airflow.sdk.bases.timetable import BaseTimetable
from airflow.sdk.exceptions import AirflowTimetableInvalid

from airloop.airflow.alerting import alert_task_failure
from airloop.core.errors import ConfigError
from airloop.core.partitions import key_format
from airloop.core.settings import settings
from airloop.core.spec import ModelSpec
from airloop.model.context import ModelContext, load_model_specs

#: XCom keys of results handed on beside a task's return value (a branch's or a short-circuit's decision).
EXTRACTED, VERDICT, LOADED = "extracted", "verdict", "loaded"
PARTITIONS, SCORED, UNRECORDED = "partitions", "scored", "unrecorded"
GATE, RESULT, DRIFT_EVENT = "gate", "result", "drift_event"


class FailureAlert(BaseNotifier):
    """Alerts the model's channels (e-mail, Slack) when a task fails for good, its retries used up.

    The on-failure callback of every airloop task (see :func:`default_args`). Building it at parse time costs
    nothing: the providers' notifiers and the connections are loaded only when it fires.
    """

    def __init__(self, *, model: str) -> None:
        super().__init__()
        self.model = model

    def notify(self, context: Any) -> None:
        alert_task_failure(ModelContext.load(self.model), context)


def model_specs(namespace: dict[str, Any], stage: str) -> list[ModelSpec]:
    """The specs whose ``<model>_<stage>`` DAG this parse builds: every spec of the configured models folder that
    loads (a broken one does not hide the others), or, when a task process parses the file to run one DAG's task
    (Airflow's parsing context names that DAG), only that DAG's spec: the other models' DAGs would be built for
    nothing, at every task start (Airflow's documented use of ``get_parsing_context``).

    The specs that fail to load are reported as this DAG file's import error (each naming its file and field),
    through a placeholder DAG put in ``namespace`` (the DAG file's globals) whose timetable refuses validation:
    the DAG bag records the error and keeps every other DAG of the file. Every spec is loaded either way: a chain
    of models (``source.after``) is checked across the folder.
    """
    config = settings()
    folder = load_model_specs(config.models_dir, cache_dir=config.cache_dir / "specs")
    if folder.errors:
        namespace["airloop_broken_specs"] = broken_specs_dag(folder.errors)
    running = get_parsing_context().dag_id
    if running is None:
        return folder.specs
    return [spec for spec in folder.specs if f"{spec.name}_{stage}" == running]


class BrokenSpecs(BaseTimetable):
    """The timetable of the placeholder DAG of broken specs: its validation, when the DAG bag takes the DAG, fails
    with what is wrong (Airflow's documented use of ``validate``)."""

    can_be_scheduled = False

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors

    def validate(self) -> None:
        raise AirflowTimetableInvalid("model spec(s) failed to load: " + " | ".join(self.errors))


def broken_specs_dag(errors: list[ConfigError]) -> DAG:
    """A DAG that is never bagged: it carries the load errors of the broken specs (see :func:`model_specs`)."""
    return DAG(
        dag_id="airloop_broken_specs",
        schedule=BrokenSpecs([str(e) for e in errors]),
        start_date=datetime(2000, 1, 1, tzinfo=UTC),
    )


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


def partition_template(spec: ModelSpec) -> str:
    """The Jinja template of a run's partition key (:func:`airloop.core.partitions.partition_key`), for operator
    fields rendered by Airflow (the landing sensor's, rendered in the triggerer)."""
    return f"{{{{ data_interval_start.strftime('{key_format(spec.schedule)}') }}}}"


def start(spec: ModelSpec) -> datetime:
    return datetime.combine(spec.start_date, datetime.min.time(), tzinfo=UTC)


def end(spec: ModelSpec) -> datetime | None:
    return datetime.combine(spec.end_date, datetime.min.time(), tzinfo=UTC) if spec.end_date else None
