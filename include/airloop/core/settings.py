"""Stack-wide settings: ``config/airloop.yaml``, each key overridable by ``AIRLOOP_<KEY>``.

Nothing here runs on import: call :func:`load_settings`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from airloop.core.errors import ConfigError
from airloop.core.yaml_cache import load_yaml

#: The repository (or install) root: the folder holding ``config/``. Override with ``AIRLOOP_ROOT``.
_DEFAULT_ROOT = Path(__file__).resolve().parents[3]


def project_root() -> Path:
    """The folder that holds ``config/``, ``dags/`` and ``plugins/``."""
    return Path(os.environ.get("AIRLOOP_ROOT", _DEFAULT_ROOT)).resolve()


@dataclass(frozen=True)
class Settings:
    """Resolved stack settings; every path is absolute."""

    root: Path
    home: Path
    warehouse_url: str
    mlflow_tracking_uri: str
    mlflow_backend_uri: str
    #: The MLflow server's users and permissions (its basic-auth app's database).
    mlflow_auth_uri: str
    mlflow_artifacts_dir: Path
    landing_dir: Path
    quarantine_dir: Path
    reports_dir: Path
    models_dir: Path
    airflow_port: int
    mlflow_port: int
    airflow_users: str
    parallelism: int
    #: When the alert outbox sends queued alerts again (cron, UTC).
    alert_outbox_schedule: str = "*/10 * * * *"
    #: Who runs the tasks: ``local`` (the scheduler's LocalExecutor) or ``celery`` (Celery workers on a broker).
    executor: str = "local"
    #: The Celery broker (``executor: celery``): Redis or RabbitMQ.
    celery_broker_url: str = "redis://127.0.0.1:6379/0"
    #: How many Celery worker processes the local stack runs (``executor: celery``); ``parallelism`` task slots
    #: are shared among them.
    celery_workers: int = 2
    #: A delivery of Parquet files holding more rows than this is validated and loaded a chunk of this many rows
    #: at a time (its memory bounded by the chunk, not the day); a smaller one is read whole.
    ingest_chunk_rows: int = 100_000

    @property
    def data_docs_dir(self) -> Path:
        """Where the Great Expectations Data Docs site is built."""
        return self.reports_dir / "data_docs"

    @property
    def cache_dir(self) -> Path:
        """What is computed once and kept because it can be computed again (e.g. a champion's reference rows)."""
        return self.home / "cache"

    def landing_for(self, model: str) -> Path:
        return self.landing_dir / model

    def quarantine_for(self, model: str) -> Path:
        return self.quarantine_dir / model


_FIELDS = {
    "home": str,
    "warehouse_url": str,
    "mlflow_tracking_uri": str,
    "mlflow_backend_uri": str,
    "mlflow_auth_uri": str,
    "mlflow_artifacts_dir": str,
    "landing_dir": str,
    "quarantine_dir": str,
    "reports_dir": str,
    "models_dir": str,
    "airflow_port": int,
    "mlflow_port": int,
    "airflow_users": str,
    "parallelism": int,
    "alert_outbox_schedule": str,
    "executor": str,
    "celery_broker_url": str,
    "celery_workers": int,
    "ingest_chunk_rows": int,
}
#: Settings a settings file written before they existed may leave out.
_DEFAULTS = {
    "alert_outbox_schedule": "*/10 * * * *",
    "mlflow_auth_uri": "sqlite:///{home}/mlflow/auth.db",
    "executor": "local",
    "celery_broker_url": "redis://127.0.0.1:6379/0",
    "celery_workers": 2,
    "ingest_chunk_rows": 100_000,
}
EXECUTORS = ("local", "celery")
#: The shortest password of a person's login (setting ``airflow_users``): MLflow's auth app refuses shorter ones,
#: and each Airflow user's read-only MLflow account shares its Airflow password.
MIN_PASSWORD_LENGTH = 12


def load_settings(config_file: Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read ``config/airloop.yaml`` and apply ``AIRLOOP_*`` environment overrides."""
    env = dict(os.environ if env is None else env)
    root = Path(env.get("AIRLOOP_ROOT", _DEFAULT_ROOT)).resolve()
    path = config_file or Path(env.get("AIRLOOP_CONFIG", root / "config" / "airloop.yaml"))
    try:
        raw: dict[str, Any] = load_yaml(Path(path).read_bytes(), cache_dir=None) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: settings file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: settings must be a mapping of keys, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(_FIELDS)}")
    values: dict[str, Any] = {}
    for key, kind in _FIELDS.items():
        value = env.get(f"AIRLOOP_{key.upper()}", raw.get(key, _DEFAULTS.get(key)))
        if value is None:
            raise ConfigError(f"{path}: setting {key!r} is missing (or set AIRLOOP_{key.upper()})")
        try:
            values[key] = kind(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: setting {key!r} must be {kind.__name__}, got {value!r}") from exc

    if values["executor"] not in EXECUTORS:
        raise ConfigError(
            f"{path}: setting 'executor' must be one of {', '.join(EXECUTORS)}, got {values['executor']!r}"
        )
    if values["celery_workers"] < 1:
        raise ConfigError(
            f"{path}: setting 'celery_workers' must be at least 1, got {values['celery_workers']}"
        )
    if values["ingest_chunk_rows"] < 1:
        raise ConfigError(
            f"{path}: setting 'ingest_chunk_rows' must be at least 1, got {values['ingest_chunk_rows']}"
        )
    home = _resolve(root, values["home"], home=None)

    def path_of(key: str) -> Path:
        return _resolve(root, values[key], home=home)

    return Settings(
        root=root,
        home=home,
        warehouse_url=values["warehouse_url"].replace("{home}", str(home)),
        mlflow_tracking_uri=values["mlflow_tracking_uri"].replace(
            "{mlflow_port}", str(values["mlflow_port"])
        ),
        mlflow_backend_uri=values["mlflow_backend_uri"].replace("{home}", str(home)),
        mlflow_auth_uri=values["mlflow_auth_uri"].replace("{home}", str(home)),
        mlflow_artifacts_dir=path_of("mlflow_artifacts_dir"),
        landing_dir=path_of("landing_dir"),
        quarantine_dir=path_of("quarantine_dir"),
        reports_dir=path_of("reports_dir"),
        models_dir=path_of("models_dir"),
        airflow_port=values["airflow_port"],
        mlflow_port=values["mlflow_port"],
        airflow_users=values["airflow_users"],
        parallelism=values["parallelism"],
        alert_outbox_schedule=values["alert_outbox_schedule"],
        executor=values["executor"],
        celery_broker_url=values["celery_broker_url"],
        celery_workers=values["celery_workers"],
        ingest_chunk_rows=values["ingest_chunk_rows"],
    )


def _resolve(root: Path, value: str, home: Path | None) -> Path:
    if home is not None:
        value = value.replace("{home}", str(home))
    path = Path(value).expanduser()
    return (path if path.is_absolute() else root / path).resolve()


@cache
def settings() -> Settings:
    """The settings of this process (read once)."""
    return load_settings()
