"""The local stack's environment: the warehouse as an Airflow connection, which chained SQL sources name."""

from __future__ import annotations

import json

import pytest

from airloop.local.env import (
    MLFLOW_SERVER_ONLY,
    MLFLOW_SERVICE_USER,
    WAREHOUSE_CONN_ID,
    component_env,
    mlflow_login,
    stack_env,
    warehouse_connection,
    write_mlflow_auth_config,
)

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
    assert component_env("scheduler", env) == {k: v for k, v in env.items() if k not in MLFLOW_SERVER_ONLY}
    postgres = stack_env(airloop_home, {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u@h/airflow"})
    assert not [key for key in postgres if "CONNECT_ARGS" in key]
    assert component_env("api-server", postgres) == {
        k: v for k, v in postgres.items() if k not in MLFLOW_SERVER_ONLY
    }


def test_only_the_mlflow_server_sees_its_stores_and_its_admin_login_and_none_is_on_a_command_line(
    airloop_home,
):
    from airloop.local.components import stack_components

    env = stack_env(airloop_home, {"PATH": "/usr/bin"})
    mlflow = component_env("mlflow", env)
    assert mlflow["MLFLOW_BACKEND_STORE_URI"] == airloop_home.mlflow_backend_uri
    assert (mlflow["MLFLOW_AUTH_ADMIN_USERNAME"], mlflow["MLFLOW_AUTH_ADMIN_PASSWORD"]) == (
        MLFLOW_SERVICE_USER,
        env["MLFLOW_TRACKING_PASSWORD"],
    )
    assert len(env["MLFLOW_TRACKING_PASSWORD"]) >= 24 and env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
        own = component_env(component, env)
        assert not set(MLFLOW_SERVER_ONLY) & set(own), component
        # Tasks sign in to MLflow as the service user.
        assert own["MLFLOW_TRACKING_USERNAME"] == MLFLOW_SERVICE_USER
        assert own["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_TRACKING_PASSWORD"]
    argv = " ".join(arg for c in stack_components(airloop_home, env) for arg in c.argv)
    assert "sqlite:" not in argv and airloop_home.mlflow_backend_uri not in argv
    assert env["MLFLOW_TRACKING_PASSWORD"] not in argv
    assert "--app-name basic-auth" in argv
    again = stack_env(airloop_home, {"PATH": "/usr/bin"})
    assert again["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_TRACKING_PASSWORD"], "generated once, then kept"


def test_a_login_in_the_environment_wins_over_the_generated_one(airloop_home):
    given = {"MLFLOW_TRACKING_USERNAME": "svc-airloop", "MLFLOW_TRACKING_PASSWORD": "from-a-vault-1234"}
    env = stack_env(airloop_home, given)
    assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == tuple(given.values())
    assert component_env("mlflow", env)["MLFLOW_AUTH_ADMIN_USERNAME"] == "svc-airloop"
    # None is generated beside it: a command in a shell without the variable is refused, not signed in as a
    # stale generated login.
    stored = json.loads((airloop_home.home / "airflow-secrets.json").read_text())
    assert "mlflow_service_password" not in stored and "fernet_key" in stored
    assert mlflow_login(airloop_home, {}) == {}


def test_a_command_signs_in_with_the_environment_or_the_stack_s_stored_login_and_creates_none(airloop_home):
    assert mlflow_login(airloop_home, {}) == {}
    assert not airloop_home.home.exists(), "reading the login creates no secrets file"
    generated = stack_env(airloop_home, {})["MLFLOW_TRACKING_PASSWORD"]
    assert mlflow_login(airloop_home, {}) == {
        "MLFLOW_TRACKING_USERNAME": MLFLOW_SERVICE_USER,
        "MLFLOW_TRACKING_PASSWORD": generated,
    }
    own = {"MLFLOW_TRACKING_USERNAME": "me", "MLFLOW_TRACKING_PASSWORD": "mine"}
    assert mlflow_login(airloop_home, own) == own


def test_mlflow_reads_the_auth_config_as_written_a_url_encoded_password_included(airloop_home, monkeypatch):
    import dataclasses
    import stat

    from mlflow.server.auth.config import read_auth_config

    url = "postgresql+psycopg2://mlflow:p%40ss%25word@db.internal:5432/mlflow_auth"
    settings = dataclasses.replace(airloop_home, mlflow_auth_uri=url)
    path = write_mlflow_auth_config(settings)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    config = read_auth_config()
    assert config.database_uri == url
    assert config.default_permission == "READ"
    assert config.auth_cache_ttl_seconds == 60, "a checked login is not hashed again on every request"
    assert config.admin_password is None, "the admin password is never written to the file"


def test_the_users_roles_are_airflow_s_roles_and_an_unknown_role_is_refused(airloop_home):
    import dataclasses

    from airloop.core.errors import ConfigError
    from airloop.local.env import airflow_users

    settings = dataclasses.replace(
        airloop_home, airflow_users="admin:admin, vera:viewer,otto:operator,uma:user"
    )
    assert airflow_users(settings) == [
        ("admin", "Admin"),
        ("vera", "Viewer"),
        ("otto", "Op"),
        ("uma", "User"),
    ]
    with pytest.raises(
        ConfigError, match="user 'x' has role 'boss'; roles are viewer, user, op, operator, admin"
    ):
        airflow_users(dataclasses.replace(airloop_home, airflow_users="admin:admin,x:boss"))
    assert stack_env(airloop_home, {})["AIRFLOW__CORE__AUTH_MANAGER"].endswith(
        "fab_auth_manager.FabAuthManager"
    )


def test_the_celery_profile_runs_its_workers_on_the_broker_and_needs_a_postgres_metadata_db(airloop_home):
    import dataclasses

    from airloop.core.errors import ConfigError
    from airloop.local.components import celery_workers, stack_components

    celery = dataclasses.replace(
        airloop_home,
        executor="celery",
        celery_workers=3,
        parallelism=8,
        celery_broker_url="redis://:pw@h:6379/2",
    )
    with pytest.raises(ConfigError, match="needs a PostgreSQL metadata DB"):
        stack_env(celery, {})
    env = stack_env(
        celery, {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://u@h/airflow", "PATH": "/usr/bin"}
    )
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:pw@h:6379/2"
    components = {c.name: c.argv for c in stack_components(celery, env)}
    workers = [name for name in components if name.startswith("worker-")]
    assert workers == ["worker-1", "worker-2", "worker-3"]
    assert celery_workers(celery) == {f"worker-{i}": f"worker-{i}@airloop" for i in (1, 2, 3)}
    assert components["worker-2"][:3] == ["airflow", "celery", "worker"]
    assert "worker-2@airloop" in components["worker-2"] and "--skip-serve-logs" in components["worker-2"]
    concurrency = [
        argv[argv.index("--concurrency") + 1] for name, argv in components.items() if name in workers
    ]
    assert concurrency == ["3", "3", "2"], "8 slots over 3 workers"
    assert not [arg for argv in components.values() for arg in argv if "pw@" in arg], (
        "the broker URL is secret"
    )
    local = {c.name for c in stack_components(airloop_home, stack_env(airloop_home, {"PATH": "/usr/bin"}))}
    assert not [name for name in local if name.startswith("worker-")]
    assert stack_env(airloop_home, {})["AIRFLOW__CORE__EXECUTOR"].endswith("WarmLocalExecutor")
