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
