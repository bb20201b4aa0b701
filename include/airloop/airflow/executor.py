"""A LocalExecutor whose task processes start warm.

Airflow 3's LocalExecutor forks its worker processes from the scheduler, and each worker forks one process per
task. Every task of airloop imports pandas, Great Expectations, MLflow, scikit-learn or Evidently: 2-6 s each, per
task, on every run. Importing them once in the scheduler, before the workers are forked, makes every task process
inherit them (copy-on-write, after the executor's own gc freeze): the import cost is paid once per scheduler start.

For the local stack only (``airloop up``); distributed deployments use the Celery or Kubernetes executors.
"""

from __future__ import annotations

import importlib
import logging
import time

from airflow.executors.local_executor import LocalExecutor

#: What airloop's tasks import. A module that fails to import is logged and skipped: tasks import it themselves.
PRELOAD = (
    "pandas",
    "pyarrow.parquet",
    "sqlalchemy",
    "sklearn.ensemble",
    "sklearn.pipeline",
    "great_expectations",
    "mlflow",
    "mlflow.sklearn",
    "skops.io",  # how MLflow loads airloop's models: 1.5 s to import (it lists every trusted type)
    "optuna",
    "evidently",
    "airloop.ingest",
    "airloop.validation",
    "airloop.training",
    "airloop.registry",
)

log = logging.getLogger(__name__)


def preload(modules: tuple[str, ...] = PRELOAD) -> dict[str, float]:
    """Import ``modules``; returns the seconds each took (absent: it failed, and was logged)."""
    took = {}
    for name in modules:
        started = time.perf_counter()
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - preloading is an optimisation; the task's own import will report it
            log.warning("could not preload %s; tasks will import it themselves", name, exc_info=True)
            continue
        took[name] = time.perf_counter() - started
    return took


class WarmLocalExecutor(LocalExecutor):
    """:class:`~airflow.executors.local_executor.LocalExecutor` with airloop's libraries imported before forking."""

    def start(self) -> None:
        if self.is_mp_using_fork:
            took = preload()
            self.log.info("preloaded %d modules in %.1f s for the task processes", len(took), sum(took.values()))
        super().start()
