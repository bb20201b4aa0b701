from __future__ import annotations

from pathlib import Path

import pytest

from airloop.core.errors import ConfigError
from airloop.core.settings import load_settings

pytestmark = pytest.mark.unit


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "airloop.yaml"
    path.write_text(text)
    return path


def test_unknown_setting_is_named(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting.*warehouse_uri"):
        load_settings(_config(tmp_path, "warehouse_uri: x\n"), env={})


def test_bad_integer_names_the_setting(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="'airflow_port' must be int"):
        load_settings(env={"AIRLOOP_AIRFLOW_PORT": "eighty"})


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="settings file not found"):
        load_settings(tmp_path / "nope.yaml", env={})


def test_defaults_live_under_home():
    config = load_settings(env={})
    assert config.home == config.root / ".airloop"
    assert config.warehouse_url == f"sqlite:///{config.home}/warehouse.db"
    assert config.landing_for("m") == config.home / "landing" / "m"
    assert config.mlflow_tracking_uri == "http://127.0.0.1:5000"


def test_environment_overrides(tmp_path):
    config = load_settings(
        env={
            "AIRLOOP_HOME": str(tmp_path),
            "AIRLOOP_WAREHOUSE_URL": "postgresql://u@h/db",
            "AIRLOOP_MLFLOW_PORT": "5555",
        }
    )
    assert config.home == tmp_path
    assert config.quarantine_dir == tmp_path / "quarantine"
    assert config.warehouse_url == "postgresql://u@h/db"
    assert config.mlflow_tracking_uri == "http://127.0.0.1:5555"


def test_an_unknown_executor_or_no_celery_worker_is_refused_naming_the_setting():
    with pytest.raises(ConfigError, match="'executor' must be one of local, celery, got 'kubernetes'"):
        load_settings(env={"AIRLOOP_EXECUTOR": "kubernetes"})
    with pytest.raises(ConfigError, match="'celery_workers' must be at least 1, got 0"):
        load_settings(env={"AIRLOOP_EXECUTOR": "celery", "AIRLOOP_CELERY_WORKERS": "0"})
    assert load_settings(env={"AIRLOOP_EXECUTOR": "celery"}).celery_workers == 2


def test_a_settings_file_written_before_the_newer_settings_gets_their_defaults(tmp_path):
    old = (Path(__file__).resolve().parents[3] / "config" / "airloop.yaml").read_text()
    for key in ("mlflow_auth_uri", "executor", "celery_broker_url", "celery_workers"):
        old = "\n".join(line for line in old.splitlines() if not line.startswith(f"{key}:"))
    settings = load_settings(_config(tmp_path, old), env={})
    assert (settings.executor, settings.celery_workers) == ("local", 2)
    assert settings.mlflow_auth_uri == f"sqlite:///{settings.home}/mlflow/auth.db"
