"""One context per task: the model's spec and the stack's settings, with the warehouse, the registry and the
kind of model resolved once, on first use, and handed down instead of looked up again from a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from sqlalchemy.engine import Engine

from airloop.core.errors import ConfigError
from airloop.core.settings import Settings, settings
from airloop.core.spec import ModelSpec, SpecFolder, load_spec, load_specs
from airloop.model.registry import Registry
from airloop.model.task import Task, check_spec, task_for
from airloop.store.db import open_warehouse


def load_model_spec(path: Path) -> ModelSpec:
    """One spec, checked against its schema and its kind of model; errors name the file and the field."""
    spec = load_spec(path)
    check_spec(spec, path)
    return spec


def load_model_specs(models_dir: Path, cache_dir: Path | None = None) -> SpecFolder:
    """Every spec of a models folder, each on its own (see :func:`airloop.core.spec.load_specs`); with
    ``cache_dir``, the YAML of specs read before is not parsed again (:mod:`airloop.core.yaml_cache`)."""
    return load_specs(models_dir, check=check_spec, cache_dir=cache_dir)


@dataclass(frozen=True, eq=False)
class ModelContext:
    """A model's spec and the stack's settings; its warehouse, registry and task on first use."""

    settings: Settings
    spec: ModelSpec

    @classmethod
    def load(cls, model: str, config: Settings | None = None) -> ModelContext:
        """The context of ``model``, its spec read from the configured models folder."""
        config = config or settings()
        path = config.models_dir / f"{model}.yaml"
        if not path.is_file():
            raise ConfigError(f"{path}: no spec for model {model!r} in {config.models_dir}")
        return cls(config, load_model_spec(path))

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def warehouse(self) -> Engine:
        """The warehouse, its shared tables migrated."""
        return open_warehouse(self.settings.warehouse_url)

    @cached_property
    def registry(self) -> Registry:
        """The model's entry in the MLflow registry (MLflow is imported here, not before)."""
        return Registry.open(self.spec.registered_model, self.settings.mlflow_tracking_uri)

    @cached_property
    def task(self) -> Task:
        return task_for(self.spec)

    @property
    def landing(self) -> Path:
        return self.settings.landing_for(self.name)

    @property
    def quarantine(self) -> Path:
        return self.settings.quarantine_for(self.name)
