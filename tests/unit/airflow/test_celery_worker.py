"""A task process forked from a Celery prefork pool process may start processes of its own once the pool process
has run :func:`airloop.airflow.celery_worker.allow_child_processes`; without it the standard library refuses."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

#: A process marked daemonic as billiard marks its pool processes; then a fork (the task process) starts a
#: process pool, as a training's parallel trials do.
PROBE = """
import multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
multiprocessing.current_process()._config["daemon"] = True  # what billiard does in a pool process
if sys.argv[1] == "allowed":
    from airloop.airflow.celery_worker import allow_child_processes
    allow_child_processes(sender=None)
pid = os.fork()
if pid == 0:  # the task process
    try:
        with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool:
            print(sum(pool.map(abs, [-1, -2, -3])), flush=True)
        os._exit(0)
    except AssertionError as exc:
        print(exc, flush=True)
        os._exit(1)
_, status = os.waitpid(pid, 0)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _probe(mode: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120)


def test_a_task_process_of_a_daemonic_pool_process_cannot_start_processes_unless_allowed() -> None:
    refused = _probe("as-billiard-leaves-it")
    assert refused.returncode == 1 and "daemonic processes are not allowed to have children" in refused.stdout
    allowed = _probe("allowed")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.strip().splitlines()[-1] == "6"


def test_airflow_s_celery_app_keeps_its_broker_and_settings_under_airloop_s_config(monkeypatch) -> None:
    """The setting's dict is Airflow's whole Celery configuration: it must hold Airflow's own (the broker)."""
    probe = (
        "from airflow.providers.celery.executors.celery_executor import app; "
        "print(app.conf.broker_url, app.conf.task_acks_late)"
    )
    env = {
        **dict(__import__("os").environ),
        "AIRFLOW__CELERY__BROKER_URL": "redis://127.0.0.1:6399/7",
        "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "airloop.airflow.celery_worker.CELERY_CONFIG",
    }
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["redis://127.0.0.1:6399/7", "True"]
