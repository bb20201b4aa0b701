"""airloop's Airflow plugin: the Models view, mounted in the API server at /airloop and listed in the UI's
navigation, behind Airflow's own login and roles. Wiring only."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airloop.airflow.web_auth import current_user, may_read_model
from airloop.core.settings import settings
from airloop.web.app import models_app


class AirloopPlugin(AirflowPlugin):
    name = "airloop"
    fastapi_apps = [
        {
            "app": models_app(settings=settings, user=current_user, may_read=may_read_model),
            "url_prefix": "/airloop",
            "name": "airloop models",
        }
    ]
    external_views = [
        {"name": "Models", "href": "/airloop/models", "destination": "nav", "url_route": "airloop-models"}
    ]
