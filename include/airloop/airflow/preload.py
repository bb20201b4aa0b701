"""The heavy libraries airloop's tasks import, and importing them ahead of time.

The warm executor (:mod:`airloop.airflow.executor`) imports them in the scheduler before it forks task processes;
``benchmarks/loop_latency.py`` times them in its in-process run. Importing this module costs nothing.
"""

from __future__ import annotations

import importlib
import logging
import time

#: The third-party libraries airloop's tasks import. Never airloop's own modules: a task process forked from the
#: scheduler would run the code the scheduler started with, not the library as edited since (DAG files are
#: re-parsed, tasks import airloop afresh). A module that fails to import is logged and skipped: tasks import it
#: themselves.
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
