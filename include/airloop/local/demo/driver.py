"""Driving a running stack through Airflow's REST API, as a person would from the UI (used by ``airloop demo``)."""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import httpx

FINISHED = {"success", "failed"}

#: Tries of one call that the server answered with a 5xx or did not answer at all.
ATTEMPTS = 5


class AirflowApi:
    """A logged-in client of Airflow 3's ``/api/v2`` (simple auth manager: ``POST /auth/token``).

    Calls the server failed (5xx) or never answered are tried again, up to :data:`ATTEMPTS` times: on a SQLite
    metadata DB, Airflow 3.3's API server answers a write with 500 now and then ("database is locked": its action
    log writes to the DB from the event loop while a request thread holds the write lock, until the 5 s busy
    timeout). Every call made here is safe to repeat; a run is triggered under a run id chosen here, so a retry
    finds the run the first try created instead of starting a second one.
    """

    def __init__(self, base_url: str, username: str, password: str, timeout: float = 30.0) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=timeout)
        response = self._send("POST", "/auth/token", {"username": username, "password": password})
        response.raise_for_status()
        self.client.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def call(self, method: str, path: str, **body: Any) -> Any:
        response = self._send(method, f"/api/v2{path}", body or None)
        response.raise_for_status()
        return response.json() if response.content else None

    def trigger(
        self, dag_id: str, conf: dict[str, Any] | None = None, logical_date: datetime | None = None
    ) -> str:
        """Start a manual run of ``dag_id`` (for the data interval ending at ``logical_date``, if given); its
        run id."""
        run_id = f"manual__{datetime.now().astimezone().isoformat()}_{uuid.uuid4().hex[:8]}"
        body = {
            "dag_run_id": run_id,
            "logical_date": logical_date.isoformat() if logical_date else None,
            "conf": conf or {},
        }
        response = self._send("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)
        if response.status_code == httpx.codes.CONFLICT:
            # An earlier try created it and its answer was lost; any other conflict is not ours.
            self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")
            return run_id
        response.raise_for_status()
        return str(response.json()["dag_run_id"])

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
        while self._send("GET", f"/api/v2/dags/{dag_id}").status_code != 200:
            if time.monotonic() > deadline:
                raise TimeoutError(f"DAG {dag_id} not parsed within {timeout:.0f} s")
            time.sleep(1)

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 900.0, poll: float = 0.5) -> str:
        """Wait until a run finishes; its final state."""
        deadline = time.monotonic() + timeout
        while (state := self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]) not in FINISHED:
            if time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} of {dag_id} still {state} after {timeout:.0f} s")
            time.sleep(poll)
        return str(state)

    def close(self) -> None:
        self.client.close()

    def _send(self, method: str, url: str, body: dict[str, Any] | None = None) -> httpx.Response:
        for attempt in range(1, ATTEMPTS):
            try:
                response = self.client.request(method, url, json=body)
                if response.status_code < 500:
                    return response
            except httpx.TransportError:
                pass
            time.sleep(min(8.0, 0.5 * 2**attempt))
        return self.client.request(method, url, json=body)  # the last try: its failure is the caller's
