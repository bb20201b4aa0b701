"""What the local stack runs: Airflow's four components, its log server, the Celery workers (``executor: celery``)
and the MLflow server, each a command and the ports it binds (every one on loopback)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from airloop.core.settings import Settings
from airloop.local.env import LOG_SERVER_PORT_OFFSET


@dataclass(frozen=True)
class Component:
    name: str
    argv: list[str]
    #: Ports the component binds, with what each one is, checked free before anything starts.
    ports: dict[int, str]


#: The components tasks talk to (Airflow's execution API, MLflow tracking): stopped after the others.
SERVERS = {"api-server", "mlflow"}


def stack_components(settings: Settings, env: Mapping[str, str]) -> list[Component]:
    """MLflow first (it does not need Airflow's metadata DB, so it starts while the DB migrates), then Airflow."""
    s = settings
    # Its stores' URLs come through the environment (MLFLOW_BACKEND_STORE_URI, MLFLOW_AUTH_CONFIG_PATH), not the
    # command line: `ps` shows a command line to every user of the machine.
    mlflow = [
        "mlflow", "server",
        "--app-name", "basic-auth",
        "--artifacts-destination", str(s.mlflow_artifacts_dir),
        "--host", "127.0.0.1", "--port", str(s.mlflow_port),
        # One worker process: the default four cost ~8 s of CPU to start on 2 cores, and the handful of
        # concurrent requests a local stack makes are served by its thread pool.
        "--workers", "1",
    ]  # fmt: skip
    log_port = int(env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"])
    # The scheduler's and the triggerer's own log servers bind every interface (Airflow 3.3 hard-codes it), so
    # they are skipped; Airflow's log-server app runs instead under uvicorn on loopback, for both (same folder).
    log_server = [
        "python", "-m", "uvicorn", "--factory", "airflow.utils.serve_logs.log_server:get_app",
        "--host", "127.0.0.1", "--port", str(log_port), "--no-access-log",
    ]  # fmt: skip
    components = [
        Component("mlflow", mlflow, {s.mlflow_port: "MLflow server (mlflow_port)"}),
        Component(
            "api-server",
            ["airflow", "api-server", "--port", str(s.airflow_port)],
            {s.airflow_port: "Airflow API server (airflow_port)"},
        ),
        Component(
            "log-server",
            log_server,
            {log_port: f"Airflow log server (airflow_port + {LOG_SERVER_PORT_OFFSET})"},
        ),
        Component("scheduler", ["airflow", "scheduler", "--skip-serve-logs"], {}),
        Component("dag-processor", ["airflow", "dag-processor"], {}),
        Component("triggerer", ["airflow", "triggerer", "--skip-serve-logs"], {}),
    ]
    if s.executor == "celery":
        slots, extra = divmod(s.parallelism, s.celery_workers)
        for i, (component, node) in enumerate(celery_workers(s).items()):
            # The parallelism shared out: 8 slots over 3 workers are 3, 3 and 2 (each at least one).
            concurrency = max(1, slots + (i < extra))
            worker = [
                "airflow", "celery", "worker", "--celery-hostname", node, "--concurrency", str(concurrency),
                # Its log server would bind every interface: the stack's one serves the running tasks' logs.
                "--skip-serve-logs",
            ]  # fmt: skip
            components.append(Component(component, worker, {}))
    return components


def celery_workers(settings: Settings) -> dict[str, str]:
    """The stack's Celery workers: each one's component name (``worker-1``: its log, its pid) and its Celery node
    name (``worker-1@airloop``: it answers pings by it)."""
    return {f"worker-{i}": f"worker-{i}@airloop" for i in range(1, settings.celery_workers + 1)}
