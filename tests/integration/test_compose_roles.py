"""``deploy/postgres-init.sql``, the roles and databases of docker-compose.yml's PostgreSQL, run for real by psql
against this machine's PostgreSQL with names of the test's own: the `airflow` role (Airflow and airloop's tasks)
cannot reach MLflow's databases, the `mlflow` role cannot reach Airflow's or the warehouse, and each owns its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
INIT_SQL = ROOT / "deploy" / "postgres-init.sql"
PG_ADMIN_URL = os.environ.get("AIRLOOP_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def made(postgres_url) -> dict[str, str]:
    """The script's roles and databases under unique names, dropped after the test (``postgres_url``: the
    machine's PostgreSQL is reachable, or the test skips, and fails under CI)."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql missing (PostgreSQL's client is on every machine this runs on)")
    prefix = f"airloop_roles_{uuid.uuid4().hex[:8]}"
    names = {
        "airflow_role": f"{prefix}_airflow",
        "mlflow_role": f"{prefix}_mlflow",
        "airflow_db": f"{prefix}_airflow",
        "warehouse_db": f"{prefix}_warehouse",
        "mlflow_db": f"{prefix}_mlflow",
        "mlflow_auth_db": f"{prefix}_mlflow_auth",
    }
    url = sa.engine.make_url(PG_ADMIN_URL)
    argv = [
        psql,
        "--no-psqlrc",
        "-h",
        url.host,
        "-p",
        str(url.port or 5432),
        "-U",
        url.username,
        "-d",
        "postgres",
    ]
    for name, value in names.items():
        argv += ["--set", f"{name}={value}"]
    env = {
        **os.environ,
        "AIRFLOW_DB_PASSWORD": "airflow-role-secret",
        "MLFLOW_DB_PASSWORD": "mlflow-role-secret",
    }
    try:
        ran = subprocess.run([*argv, "--file", str(INIT_SQL)], env=env, capture_output=True, text=True)
        assert ran.returncode == 0, ran.stderr
        # Each password only through the environment: with one unset, nothing is made.
        unset = {k: v for k, v in env.items() if k != "MLFLOW_DB_PASSWORD"}
        others = [arg.replace(prefix, f"{prefix}_other") for arg in argv]
        refused = subprocess.run(
            [*others, "--file", str(INIT_SQL)], env=unset, capture_output=True, text=True
        )
        assert refused.returncode != 0 and "mlflow_password" in refused.stderr, refused.stderr
        admin = sa.create_engine(PG_ADMIN_URL)
        with admin.connect() as conn:
            leftover = conn.execute(
                sa.text("SELECT rolname FROM pg_roles WHERE rolname LIKE :p"), {"p": f"{prefix}_other%"}
            ).all()
        admin.dispose()
        assert leftover == []
        yield names
    finally:
        admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for key in ("airflow_db", "warehouse_db", "mlflow_db", "mlflow_auth_db"):
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{names[key]}" WITH (FORCE)'))
            for role in (names["airflow_role"], names["mlflow_role"]):
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


def _connect(role: str, database: str) -> str:
    """Sign in as ``role`` to ``database`` (this machine trusts the password): its current_user, or the refusal."""
    url = sa.engine.make_url(PG_ADMIN_URL).set(username=role, database=database)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("CREATE TABLE owned_here (x int)"))
            return conn.execute(sa.text("SELECT current_user")).scalar_one()
    except sa.exc.OperationalError as exc:
        return str(exc.orig)
    finally:
        engine.dispose()


def test_each_role_reaches_only_its_own_databases(made) -> None:
    airflow, mlflow = made["airflow_role"], made["mlflow_role"]
    for database in (made["airflow_db"], made["warehouse_db"]):
        assert _connect(airflow, database) == airflow
        assert "permission denied" in _connect(mlflow, database)
    for database in (made["mlflow_db"], made["mlflow_auth_db"]):
        assert _connect(mlflow, database) == mlflow
        refused = _connect(airflow, database)
        assert "permission denied" in refused and database in refused


def test_the_roles_are_no_superusers_and_their_passwords_are_set(made) -> None:
    admin = sa.create_engine(PG_ADMIN_URL)
    with admin.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles "
                "WHERE rolname IN (:a, :m) ORDER BY rolname"
            ),
            {"a": made["airflow_role"], "m": made["mlflow_role"]},
        ).all()
        with_password = conn.execute(
            sa.text("SELECT count(*) FROM pg_authid WHERE rolname IN (:a, :m) AND rolpassword IS NOT NULL"),
            {"a": made["airflow_role"], "m": made["mlflow_role"]},
        ).scalar_one()
    admin.dispose()
    assert [tuple(row)[1:] for row in rows] == [(False, False, False, True)] * 2
    assert with_password == 2
