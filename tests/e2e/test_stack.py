"""The local stack (`airloop up`): it comes up healthy, logs in, runs tasks with its settings, and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil
import pytest

pytestmark = pytest.mark.e2e

# What `airloop up` does, without depending on the CLI's other commands.
_UP = """
import sys
from airloop.core.settings import load_settings
from airloop.local.stack import Stack

try:
    with Stack(load_settings(), report=print) as stack:
        for line in stack.banner():
            print(line, flush=True)
        stack.wait()
except KeyboardInterrupt:
    sys.exit(130)
"""

SMOKE_DAGS = '''
"""Two DAGs for the stack's own tests: what tasks are given (settings, connections, an alert), and a daily one."""

from __future__ import annotations

import os
from datetime import datetime

from airflow.sdk import DAG, task

with DAG(dag_id="e2e_smoke", schedule=None, start_date=datetime(2024, 1, 1), tags=["e2e"]):

    @task
    def report_environment() -> dict:
        from airflow.providers.smtp.hooks.smtp import SmtpHook
        from airflow.sdk import BaseHook

        smtp = BaseHook.get_connection("airloop_smtp")
        with SmtpHook(smtp_conn_id="airloop_smtp") as hook:
            hook.send_email_smtp(to="oncall@example.com", subject="e2e smoke", html_content="<p>hello</p>")
        return {
            "env": {k: os.environ.get(k) for k in ("AIRLOOP_HOME", "AIRLOOP_WAREHOUSE_URL", "MLFLOW_TRACKING_URI")},
            "passwords_in_env": sorted(k for k in os.environ if k.startswith("AIRLOOP_PASSWORD_")),
            "smtp": [smtp.host, smtp.port],
        }

    report_environment()

with DAG(dag_id="e2e_daily", schedule="@daily", start_date=datetime(2024, 1, 1), catchup=False, tags=["e2e"]):

    @task
    def interval(data_interval_start=None) -> str:
        return data_interval_start.isoformat()

    interval()
'''


@pytest.fixture(scope="module")
def smoke_dags(stack) -> None:
    stack.add_dag("e2e_smoke.py", SMOKE_DAGS)
    stack.wait_for_dag("e2e_smoke")
    stack.wait_for_dag("e2e_daily")


def test_sigterm_stops_every_process(tmp_path: Path, local_stack_env: dict[str, str]) -> None:
    """`airloop up` on SQLite comes up, and SIGTERM (like Ctrl-C) stops it and every process it started."""
    env = local_stack_env
    output = tmp_path / "up.out"
    with output.open("w") as out:
        up = subprocess.Popen(
            [sys.executable, "-c", _UP], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 240
        while "Stop " not in output.read_text():
            assert up.poll() is None, f"`airloop up` exited with {up.returncode}:\n{output.read_text()}"
            assert time.monotonic() < deadline, f"not healthy after 240 s:\n{output.read_text()}"
            time.sleep(0.5)
        tree = psutil.Process(up.pid).children(recursive=True)
        assert len(tree) >= 5, [p.cmdline() for p in tree]

        up.send_signal(signal.SIGTERM)
        assert up.wait(timeout=60) == 130, output.read_text()
    finally:
        if up.poll() is None:  # a failed assertion above: still stop the stack it started
            up.send_signal(signal.SIGTERM)
            try:
                up.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
    left = [p for p in tree if _alive(p)]
    assert not left, f"left running: {[p.cmdline() for p in left]}"
    text = output.read_text()
    assert "stack healthy in" in text and "stack stopped in" in text, text
    assert env["AIRLOOP_PASSWORD_ADMIN"] not in text, "a password from the environment must never be echoed"
    assert "sqlite:///" in text  # the metadata DB shown in the banner


def test_stack_is_healthy(stack) -> None:
    health = stack.api("GET", "/api/v2/monitor/health")
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[component]["status"] == "healthy", health
    assert stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert stack.settings.warehouse_url.startswith("postgresql")


def test_login_works_and_a_wrong_password_is_refused(stack) -> None:
    good = httpx.post(
        f"{stack.base_url}/auth/token", json={"username": stack.username, "password": stack.password}
    )
    assert good.status_code == 201 and good.json()["access_token"]
    bad = httpx.post(
        f"{stack.base_url}/auth/token", json={"username": stack.username, "password": stack.password + "x"}
    )
    assert bad.status_code == 401
    assert httpx.get(f"{stack.base_url}/api/v2/dags").status_code == 401  # no token, no API


def test_mlflow_server_answers(stack) -> None:
    assert httpx.get(f"{stack.mlflow_url}/health").status_code == 200
    found = httpx.post(f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search", json={"max_results": 10})
    assert found.status_code == 200, found.text
    assert stack.env["MLFLOW_TRACKING_URI"] == stack.mlflow_url


def test_passwords_file_is_private_and_holds_the_given_password(stack) -> None:
    from airloop.local.env import passwords_file

    path = passwords_file(stack.settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"admin": stack.password}
    assert "AIRLOOP_PASSWORD_ADMIN" not in stack.env, "components and tasks do not need the passwords"
    secrets_file = stack.settings.home / "airflow-secrets.json"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600


def test_settings_pass_through_the_environment(stack) -> None:
    from airloop.core.settings import load_settings

    assert load_settings(env=stack.env) == stack.settings


def test_tasks_see_the_settings_and_alert_through_the_catcher(stack, smoke_dags) -> None:
    run = stack.run_dag("e2e_smoke")

    assert run["state"] == "success", run["task_states"]
    seen = stack.xcom("e2e_smoke", run["dag_run_id"], "report_environment")
    assert seen["env"]["AIRLOOP_HOME"] == str(stack.settings.home)
    assert seen["env"]["AIRLOOP_WAREHOUSE_URL"] == stack.settings.warehouse_url
    assert seen["env"]["MLFLOW_TRACKING_URI"] == stack.mlflow_url
    assert seen["passwords_in_env"] == []
    catcher = json.loads(stack.env["AIRFLOW_CONN_AIRLOOP_SMTP"])
    assert seen["smtp"] == [catcher["host"], catcher["port"]]
    [mail] = [m for m in (stack.catcher_dir / "email").glob("*.eml") if b"e2e smoke" in m.read_bytes()]
    mail.unlink()  # other tests on this stack count the alerts they cause


def test_backfill_runs_every_interval(stack, smoke_dags) -> None:
    runs = stack.backfill("e2e_daily", datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 3, tzinfo=UTC))

    assert [run["logical_date"][:10] for run in runs] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert {run["state"] for run in runs} == {"success"}
    assert {run["run_type"] for run in runs} == {"backfill"}


def test_stack_env_keeps_what_the_user_set(local_stack_env: dict[str, str]) -> None:
    """An AIRFLOW__ variable in the environment wins over the stack's default; airloop settings always win."""
    from airloop.core.settings import load_settings
    from airloop.local.env import stack_env

    base = {
        **local_stack_env,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://db.example/airflow",
        "AIRFLOW__CORE__DAGS_FOLDER": "/elsewhere",
    }
    env = stack_env(load_settings(env=base), base)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == "postgresql://db.example/airflow"
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(Path(base["AIRLOOP_ROOT"]) / "dags")
    assert (
        env["AIRFLOW__API_AUTH__JWT_SECRET"]
        == stack_env(load_settings(env=base), base)["AIRFLOW__API_AUTH__JWT_SECRET"]
    ), "the JWT secret is generated once and kept"
    assert len({env["AIRFLOW__API__PORT"], env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"]}) == 2


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
