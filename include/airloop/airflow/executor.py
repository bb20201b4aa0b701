"""A LocalExecutor whose task processes start warm.

Airflow 3's LocalExecutor forks its worker processes from the scheduler, and each worker forks one process per
task. Every task of airloop imports pandas, Great Expectations, MLflow, scikit-learn or Evidently: 2-6 s each, per
task, on every run. Importing them once in the scheduler, before the workers are forked, makes every task process
inherit them (copy-on-write, after the executor's own gc freeze): the import cost is paid once per scheduler start.

For the local stack only (``airloop up``); distributed deployments use the Celery or Kubernetes executors.
"""

from __future__ import annotations

from airflow.executors.local_executor import LocalExecutor

from airloop.airflow.preload import preload


class WarmLocalExecutor(LocalExecutor):
    """:class:`~airflow.executors.local_executor.LocalExecutor` with airloop's libraries imported before forking."""

    def start(self) -> None:
        if self.is_mp_using_fork:
            took = preload()
            self.log.info(
                "preloaded %d modules in %.1f s for the task processes", len(took), sum(took.values())
            )
        super().start()
