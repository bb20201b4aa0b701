"""airloop's Celery workers: warm task processes that may start processes of their own.

``[celery] celery_config_options`` names :data:`CELERY_CONFIG`, so Airflow's Celery app (in the scheduler and in
every worker) imports this module, which connects two of Celery's signals:

- ``worker_init`` (a worker's main process, before it forks its pool processes): airloop's heavy libraries are
  imported there once (:func:`airloop.airflow.preload.preload`), as the local stack's warm executor does, and
  every task process, forked from a pool process, inherits them.
- ``worker_process_init`` (each pool process): Celery's prefork pool (billiard) makes its pool processes daemonic
  in the standard library's eyes, and a task process forked from one inherits that, so it could start no
  process of its own ("daemonic processes are not allowed to have children"): a training's parallel trials
  failed so. The pool process is no daemon of the task's, so the flag is cleared there; this touches
  ``multiprocessing``'s private ``_config``, pinned by ``tests/unit/airflow/test_celery_worker.py``.
"""

from __future__ import annotations

import logging
import multiprocessing
from typing import Any

from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG
from celery.signals import worker_init, worker_process_init

from airloop.airflow.preload import preload

log = logging.getLogger(__name__)

#: Airflow's own Celery settings, unchanged (Airflow takes the setting's dict as the whole configuration): the
#: module is named for its signal handlers.
CELERY_CONFIG: dict[str, Any] = dict(DEFAULT_CELERY_CONFIG)


@worker_init.connect
def warm_up(**_kwargs: Any) -> None:
    took = preload()
    log.info("preloaded %d modules in %.1f s for the task processes", len(took), sum(took.values()))


@worker_process_init.connect
def allow_child_processes(**_kwargs: Any) -> None:
    multiprocessing.current_process()._config["daemon"] = False
