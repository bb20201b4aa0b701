"""Driving a running stack through Airflow's REST API, as a person would from the UI (used by ``airloop demo``)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx

FINISHED = {"success", "failed"}


class AirflowApi:
    """A logged-in client of Airflow 3's ``/api/v2`` (simple auth manager: ``POST /auth/token``)."""

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=timeout)
        response = self.client.post("/auth/token", json={"username": username, "password": password})
        response.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def call(self, method: str, path: str, **body: Any) -> Any:
        response = self.client.request(method, f"/api/v2{path}", json=body or None)
        response.raise_for_status()
        return response.json() if response.content else None

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: datetime | None = None
    ) -> str:
        """Unpause ``dag_id`` and start a manual run (for the data interval ending at ``logical_date``, if given);
        its run id."""
        self.call("PATCH", f"/dags/{dag_id}", is_paused=False)
        when = logical_date.isoformat() if logical_date else None
        return str(
            self.call("POST", f"/dags/{dag_id}/dagRuns", logical_date=when, conf=conf or {})["dag_run_id"]
        )

    def runs(self, dag_id: str, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The DAG's runs, newest first (``state``: only those in it)."""
        query = f"?order_by=-run_after&limit={limit}" + (f"&state={state}" if state else "")
        return list(self.call("GET", f"/dags/{dag_id}/dagRuns{query}")["dag_runs"])

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """The run's task instances (state, start and end dates, duration)."""
        return list(self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"])

    def wait_for_dag(self, dag_id: str, timeout: float = 120.0) -> None:
        """Wait until the DAG processor has parsed ``dag_id``."""
        deadline = time.monotonic() + timeout
        while self.client.get(f"/api/v2/dags/{dag_id}").status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAG {dag_id} not parsed within {timeout:.0f} s")
            time.sleep(1)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 900.0) -> str:
        """Wait until a run finishes; its final state."""
        deadline = time.monotonic() + timeout
        while (state := self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]) not in FINISHED:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} of {dag_id} still {state} after {timeout:.0f} s")
            time.sleep(2)
        return str(state)

    def close(self) -> None:
        self.client.close()
