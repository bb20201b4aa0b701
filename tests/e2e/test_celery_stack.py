"""The production profile of the stack (``executor: celery``) on this machine: CeleryExecutor with two worker
processes on the machine's Redis (under a key prefix of its own, deleted afterwards), PostgreSQL for Airflow's
metadata, the warehouse and MLflow's stores.

The whole loop runs on it (the loop tests of ``test_loop_e2e`` again, on this stack: the first champion through
``<model>_train``; a drifted batch ingested, scored, monitored, drift recorded, the retrain and its promotion);
tasks are shared by both workers; and a worker SIGKILLed while its task waits inside its load transaction leaves
the task to another worker process, the partition loaded once.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import psutil
import pytest
import redis
import sqlalchemy as sa
import test_loop_e2e
from conftest import PG_ADMIN_URL, E2EStack, fresh_databases, running_stack

from airloop.local.components import celery_workers
from airloop.local.demo.replay import day_frame, write_partition

pytestmark = pytest.mark.e2e

# The loop, again, on this module's stack (the `stack` fixture below overrides the session's), in its order: the
# first champion, then the drifted batch and its retrain.
loop = test_loop_e2e.loop
first_champion = test_loop_e2e.first_champion
test_first_champion = test_loop_e2e.test_first_champion
test_drifted_batch_is_scored_monitored_alerted_and_retrained = (
    test_loop_e2e.test_drifted_batch_is_scored_monitored_alerted_and_retrained
)

REDIS_URL = "redis://127.0.0.1:6379/0"
INGEST = "flights_delay_ingest"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    """The Celery stack for this module (its own databases, its own Redis key prefix)."""
    prefix = f"airloop_e2e_{uuid.uuid4().hex[:12]}_"
    broker = redis.Redis.from_url(REDIS_URL)
    try:
        broker.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"Redis unreachable at {REDIS_URL}: {exc} (required when CI is set)")
        pytest.skip(f"Redis unreachable at {REDIS_URL}: {exc}")
    try:
        with (
            fresh_databases("airflow", "warehouse", "mlflow", "mlflow_auth") as urls,
            running_stack(
                tmp_path_factory.mktemp("celery"),
                AIRLOOP_EXECUTOR="celery",
                AIRLOOP_CELERY_BROKER_URL=REDIS_URL,
                AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__GLOBAL_KEYPREFIX=prefix,
                AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=urls["airflow"],
                AIRLOOP_WAREHOUSE_URL=urls["warehouse"],
                AIRLOOP_MLFLOW_BACKEND_URI=urls["mlflow"],
                AIRLOOP_MLFLOW_AUTH_URI=urls["mlflow_auth"],
                # A task whose worker died is noticed after 20 s without a heartbeat (Airflow's default: 5 min).
                AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="20",
                AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL="5",
            ) as running,
        ):
            yield running
    finally:
        keys = list(broker.scan_iter(f"{prefix}*"))
        if keys:
            broker.delete(*keys)
        broker.close()


def _worker_of(stack: E2EStack, pid: int) -> str | None:
    """The stack's Celery worker component whose process runs ``pid`` (its ancestor), if any."""
    workers = {p: name for name, p in stack.stack.pids().items() if name.startswith("worker-")}
    for ancestor in psutil.Process(pid).parents():
        if ancestor.pid in workers:
            return workers[ancestor.pid]
    return None


def test_the_profile_runs_celery_workers_on_postgresql_everywhere(stack) -> None:
    env = stack.env
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql")
    assert stack.settings.warehouse_url.startswith("postgresql")
    assert stack.settings.mlflow_backend_uri.startswith("postgresql")
    assert stack.settings.mlflow_auth_uri.startswith("postgresql")
    pids = stack.stack.pids()
    names = list(celery_workers(stack.settings))
    assert names == ["worker-1", "worker-2"] and set(names) <= set(pids)
    for name in names:
        log = stack.stack.logs_dir / f"{name}.log"
        assert f"{name}@airloop ready" in log.read_text(), f"{log} does not say the worker is ready"


def _held_load_worker(
    stack: E2EStack, warehouse: str, seen: set[int], timeout: float = 240
) -> tuple[int, str]:
    """The task process waiting on the test's partition lock (one not in ``seen``) and the worker running it."""
    waiting = sa.text(
        "select a.client_port from pg_locks l join pg_stat_activity a on a.pid = l.pid "
        "where l.locktype = 'advisory' and not l.granted and a.datname = :db"
    )
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    deadline = time.monotonic() + timeout
    try:
        while True:
            with admin.connect() as conn:
                ports = {row[0] for row in conn.execute(waiting, {"db": warehouse})}
            tasks = {c.pid for c in psutil.net_connections(kind="tcp") if c.laddr and c.laddr.port in ports}
            fresh = [pid for pid in tasks - seen if pid]
            if fresh:
                worker = _worker_of(stack, fresh[0])
                assert worker is not None, f"task process {fresh[0]} runs under no Celery worker of the stack"
                return fresh[0], worker
            assert time.monotonic() < deadline, f"no load waited on the partition lock within {timeout} s"
            time.sleep(0.2)
    finally:
        admin.dispose()


def test_a_worker_killed_while_its_task_loads_leaves_the_task_to_another_worker_and_the_day_loads_once(
    stack,
) -> None:
    """The test holds one day's partition lock, so that day's load waits inside its transaction on a worker; that
    worker's process is SIGKILLed (the stack restarts it, stopping what it left running). Airflow notices the
    task's missing heartbeat and retries it; the retry runs on another worker process, waits on the lock too, and
    loads the day once the lock is let go: the ledger and the table hold the day exactly once."""
    from airloop.model.context import ModelContext
    from airloop.store.db import partition_transaction
    from airloop.store.ledger import ledger_entries, partition_row_count

    ctx = ModelContext.load("flights_delay", stack.settings)
    day = date(2013, 11, 5)
    frame = day_frame(day)
    write_partition(frame, ctx.landing, day)
    stack.wait_for_dag(INGEST)
    at = datetime(day.year, day.month, day.day, tzinfo=UTC)
    warehouse = sa.engine.make_url(stack.settings.warehouse_url).database
    with partition_transaction(ctx.warehouse, ctx.name, day.isoformat()):
        backfill = stack.start_backfill(INGEST, at, at)
        first_pid, first_worker = _held_load_worker(stack, warehouse, seen=set())
        killed = stack.kill_and_await_restart(first_worker)
        assert not psutil.pid_exists(first_pid) or psutil.Process(first_pid).status() == psutil.STATUS_ZOMBIE
        retry_pid, retry_worker = _held_load_worker(stack, warehouse, seen={first_pid}, timeout=180)
        retry_worker_pid = stack.stack.pids()[retry_worker]
        print(
            f"load killed with {first_worker} (pid {killed}); retried on {retry_worker} (pid {retry_worker_pid})"
        )
        assert retry_worker_pid != killed

    [run] = stack.wait_for_backfill(backfill, INGEST, at, at, timeout=300)
    assert run["state"] == "success"
    tries = stack.api(
        "GET", f"/api/v2/dags/{INGEST}/dagRuns/{run['dag_run_id']}/taskInstances/ingest_batch/tries"
    )
    states = [(t["try_number"], t["state"]) for t in tries["task_instances"]]
    assert states[0] == (1, "failed") and states[-1][1] == "success", states
    [entry] = [e for e in ledger_entries(ctx.warehouse, ctx.name) if e.partition == day.isoformat()]
    assert (entry.status, entry.rows) == ("passed", len(frame))
    assert partition_row_count(ctx.warehouse, ctx.spec, day.isoformat()) == len(frame)


def test_no_secret_the_stack_made_or_was_given_appears_anywhere_after_its_runs(stack) -> None:
    """Run last in this module, after the loop and the worker kill: every password and key of the stack is
    looked for in every file of its state folder (logs of components and tasks, alerts, reports, MLflow's
    artifacts, quarantine), in dumps of its databases (Airflow's metadata, the warehouse, MLflow's runs,
    params and tags, its users) and in the command lines of its processes. Only the two 0600 files that hold
    them by design may."""
    import subprocess

    from sqlalchemy.engine import make_url

    env = stack.env
    secrets = {
        "admin password": stack.password,
        **{f"{user} password": password for user, password in stack.logins.items()},
        "MLflow service password": env["MLFLOW_TRACKING_PASSWORD"],
        "MLflow secret key": env["MLFLOW_FLASK_SERVER_SECRET_KEY"],
        "JWT secret": env["AIRFLOW__API_AUTH__JWT_SECRET"],
        "API secret key": env["AIRFLOW__API__SECRET_KEY"],
        "Fernet key": env["AIRFLOW__CORE__FERNET_KEY"],
    }
    assert all(len(value) >= 12 for value in secrets.values())
    home = stack.settings.home
    holders = {home / "passwords.json", home / "airflow-secrets.json"}
    found: list[str] = []

    def look(where: str, data: bytes) -> None:
        found.extend(f"{name} in {where}" for name, value in secrets.items() if value.encode() in data)

    files = [path for path in home.rglob("*") if path.is_file() and path not in holders]
    assert len(files) > 50, "the runs left logs, reports and models to look at"
    for path in files:
        look(str(path), path.read_bytes())
    urls = {
        "metadata": env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"],
        "warehouse": stack.settings.warehouse_url,
        "mlflow": stack.settings.mlflow_backend_uri,
        "mlflow users": stack.settings.mlflow_auth_uri,
    }
    for role, url in urls.items():
        parsed = make_url(url)
        dump = subprocess.run(
            [
                "pg_dump",
                "-h",
                parsed.host,
                "-p",
                str(parsed.port or 5432),
                "-U",
                parsed.username,
                parsed.database,
            ],
            capture_output=True,
            check=True,
            timeout=300,
        ).stdout
        assert len(dump) > 10_000, f"the {role} database dump is empty"
        look(f"the {role} database", dump)
    for pid in stack.stack.pids().values():
        for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
            try:
                look(f"the command line of {proc.pid}", " ".join(proc.cmdline()).encode())
            except psutil.NoSuchProcess:
                continue
    assert not found, found
