"""Integration fixtures: a migrated Airflow metadata DB, the ingest DAG, and a real alert catcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """The session's Airflow metadata DB (SQLite under the private AIRFLOW_HOME), migrated once."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True, env=os.environ
    )


@pytest.fixture
def catcher(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A real SMTP server and webhook receiver; the spec's alert connections point at it."""
    from airloop.local.catcher import AlertCatcher

    with AlertCatcher(tmp_path / "alerts") as running:
        monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_SMTP", running.smtp_connection("airloop@example.com"))
        monkeypatch.setenv("AIRFLOW_CONN_AIRLOOP_SLACK", running.slack_connection())
        yield running


@pytest.fixture
def models_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of config/models that a test may edit; AIRLOOP_MODELS_DIR points at it."""
    import yaml

    from airloop.core.settings import settings

    target = tmp_path / "models"
    target.mkdir()
    for spec in (ROOT / "config" / "models").glob("*.yaml"):
        raw = yaml.safe_load(spec.read_text())
        raw["source"]["wait_timeout_minutes"] = 0.05  # a missing partition fails after 3 s, not an hour
        raw["source"]["poke_interval_seconds"] = 0.5
        (target / spec.name).write_text(json.dumps(raw, default=str))
    monkeypatch.setenv("AIRLOOP_MODELS_DIR", str(target))
    settings.cache_clear()
    return target


@pytest.fixture
def env(airflow_db, airloop_home, warehouse_url, models_dir, catcher):
    """For runs of the ingest DAG (``ingest_runs``): the settings, the flights_delay spec, the warehouse and the
    catcher."""
    from airloop.core.settings import load_settings
    from airloop.core.spec import load_spec
    from airloop.store.db import engine_for

    config = load_settings()
    spec = load_spec(models_dir / "flights_delay.yaml")
    return config, spec, engine_for(warehouse_url), catcher
