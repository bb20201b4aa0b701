"""The local stack's environment: the warehouse as an Airflow connection, which chained SQL sources name."""

from __future__ import annotations

import json

import pytest

from airloop.local.env import WAREHOUSE_CONN_ID, component_env, stack_env, warehouse_connection

pytestmark = pytest.mark.unit


def test_a_sqlite_warehouse_is_a_sqlite_connection():
    assert json.loads(warehouse_connection("sqlite:////srv/airloop/warehouse.db")) == {
        "conn_type": "sqlite",
        "host": "/srv/airloop/warehouse.db",
    }


def test_a_postgres_warehouse_keeps_host_port_user_password_database_and_options():
    url = "postgresql+psycopg://etl:s%40cret@db.internal:6543/warehouse?sslmode=require"
    assert json.loads(warehouse_connection(url)) == {
        "conn_type": "postgres",
        "host": "db.internal",
        "port": 6543,
        "login": "etl",
        "password": "s@cret",
        "schema": "warehouse",
        "extra": {"sslmode": "require"},
    }


def test_another_backend_is_refused():
    with pytest.raises(ValueError, match="only SQLite and PostgreSQL"):
        warehouse_connection("mysql://u@h/db")


def test_the_stack_defines_the_warehouse_connection_unless_the_environment_does(airloop_home):
    variable = f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"
    env = stack_env(airloop_home, {})
    assert json.loads(env[variable])["host"] == airloop_home.warehouse_url.removeprefix("sqlite:///")
    own = '{"conn_type": "postgres", "host": "elsewhere"}'
    assert stack_env(airloop_home, {variable: own})[variable] == own


def test_the_warehouse_connection_resolves_to_the_warehouse_through_the_providers_hook(
    airloop_home, monkeypatch
):
    import sqlalchemy as sa
    from airflow.sdk import BaseHook

    engine = sa.create_engine(airloop_home.warehouse_url)
    airloop_home.home.mkdir(parents=True, exist_ok=True)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE probe (x INTEGER)"))
        conn.execute(sa.text("INSERT INTO probe VALUES (7)"))
    engine.dispose()
    variable = f"AIRFLOW_CONN_{WAREHOUSE_CONN_ID.upper()}"
    monkeypatch.setenv(variable, stack_env(airloop_home, {})[variable])
    hooked = BaseHook.get_connection(WAREHOUSE_CONN_ID).get_hook().get_sqlalchemy_engine()
    with hooked.connect() as conn:
        assert conn.execute(sa.text("SELECT x FROM probe")).scalar() == 7
    hooked.dispose()


def test_airflow_waits_a_minute_for_the_sqlite_metadata_db_lock_the_api_server_5_s_and_postgres_no_argument(
    airloop_home, tmp_path
):
    import subprocess
    import sys

    env = stack_env(airloop_home, {"PATH": "/usr/bin:/bin"})
    env.update(
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{tmp_path}/airflow.db", AIRFLOW_HOME=str(tmp_path)
    )
    probe = (
        "from airflow import settings; import sqlalchemy as sa\n"
        "with settings.engine.connect() as c: print(c.execute(sa.text('PRAGMA busy_timeout')).scalar())"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "60000"  # sqlite3's default is 5000 ms
    # The API server gives up after 5 s: its action log and a request thread of its own can wait on each other.
    api = component_env("api-server", env)
    out = subprocess.run([sys.executable, "-c", probe], env=api, capture_output=True, text=True, check=True)
    assert out.stdout.split()[-1] == "5000"
    assert component_env("scheduler", env) == env
    postgres = stack_env(airloop_home, {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u@h/airflow"})
    assert not [key for key in postgres if "CONNECT_ARGS" in key]
    assert component_env("api-server", postgres) == postgres
