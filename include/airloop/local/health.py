"""Whether the local stack's components are up: Airflow's metadata DB migrated, MLflow, Airflow and its log server
healthy."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from celery import Celery

from airloop.core.files import read_json
from airloop.local.processes import StackError, executable, http_get, tail


def migrate_metadata(env: Mapping[str, str], home: Path, log: Path, deadline: float) -> float | None:
    """``airflow db migrate``, unless this Airflow version already migrated this very database; the seconds it
    took (``None``: it was not needed). The check costs ~0.3 s; the command ~3.5 s of CPU, on the critical path of
    every start."""
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    marker = home / "airflow" / "migrated.json"
    # A digest, not the URL: it may hold a password.
    stamp = {
        "airflow": importlib.metadata.version("apache-airflow"),
        "database": hashlib.sha256(url.encode()).hexdigest(),
        # The auth manager's own tables (FAB's users and roles) are migrated with Airflow's.
        "auth_manager": env.get("AIRFLOW__CORE__AUTH_MANAGER", ""),
        "fab": importlib.metadata.version("apache-airflow-providers-fab"),
    }
    if read_json(marker) == stamp and _has_migrated_schema(url):
        return None
    began = time.monotonic()
    try:
        with log.open("wb") as out:
            result = subprocess.run(
                [executable("airflow", env), "db", "migrate"],
                env=dict(env),
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=max(1.0, deadline - time.monotonic()),
                check=False,
            )
    except subprocess.TimeoutExpired:
        raise StackError(
            f"`airflow db migrate` did not finish within the start-up timeout; last lines of {log}:\n{tail(log)}"
        ) from None
    if result.returncode != 0:
        raise StackError(
            f"`airflow db migrate` failed (exit code {result.returncode}); last lines of {log}:\n{tail(log)}"
        )
    marker.write_text(json.dumps(stamp) + "\n")
    return time.monotonic() - began


def mlflow_problem(url: str) -> str | None:
    """What is wrong with the MLflow server at ``url`` (``None``: healthy)."""
    status, _body = http_get(f"{url}/health")
    return None if status == 200 else "mlflow: /health does not answer"


def log_server_problem(url: str) -> str | None:
    """Whether the log server at ``url`` answers (it refuses a request without Airflow's signed token: fine)."""
    status, _body = http_get(url)
    return None if status else "log-server: does not answer"


def celery_workers_problem(env: Mapping[str, str], workers: Mapping[str, str]) -> str | None:
    """Which of the Celery ``workers`` (component name: node name) does not answer a ping through the broker of
    ``env`` (Airflow's settings: ``AIRFLOW__CELERY__BROKER_URL`` and its
    ``AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__*``, a key prefix say); ``None`` when every one answers."""
    options_prefix = "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__"
    app = Celery(broker=env["AIRFLOW__CELERY__BROKER_URL"], set_as_current=False)
    app.conf.broker_transport_options = {
        key.removeprefix(options_prefix).lower(): _option(value)
        for key, value in env.items()
        if key.startswith(options_prefix)
    }
    try:
        replies = app.control.ping(destination=list(workers.values()), timeout=1.0)
    except Exception as exc:  # kombu's connection errors vary by transport
        return f"celery broker: {type(exc).__name__}: {exc}"
    finally:
        app.close()
    answered = {name for reply in replies for name in reply}
    missing = [component for component, node in workers.items() if node not in answered]
    return f"{missing[0]}: does not answer a Celery ping" if missing else None


def _option(value: str) -> Any:
    """A transport option's value as Celery wants it: a number (``visibility_timeout``) as a number."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def airflow_problem(url: str) -> str | None:
    """Which Airflow component is not healthy, as the API server at ``url`` reports it (``None``: all are)."""
    status, body = http_get(f"{url}/api/v2/monitor/health")
    if status != 200:
        return "api-server: /api/v2/monitor/health does not answer"
    health = json.loads(body)
    for key, component in (
        ("metadatabase", "api-server"),
        ("scheduler", "scheduler"),
        ("dag_processor", "dag-processor"),
        ("triggerer", "triggerer"),
    ):
        status_of = (health.get(key) or {}).get("status")
        if status_of != "healthy":
            return f"{component}: reported {status_of or 'no status'} by /api/v2/monitor/health"
    return None


def _has_migrated_schema(url: str) -> bool:
    """Whether the database still holds a migrated schema (it may have been dropped and made again)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).first() is not None
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()
