"""The MLflow model registry, as airloop uses it: one registered model per spec, and aliases, never stages.

``challenger`` is the latest trained version, ``champion`` what scoring loads (``models:/<name>@champion``) and
``previous`` the champion it replaced (the target of a rollback). MLflow is imported when a registry is opened.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airloop.core.errors import AirloopError

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS = "previous"


class RegistryError(AirloopError):
    """The registry does not hold what was asked for (an unknown version)."""


@dataclass(frozen=True)
class Registry:
    """A model's registry entry on a tracking server: ``name`` through ``client``."""

    name: str
    client: MlflowClient
    tracking_uri: str

    @classmethod
    def open(cls, name: str, tracking_uri: str) -> Registry:
        import mlflow
        from mlflow import MlflowClient

        # Model loads (models:/...) and fluent runs go through the process-wide URI.
        mlflow.set_tracking_uri(tracking_uri)
        return cls(name, MlflowClient(tracking_uri), tracking_uri)

    def aliases(self) -> dict[str, str]:
        """Alias -> version; empty when the model is not registered yet."""
        from mlflow.exceptions import MlflowException

        try:
            aliases = self.client.get_registered_model(self.name).aliases
        except MlflowException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return {}
            raise
        # The REST API gives versions as strings, MLflow's SQL store as ints: always strings here.
        return {alias: str(version) for alias, version in aliases.items()}

    def version_of(self, alias: str) -> str | None:
        """The version ``alias`` points at now (``None``: no such alias)."""
        return self.aliases().get(alias)

    def run_id_of(self, version: str) -> str:
        """The run that trained ``version``."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client.get_model_version(self.name, version).run_id)
        except MlflowException as exc:
            raise RegistryError(f"{self.name} has no version {version}: {exc.message}") from exc

    def champion_run(self) -> tuple[str, Run] | None:
        """The champion's version and the run that trained it (its params, tags, artifacts); ``None`` without a
        champion."""
        version = self.version_of(CHAMPION)
        if version is None:
            return None
        return str(version), self.client.get_run(self.run_id_of(version))

    def load(self, version: str) -> Any:
        """The fitted pipeline of ``version`` (loaded by number: it cannot change while used)."""
        import mlflow

        return mlflow.sklearn.load_model(f"models:/{self.name}/{version}")

    def run_url(self, experiment_id: str, run_id: str) -> str | None:
        """The run's page in the MLflow UI (``None`` when the tracking URI is not a server)."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        return f"{self.tracking_uri}/#/experiments/{experiment_id}/runs/{run_id}"
