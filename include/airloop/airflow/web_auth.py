"""Airflow's login and roles for the Models view: who asks (the UI's session cookie or a bearer token, as for
Airflow's own API) and whether they may read a model (the auth manager's answer for its DAGs)."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails
from airflow.api_fastapi.core_api.security import get_user

#: The FastAPI dependency answering who asks: 401 without a login, 403 for a token Airflow did not sign.
current_user = get_user


def may_read_model(user: Any, model: str) -> bool:
    """Whether ``user`` may read the model: read access to its ingest DAG."""
    return get_auth_manager().is_authorized_dag(
        method="GET", details=DagDetails(id=f"{model}_ingest"), user=user
    )
