"""Shared fixtures. Airflow reads its configuration on import, so its environment is set here, first."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A private Airflow home for this test session: never ~/airflow, never another session's.
os.environ["AIRFLOW_HOME"] = tempfile.mkdtemp(prefix="airloop-test-airflow-")
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = str(ROOT / "plugins")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{os.environ['AIRFLOW_HOME']}/airflow.db"
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

PG_ADMIN_URL = os.environ.get("AIRLOOP_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def airloop_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh AIRLOOP_HOME (SQLite warehouse inside it) and the settings that go with it."""
    from airloop.core.settings import load_settings, settings

    monkeypatch.setenv("AIRLOOP_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AIRLOOP_WAREHOUSE_URL", raising=False)
    settings.cache_clear()
    yield load_settings()
    settings.cache_clear()


def _postgres_or_skip() -> None:
    import sqlalchemy as sa

    try:
        with sa.create_engine(PG_ADMIN_URL).connect():
            pass
    except sa.exc.OperationalError as exc:
        message = f"PostgreSQL unreachable at {PG_ADMIN_URL}: {exc.orig}"
        if os.environ.get("CI"):
            pytest.fail(message + " (required in CI)")
        pytest.skip(message)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database made for this test and dropped after it."""
    import sqlalchemy as sa

    _postgres_or_skip()
    name = f"airloop_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        from airloop.store.db import engine_for

        engine_for(url).dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request: pytest.FixtureRequest, airloop_home, monkeypatch: pytest.MonkeyPatch) -> str:
    """The warehouse on SQLite and on PostgreSQL, in turn; AIRLOOP_WAREHOUSE_URL points at it."""
    from airloop.core.settings import settings

    url = airloop_home.warehouse_url if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    monkeypatch.setenv("AIRLOOP_WAREHOUSE_URL", url)
    settings.cache_clear()
    return url


#: The tiers ``make test`` selects by; a test with none of them would be collected by no tier and never run.
TIERS = ("unit", "dags", "integration", "e2e", "browser")


def pytest_collection_modifyitems(config, items):
    unmarked = [item.nodeid for item in items if not any(item.get_closest_marker(t) for t in TIERS)]
    if unmarked:
        raise pytest.UsageError(
            f"{len(unmarked)} test(s) carry no tier marker ({', '.join(TIERS)}), so no tier of make test would "
            f"run them: {', '.join(unmarked[:5])}"
        )
