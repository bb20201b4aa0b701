"""``deploy/postgres-init.sql``, the roles and databases of docker-compose.yml's PostgreSQL, run for real by psql
against this machine's PostgreSQL with names of the test's own: the `airflow` role (Airflow and airloop's tasks)
cannot reach MLflow's databases, the `mlflow` role cannot reach Airflow's or the warehouse, each owns its own; the
script refuses a missing password before making anything, and run again on an existing database (one made before
the roles, owned by `postgres`) it brings it to that layout."""

from __future__ import annotations

import base64
import hashlib
import hmac
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
PASSWORDS = {"AIRFLOW_DB_PASSWORD": "airflow-role-secret", "MLFLOW_DB_PASSWORD": "mlflow-role-secret"}


class Init:
    """The script's names under a unique prefix, and a way to run it."""

    def __init__(self, psql: str) -> None:
        self.prefix = f"airloop_roles_{uuid.uuid4().hex[:8]}"
        self.names = {
            "airflow_role": f"{self.prefix}_airflow",
            "mlflow_role": f"{self.prefix}_mlflow",
            "airflow_db": f"{self.prefix}_airflow",
            "warehouse_db": f"{self.prefix}_warehouse",
            "mlflow_db": f"{self.prefix}_mlflow",
            "mlflow_auth_db": f"{self.prefix}_mlflow_auth",
        }
        url = sa.engine.make_url(PG_ADMIN_URL)
        self.argv = [
            psql,
            "--no-psqlrc",
            "-q",
            "-h",
            url.host,
            "-p",
            str(url.port or 5432),
            "-U",
            url.username,
        ]
        self.argv += ["-d", "postgres"]
        for name, value in self.names.items():
            self.argv += ["--set", f"{name}={value}"]

    def run(self, **passwords: str | None) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in PASSWORDS}
        env.update({k: v for k, v in {**PASSWORDS, **passwords}.items() if v is not None})
        return subprocess.run([*self.argv, "--file", str(INIT_SQL)], env=env, capture_output=True, text=True)


def _admin() -> sa.Engine:
    return sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture
def init(postgres_url) -> Init:
    """An :class:`Init`; whatever it made is dropped after the test (``postgres_url``: the machine's PostgreSQL is
    reachable, or the test skips, and fails under CI)."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.fail("psql missing (PostgreSQL's client is on every machine this runs on)")
    made = Init(psql)
    yield made
    admin = _admin()
    with admin.connect() as conn:
        for key in ("airflow_db", "warehouse_db", "mlflow_db", "mlflow_auth_db"):
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{made.names[key]}" WITH (FORCE)'))
        for role in (made.names["airflow_role"], made.names["mlflow_role"]):
            conn.execute(sa.text(f'DROP ROLE IF EXISTS "{role}"'))
    admin.dispose()


@pytest.fixture
def made(init) -> dict[str, str]:
    ran = init.run()
    assert ran.returncode == 0, ran.stderr
    return init.names


def _made_by(prefix: str) -> list[str]:
    admin = _admin()
    with admin.connect() as conn:
        found = conn.execute(
            sa.text(
                "SELECT rolname FROM pg_roles WHERE rolname LIKE :p "
                "UNION ALL SELECT datname FROM pg_database WHERE datname LIKE :p"
            ),
            {"p": f"{prefix}%"},
        ).all()
    admin.dispose()
    return [row[0] for row in found]


def test_a_password_unset_or_empty_is_refused_naming_it_before_anything_is_made(init) -> None:
    unset = init.run(MLFLOW_DB_PASSWORD=None)
    assert unset.returncode != 0 and "mlflow_password" in unset.stderr, unset.stderr
    empty = init.run(AIRFLOW_DB_PASSWORD="")
    assert empty.returncode != 0 and "AIRFLOW_DB_PASSWORD is empty" in empty.stderr, empty.stderr
    assert _made_by(init.prefix) == []


def _connect(role: str, database: str, table: str = "owned_here") -> str:
    """Sign in as ``role`` to ``database`` (this machine trusts the password) and make a table: its
    current_user, or the refusal."""
    url = sa.engine.make_url(PG_ADMIN_URL).set(username=role, database=database)
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"CREATE TABLE {table} (x int)"))
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


def _roles(made: dict[str, str]) -> list[tuple]:
    admin = _admin()
    with admin.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolpassword FROM pg_authid "
                "WHERE rolname IN (:a, :m) ORDER BY rolname"
            ),
            {"a": made["airflow_role"], "m": made["mlflow_role"]},
        ).all()
    admin.dispose()
    return [tuple(row) for row in rows]


def _scram_matches(stored: str, password: str) -> bool:
    """Whether PostgreSQL's SCRAM-SHA-256 verifier ``stored`` is that of ``password`` (RFC 5802's StoredKey)."""
    method, rest = stored.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    return (
        method == "SCRAM-SHA-256"
        and base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key
    )


def test_the_roles_are_no_superusers_and_their_passwords_are_the_environment_s(made) -> None:
    roles = _roles(made)
    assert [row[1:5] for row in roles] == [(False, False, False, True)] * 2
    assert _scram_matches(roles[0][5], PASSWORDS["AIRFLOW_DB_PASSWORD"])
    assert _scram_matches(roles[1][5], PASSWORDS["MLFLOW_DB_PASSWORD"])
    assert not _scram_matches(roles[0][5], PASSWORDS["MLFLOW_DB_PASSWORD"])


def test_run_again_on_a_database_postgres_owns_it_hands_everything_to_the_role(init) -> None:
    # The layout before the roles: the airflow database made by postgres, with a table, a sequence and a view.
    airflow_db = init.names["airflow_db"]
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{airflow_db}"'))
    admin.dispose()
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=airflow_db)
    old = sa.create_engine(url)
    with old.begin() as conn:
        conn.execute(sa.text("CREATE TABLE dag_run (id serial PRIMARY KEY, note text)"))
        conn.execute(sa.text("CREATE SEQUENCE standalone_seq"))
        conn.execute(sa.text("CREATE VIEW recent AS SELECT * FROM dag_run"))
        conn.execute(sa.text("INSERT INTO dag_run (note) VALUES ('kept')"))
    old.dispose()

    first = init.run()
    assert first.returncode == 0, first.stderr
    role = init.names["airflow_role"]
    owned = sa.create_engine(url.set(username=role))
    with owned.begin() as conn:  # the role writes to the old table (and its serial) and reads the view
        conn.execute(sa.text("INSERT INTO dag_run (note) VALUES ('new')"))
        assert conn.execute(sa.text("SELECT note FROM recent ORDER BY id")).scalars().all() == ["kept", "new"]
        assert conn.execute(sa.text("SELECT nextval('standalone_seq')")).scalar_one() == 1
    owned.dispose()
    before = _roles(init.names)

    again = init.run(AIRFLOW_DB_PASSWORD="a-new-airflow-secret")
    assert again.returncode == 0, again.stderr
    after = _roles(init.names)
    assert [row[:5] for row in after] == [row[:5] for row in before]
    assert _scram_matches(after[0][5], "a-new-airflow-secret"), "the airflow role's password set again"
    assert _scram_matches(after[1][5], PASSWORDS["MLFLOW_DB_PASSWORD"])
    assert _connect(role, airflow_db, "second_table") == role
