"""The local stack (`airloop up`): it comes up healthy, logs in, runs tasks with its settings, and stops cleanly."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import psutil
import pytest
from conftest import PG_ADMIN_URL

from airloop.local.demo.replay import day_frame, write_partition

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
            "mlflow_server_only": sorted(
                k
                for k in os.environ
                if k.startswith(("MLFLOW_BACKEND", "MLFLOW_AUTH", "MLFLOW_FLASK"))
                or k in ("AIRLOOP_MLFLOW_BACKEND_URI", "AIRLOOP_MLFLOW_AUTH_URI")
            ),
            "mlflow_user": os.environ.get("MLFLOW_TRACKING_USERNAME"),
            "umask": oct(os.umask(0o077)),
            "smtp": [smtp.host, smtp.port],
        }

    report_environment()

with DAG(dag_id="e2e_daily", schedule="@daily", start_date=datetime(2024, 1, 1), catchup=False, tags=["e2e"]):

    @task
    def interval(data_interval_start=None) -> str:
        return data_interval_start.isoformat()

    interval()

with DAG(dag_id="e2e_running_log", schedule=None, start_date=datetime(2024, 1, 1), tags=["e2e"]):

    @task
    def hold(params=None) -> None:
        import time
        from pathlib import Path

        print(f"holding for {params['marker']}", flush=True)
        release = Path(os.environ["AIRLOOP_HOME"]) / params["marker"]
        deadline = time.monotonic() + 120
        while not release.exists() and time.monotonic() < deadline:
            time.sleep(0.2)

    hold()
'''


@pytest.fixture(scope="module")
def smoke_dags(stack) -> None:
    stack.add_dag("e2e_smoke.py", SMOKE_DAGS)
    stack.wait_for_dag("e2e_smoke")
    stack.wait_for_dag("e2e_daily")
    stack.wait_for_dag("e2e_running_log")


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


def test_mlflow_answers_only_a_login_and_people_read_only(stack) -> None:
    assert httpx.get(f"{stack.mlflow_url}/health").status_code == 200
    search = f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search"
    assert httpx.post(search, json={"max_results": 10}).status_code == 401
    # People sign in with their Airflow login; they read, and cannot make what airloop owns.
    person = (stack.username, stack.password)
    found = httpx.post(search, json={"max_results": 10}, auth=person)
    assert found.status_code == 200, found.text
    refused = httpx.post(
        f"{stack.mlflow_url}/api/2.0/mlflow/registered-models/alias",
        json={"name": "flights_delay", "alias": "champion", "version": "1"},
        auth=person,
    )
    assert refused.status_code in (403, 404), refused.text
    service = (stack.env["MLFLOW_TRACKING_USERNAME"], stack.env["MLFLOW_TRACKING_PASSWORD"])
    assert httpx.post(search, json={"max_results": 10}, auth=service).status_code == 200
    assert stack.env["MLFLOW_TRACKING_URI"] == stack.mlflow_url


def test_every_server_of_the_stack_listens_on_loopback_only(stack) -> None:
    tree = set()
    for pid in stack.stack.pids().values():
        tree |= {p.pid for p in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]}
    listening = [
        c for c in psutil.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN and c.pid in tree
    ]
    ports = {c.laddr.port for c in listening}
    log_port = int(stack.env["AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT"])
    assert {stack.settings.airflow_port, stack.settings.mlflow_port, log_port} <= ports, listening
    assert {c.laddr.ip for c in listening} <= {"127.0.0.1", "::1"}, listening


def test_a_running_task_s_log_is_served_by_the_loopback_log_server(stack, smoke_dags) -> None:
    marker = f"release-{time.monotonic_ns()}"
    run_id = stack.trigger("e2e_running_log", conf={"marker": marker})
    route = f"/api/v2/dags/e2e_running_log/dagRuns/{quote(run_id)}/taskInstances/hold/logs/1"
    deadline = time.monotonic() + 120
    try:
        while True:
            state = stack.task_states("e2e_running_log", run_id).get("hold")
            if state == "running":
                text = json.dumps(stack.api("GET", route))
                if f"holding for {marker}" in text:
                    break
            assert state in (None, "scheduled", "queued", "running"), state
            assert time.monotonic() < deadline, f"no log of the running task after 120 s: {state}"
            time.sleep(0.5)
        log_server = f"http://127.0.0.1:{stack.env['AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT']}/"
        assert log_server in text, f"the log did not come from the log server: {text[:2000]}"
        assert "Could not read served logs" not in text, text[:2000]
    finally:
        (stack.settings.home / marker).touch()
    assert stack.wait_for_run("e2e_running_log", run_id)["state"] == "success"


def test_no_secret_is_on_a_command_line_and_the_state_folder_is_private(stack) -> None:
    home = stack.settings.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    auth_config = home / "mlflow" / "auth.ini"
    assert stat.S_IMODE(auth_config.stat().st_mode) == 0o600
    secrets = [
        stack.password,
        stack.env["MLFLOW_TRACKING_PASSWORD"],
        stack.env["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        stack.env["AIRFLOW__API_AUTH__JWT_SECRET"],
        stack.env["AIRFLOW__CORE__FERNET_KEY"],
        stack.settings.warehouse_url,
        stack.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
    ]
    for pid in stack.stack.pids().values():
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            try:
                line = " ".join(proc.cmdline())
            except psutil.NoSuchProcess:
                continue
            assert not [s for s in secrets if s in line], (
                f"a secret on the command line of {proc.pid}: {line}"
            )


def test_passwords_file_is_private_and_holds_the_given_password(stack) -> None:
    from airloop.local.env import passwords_file

    path = passwords_file(stack.settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"admin": stack.password, **stack.logins}
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
    assert seen["mlflow_server_only"] == [], "the MLflow server's stores and admin login stay with it"
    assert seen["mlflow_user"] == stack.env["MLFLOW_TRACKING_USERNAME"]
    assert seen["umask"] == "0o77", "what tasks write is their owner's only"
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


#: flights_delay days no other e2e test lands (the loop's run to July, the ingest tests' January).
FAULT_DAYS = [date(2013, 10, d) for d in range(1, 9)]
INGEST = "flights_delay_ingest"
OUTBOX = "airloop_alert_outbox"


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _loaded_once(ctx, expected: dict[str, int]) -> None:
    """Every day of ``expected`` ({partition: rows}) passed with its rows, in the ledger and in the table."""
    from airloop.store.ledger import ledger_entries, partition_row_count

    ledger = {e.partition: e for e in ledger_entries(ctx.warehouse, ctx.name) if e.partition in expected}
    assert {p: (e.status, e.rows) for p, e in ledger.items()} == {
        p: ("passed", n) for p, n in expected.items()
    }
    assert {p: partition_row_count(ctx.warehouse, ctx.spec, p) for p in expected} == expected


def _tasks_in(stack, state: str, first: datetime, last: datetime) -> list[str]:
    query = {"state": state, "logical_date_gte": first.isoformat(), "logical_date_lte": last.isoformat()}
    tis = stack.api("GET", f"/api/v2/dags/{INGEST}/dagRuns/~/taskInstances", query=query)["task_instances"]
    return [f"{ti['task_id']}@{ti['logical_date'][:10]}" for ti in tis]


def test_a_scheduler_killed_mid_backfill_is_restarted_and_every_day_loads_once(stack) -> None:
    """SIGKILL of the scheduler while a backfill's tasks run: the stack stops what it left in its session (the
    executor's workers, holding database sessions, and its log server), restarts it, and the backfill finishes
    with every day loaded exactly once and the ledger equal to the table."""
    from airloop.local.processes import alive, session_members
    from airloop.model.context import ModelContext

    ctx = ModelContext.load("flights_delay", stack.settings)
    expected = _land(ctx, FAULT_DAYS)
    stack.wait_for_dag(INGEST)
    first, last = _at(FAULT_DAYS[0]), _at(FAULT_DAYS[-1])
    killed = stack.stack.pids()["scheduler"]
    backfill = stack.start_backfill(INGEST, first, last, max_active_runs=4)

    deadline = time.monotonic() + 180
    while not (running := _tasks_in(stack, "running", first, last)):
        assert time.monotonic() < deadline, "no task of the backfill started within 180 s"
        time.sleep(0.2)
    orphans = [p for p in session_members(killed) if p.pid != killed]
    assert orphans, "the scheduler's executor workers run in its session"
    stack.kill_and_await_restart("scheduler")
    print(f"scheduler {killed} killed while {running} ran; its session held {len(orphans)} more processes")
    assert alive(session_members(killed)) == [], "the dead scheduler left processes running"

    runs = stack.wait_for_backfill(backfill, INGEST, first, last, timeout=600)
    assert [(r["logical_date"][:10], r["state"]) for r in runs] == [
        (d.isoformat(), "success") for d in FAULT_DAYS
    ]
    _loaded_once(ctx, expected)


def test_a_triggerer_killed_while_sensors_wait_is_restarted_and_their_days_load_when_they_land(stack) -> None:
    """SIGKILL of the triggerer while three days' landing sensors wait in it (deferred): it is restarted, its
    triggers resume in the new one, and each day loads once when it lands."""
    from airloop.model.context import ModelContext

    ctx = ModelContext.load("flights_delay", stack.settings)
    days = [date(2013, 10, d) for d in (12, 13, 14)]
    first, last = _at(days[0]), _at(days[-1])
    stack.wait_for_dag(INGEST)
    backfill = stack.start_backfill(INGEST, first, last, max_active_runs=3)
    deadline = time.monotonic() + 120
    while len(_tasks_in(stack, "deferred", first, last)) < len(days):
        assert time.monotonic() < deadline, (
            f"sensors not all deferred: {_tasks_in(stack, 'deferred', first, last)}"
        )
        time.sleep(0.2)

    stack.kill_and_await_restart("triggerer")
    expected = _land(ctx, days)

    runs = stack.wait_for_backfill(backfill, INGEST, first, last, timeout=300)
    assert [(r["logical_date"][:10], r["state"]) for r in runs] == [(d.isoformat(), "success") for d in days]
    _loaded_once(ctx, expected)


def _land(ctx, days: list[date]) -> dict[str, int]:
    expected = {}
    for day in days:
        frame = day_frame(day)
        write_partition(frame, ctx.landing, day)
        expected[day.isoformat()] = len(frame)
    return expected


def _admin_engine():
    import sqlalchemy as sa

    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def test_a_load_killed_inside_its_transaction_is_rolled_back_and_retried_once(stack) -> None:
    """SIGKILL of an ingest_batch task process inside its load transaction: the test holds one day's partition lock,
    so that day's load opens its transaction and waits on the lock (seen in PostgreSQL's pg_locks); its process is
    killed there, the transaction rolled back, the task retried, and every day of the backfill ends loaded
    exactly once."""
    import sqlalchemy as sa

    from airloop.model.context import ModelContext
    from airloop.store.db import partition_transaction

    ctx = ModelContext.load("flights_delay", stack.settings)
    days = [date(2013, 10, d) for d in range(20, 24)]
    held = days[1].isoformat()
    expected = _land(ctx, days)
    stack.wait_for_dag(INGEST)
    first, last = _at(days[0]), _at(days[-1])
    warehouse = sa.engine.make_url(stack.settings.warehouse_url).database
    waiting = sa.text(
        "select a.client_port from pg_locks l join pg_stat_activity a on a.pid = l.pid "
        "where l.locktype = 'advisory' and not l.granted and a.datname = :db"
    )
    admin = _admin_engine()
    with partition_transaction(ctx.warehouse, ctx.name, held):
        backfill = stack.start_backfill(INGEST, first, last, max_active_runs=4)
        deadline = time.monotonic() + 240
        with admin.connect() as conn:
            while not (ports := {row[0] for row in conn.execute(waiting, {"db": warehouse})}):
                assert time.monotonic() < deadline, (
                    f"no load of {held} waited on its partition lock within 240 s"
                )
                time.sleep(0.1)
        [task] = {
            psutil.Process(c.pid)
            for c in psutil.net_connections(kind="tcp")
            if c.laddr and c.laddr.port in ports
        }
        title, pid = " ".join(task.cmdline()).strip(), task.pid
        assert title.startswith("airflow worker -- "), title  # a task process: "airflow worker -- <ti id>"
        task.kill()
        task.wait(timeout=30)
    admin.dispose()

    runs = stack.wait_for_backfill(backfill, INGEST, first, last, timeout=600)
    assert [(r["logical_date"][:10], r["state"]) for r in runs] == [(d.isoformat(), "success") for d in days]
    held_run = next(r["dag_run_id"] for r in runs if r["logical_date"][:10] == held)
    tries = stack.api("GET", f"/api/v2/dags/{INGEST}/dagRuns/{held_run}/taskInstances/ingest_batch/tries")
    # Each try is a task instance of its own (its id too): the first, the killed process, failed; the second
    # validated again and loaded.
    assert [(t["try_number"], t["state"], t["pid"]) for t in tries["task_instances"]][:1] == [
        (1, "failed", pid)
    ]
    assert stack.task_states(INGEST, held_run)["ingest_batch"] == "success"
    _loaded_once(ctx, expected)


def test_a_warehouse_refusing_connections_mid_backfill_ends_with_every_day_loaded_once(stack) -> None:
    """The warehouse database refuses new connections and its sessions are cut while a backfill runs: tasks fail
    and wait for their retries; once it accepts connections again, every day ends loaded exactly once."""
    import sqlalchemy as sa

    from airloop.model.context import ModelContext

    ctx = ModelContext.load("flights_delay", stack.settings)
    days = [date(2013, 10, d) for d in range(25, 29)]
    expected = _land(ctx, days)
    stack.wait_for_dag(INGEST)
    first, last = _at(days[0]), _at(days[-1])
    warehouse = sa.engine.make_url(stack.settings.warehouse_url).database
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'alter database "{warehouse}" allow_connections false'))
            conn.execute(
                sa.text("select pg_terminate_backend(pid) from pg_stat_activity where datname = :db"),
                {"db": warehouse},
            )
        backfill = stack.start_backfill(INGEST, first, last, max_active_runs=4)
        deadline = time.monotonic() + 240
        while not (waiting := _tasks_in(stack, "up_for_retry", first, last)):
            assert time.monotonic() < deadline, "no task failed while the warehouse refused connections"
            time.sleep(0.5)
        print(f"warehouse refusing connections; waiting for a retry: {waiting}")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'alter database "{warehouse}" allow_connections true'))
        admin.dispose()

    runs = stack.wait_for_backfill(backfill, INGEST, first, last, timeout=600)
    assert [(r["logical_date"][:10], r["state"]) for r in runs] == [(d.isoformat(), "success") for d in days]
    _loaded_once(ctx, expected)


def test_four_manual_runs_of_one_day_at_once_load_it_once(stack) -> None:
    """Four manual ingest runs of the same day, triggered together (what once left three copies of a day while
    the ledger said one): every run succeeds and the day is in the warehouse once, as the ledger says."""
    from airloop.model.context import ModelContext

    ctx = ModelContext.load("flights_delay", stack.settings)
    day = date(2013, 10, 9)
    expected = _land(ctx, [day])
    stack.wait_for_dag(INGEST)
    stack.unpause(INGEST)
    # A manual run processes the last complete day before its logical date: each of these processes 2013-10-09.
    run_ids = [
        stack.api(
            "POST", f"/api/v2/dags/{INGEST}/dagRuns", logical_date=f"2013-10-10T0{hour}:00:00+00:00", conf={}
        )["dag_run_id"]
        for hour in range(1, 5)
    ]
    runs = [stack.wait_for_run(INGEST, run_id, timeout=300) for run_id in run_ids]
    assert [r["state"] for r in runs] == ["success"] * 4, [r["task_states"] for r in runs]
    _loaded_once(ctx, expected)


def test_mlflow_killed_while_a_training_runs_ends_with_one_champion_and_one_record_per_promotion(
    stack,
) -> None:
    """SIGKILL of the MLflow server while flights_delay_train trains (on ten November days it lands and
    ingests): the stack restarts it, the training ends, one new version is registered, one version holds the
    champion alias, and the event log's last champion move names it, once."""
    from mlflow import MlflowClient

    from airloop.core.events import CHAMPION_MOVES
    from airloop.model.context import ModelContext
    from airloop.store.events import events_of

    ctx = ModelContext.load("flights_delay", stack.settings)
    days = [date(2013, 11, d) for d in range(19, 29)]
    _land(ctx, days)
    stack.wait_for_dag(INGEST)
    runs = stack.backfill(INGEST, _at(days[0]), _at(days[-1]), max_active_runs=10)
    assert {r["state"] for r in runs} == {"success"}
    train = "flights_delay_train"
    stack.wait_for_dag(train)
    client = MlflowClient(stack.mlflow_url)
    before = {v.version for v in client.search_model_versions("name = 'flights_delay'")}
    run_id = stack.trigger(train, conf={"window_end": days[-1].isoformat()})
    deadline = time.monotonic() + 240
    while stack.task_states(train, run_id).get("train_challenger") != "running":
        assert time.monotonic() < deadline, f"training did not start: {stack.task_states(train, run_id)}"
        time.sleep(0.2)
    stack.kill_and_await_restart("mlflow")

    run = stack.wait_for_run(train, run_id, timeout=600)
    assert run["state"] == "success", run["task_states"]
    after = {v.version for v in client.search_model_versions("name = 'flights_delay'")}
    assert len(after - before) == 1, f"versions registered by one training: {sorted(after - before)}"
    champion = client.get_registered_model("flights_delay").aliases["champion"]
    moves = [e for e in events_of(ctx.warehouse, "flights_delay") if e.kind in CHAMPION_MOVES]
    assert moves and moves[-1].payload.version == champion
    assert len({e.payload.move_key for e in moves}) == len(moves), "a champion move recorded twice"


def test_alerts_missed_while_the_channels_were_down_go_out_once_when_they_answer(stack) -> None:
    """The alert channels are down (the catcher stopped) while a bad day is quarantined: the alert task fails
    through all its tries and the failure alert cannot go out either; both stay queued, `airloop status` lists
    them, and once the channels answer the outbox DAG delivers each once by each channel, and a second run sends
    nothing more."""
    from airloop.model.context import ModelContext
    from airloop.status import warehouse_status

    ctx = ModelContext.load("flights_delay", stack.settings)
    day = date(2013, 11, 5)
    write_partition(day_frame(day).drop(columns=["carrier"]), ctx.landing, day)
    stack.wait_for_dag(INGEST)
    stack.wait_for_dag(OUTBOX)
    catcher = stack.stack.catcher
    catcher.stop()
    try:
        stack.unpause(INGEST)
        run_id = stack.api(
            "POST", f"/api/v2/dags/{INGEST}/dagRuns", logical_date="2013-11-06T00:30:00+00:00", conf={}
        )["dag_run_id"]
        run = stack.wait_for_run(INGEST, run_id, timeout=300)
    finally:
        catcher.start()
    assert run["state"] == "failed" and run["task_states"]["alert_quarantine"] == "failed", run["task_states"]
    owed = [a for a in warehouse_status(ctx)["undelivered_alerts"] if a["run_id"] == run_id]
    assert [a["channels"] for a in owed] == [["email", "slack"], ["email", "slack"]], owed
    subjects, link = sorted(a["subject"] for a in owed), quote(run_id, safe="")

    def this_runs_alerts() -> tuple[list[str], list[str]]:
        """The e-mail subjects and Slack texts about this run (other DAGs of the stack may alert meanwhile)."""
        mails = [m["Subject"] for m in catcher.emails() if m["Subject"] in subjects]
        return sorted(mails), [h["text"] for h in catcher.webhooks() if link in h["text"]]

    assert this_runs_alerts() == ([], [])
    for _ in range(2):  # the second run finds nothing owed
        assert stack.run_dag(OUTBOX, conf={"grace_minutes": 0})["state"] == "success"
        mails, hooks = this_runs_alerts()
        assert mails == subjects and len(hooks) == 2, (mails, hooks)
    assert [a for a in warehouse_status(ctx)["undelivered_alerts"] if a["run_id"] == run_id] == []


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
