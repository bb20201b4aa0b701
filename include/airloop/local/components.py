"""What the local stack runs: Airflow's four components and the MLflow server, each a command and the ports it
binds."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from airloop.core.settings import Settings
from airloop.local.env import TRIGGER_LOG_PORT_OFFSET, WORKER_LOG_PORT_OFFSET


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
    worker_log = int(env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"])
    trigger_log = int(env["AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT"])
    return [
        Component("mlflow", mlflow, {s.mlflow_port: "MLflow server (mlflow_port)"}),
        Component(
            "api-server",
            ["airflow", "api-server", "--port", str(s.airflow_port)],
            {s.airflow_port: "Airflow API server (airflow_port)"},
        ),
        Component(
            "scheduler",
            ["airflow", "scheduler"],
            {worker_log: f"Airflow worker log server (airflow_port + {WORKER_LOG_PORT_OFFSET})"},
        ),
        Component("dag-processor", ["airflow", "dag-processor"], {}),
        Component(
            "triggerer",
            ["airflow", "triggerer"],
            {trigger_log: f"Airflow triggerer log server (airflow_port + {TRIGGER_LOG_PORT_OFFSET})"},
        ),
    ]
