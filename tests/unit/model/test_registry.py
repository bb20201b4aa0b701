"""The registry as airloop reads it: alias versions are strings whatever the tracking store."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


def test_aliases_are_strings_from_a_sql_store_as_from_the_rest_api(tmp_path):
    """MLflow's SQL store gives alias versions as ints, its REST API as strings: compared with a version string,
    an int would never match (a challenger taken for another model than the champion)."""
    import mlflow
    from mlflow import MlflowClient

    from airloop.model.registry import Registry

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    previous = mlflow.get_tracking_uri()
    try:
        client = MlflowClient(uri)
        client.create_registered_model("m")
        run = client.create_run(client.create_experiment("m"))
        client.create_model_version("m", f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
        client.set_registered_model_alias("m", "champion", "1")
        registry = Registry("m", client, uri)
        assert registry.aliases() == {"champion": "1"}
        assert registry.version_of("champion") == "1" and registry.version_of("challenger") is None
        assert Registry("unregistered", client, uri).aliases() == {}
    finally:
        mlflow.set_tracking_uri(previous)
