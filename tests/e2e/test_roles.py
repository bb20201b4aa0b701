"""Who may do what on the stack, through its REST API: a viewer reads DAGs, runs, logs and approval requests but
is refused every action (trigger, clear, approve, pause); an operator does each one."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest
from conftest import OPERATOR, ROLES_DAG_ID, VIEWER

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def viewer(stack) -> httpx.Client:
    client = stack.client_as(VIEWER)
    yield client
    client.close()


@pytest.fixture(scope="module")
def operator(stack) -> httpx.Client:
    client = stack.client_as(OPERATOR)
    yield client
    client.close()


def _await_approval_request(stack, run_id: str, timeout: float = 120) -> None:
    """Wait until the approval task asks, and the scheduler has gone round its loop once more since.

    A person answers after a scheduler loop; a test could answer within it. An answer that quick resumes the task
    before the scheduler has handled the executor's report of the task's first part ending, and Airflow 3.3.2
    then marks the resumed task failed (apache/airflow#67287, the queued-state case; only the scheduled-state
    case is guarded in 3.3.2). The scheduler's heartbeat, stamped in its loop after it handles those reports,
    says when it has gone round.
    """
    deadline = time.monotonic() + timeout
    while (state := stack.task_states(ROLES_DAG_ID, run_id).get("approve")) != "awaiting_input":
        assert state in (None, "scheduled", "queued", "running", "deferred"), state
        assert time.monotonic() < deadline, f"no approval request after {timeout} s: {state}"
        time.sleep(0.5)
    asked = datetime.now(UTC) + timedelta(seconds=1)
    while _scheduler_heartbeat(stack) <= asked:
        assert time.monotonic() < deadline, "the scheduler's heartbeat did not move"
        time.sleep(0.5)


def _scheduler_heartbeat(stack) -> datetime:
    beat = stack.api("GET", "/api/v2/monitor/health")["scheduler"]["latest_scheduler_heartbeat"]
    return datetime.fromisoformat(beat)


def test_a_viewer_reads_but_is_refused_every_action_that_an_operator_may_take(
    stack, roles_dag, viewer, operator
) -> None:
    runs = f"/api/v2/dags/{ROLES_DAG_ID}/dagRuns"
    assert viewer.get(f"/api/v2/dags/{ROLES_DAG_ID}").status_code == 200

    # Trigger: refused to the viewer (no run made), allowed to the operator.
    before = viewer.get(runs).json()["total_entries"]
    refused = viewer.post(runs, json={"logical_date": None})
    assert refused.status_code == 403, refused.text
    assert viewer.get(runs).json()["total_entries"] == before
    triggered = operator.post(runs, json={"logical_date": None})
    assert triggered.status_code == 200, triggered.text
    run_id = triggered.json()["dag_run_id"]
    _await_approval_request(stack, run_id)

    # The viewer sees the run, its task logs and the approval request...
    tis = f"{runs}/{quote(run_id)}/taskInstances"
    assert viewer.get(f"{runs}/{quote(run_id)}").status_code == 200
    assert viewer.get(f"{tis}/prepare/logs/1").status_code == 200
    hitl = f"{tis}/approve/-1/hitlDetails"
    assert viewer.get(hitl).status_code == 200
    # ... and cannot answer it; the operator can.
    answer = {"chosen_options": ["Approve"]}
    assert viewer.patch(hitl, json=answer).status_code == 403
    assert stack.task_states(ROLES_DAG_ID, run_id)["approve"] == "awaiting_input"
    approved = operator.patch(hitl, json=answer)
    assert approved.status_code == 200, approved.text
    assert approved.json()["chosen_options"] == ["Approve"]
    finished = stack.wait_for_run(ROLES_DAG_ID, run_id)
    assert finished["state"] == "success", (
        finished["task_states"],
        viewer.get(f"{tis}/approve/logs/1").text[-3000:],
    )

    # Clear a finished task: refused to the viewer, done for the operator.
    clear = {"dry_run": False, "task_ids": ["prepare"], "dag_run_id": run_id, "only_failed": False}
    assert viewer.post(f"/api/v2/dags/{ROLES_DAG_ID}/clearTaskInstances", json=clear).status_code == 403
    assert stack.task_states(ROLES_DAG_ID, run_id)["prepare"] == "success"
    cleared = operator.post(f"/api/v2/dags/{ROLES_DAG_ID}/clearTaskInstances", json=clear)
    assert cleared.status_code == 200, cleared.text
    assert [ti["task_id"] for ti in cleared.json()["task_instances"]] == ["prepare"]

    # Pause the DAG, mark a task's state: refused to the viewer.
    assert viewer.patch(f"/api/v2/dags/{ROLES_DAG_ID}", json={"is_paused": True}).status_code == 403
    assert viewer.get(f"/api/v2/dags/{ROLES_DAG_ID}").json()["is_paused"] is False
    marked = viewer.patch(f"{tis}/prepare", json={"new_state": "failed"})
    assert marked.status_code == 403


def test_without_a_login_nothing_is_read_or_done(stack, roles_dag) -> None:
    with httpx.Client(base_url=stack.base_url, timeout=30) as anonymous:
        assert anonymous.get(f"/api/v2/dags/{ROLES_DAG_ID}").status_code == 401
        assert (
            anonymous.post(f"/api/v2/dags/{ROLES_DAG_ID}/dagRuns", json={"logical_date": None}).status_code
            == 401
        )
        refused = anonymous.post("/auth/token", json={"username": VIEWER, "password": "not-it"})
        assert refused.status_code == 401
