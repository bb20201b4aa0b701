"""People's MLflow accounts, kept in step with the stack's Airflow users: the same names and passwords, read-only.

The MLflow server runs its basic-auth app (:func:`airloop.local.env.write_mlflow_auth_config`): anonymous requests
get 401, every signed-in user may read everything, and only the service user (its admin, which creates the
registered models) may change a model or move its aliases. The calls go through MLflow's own REST helpers and
its auth app's routes (what :class:`mlflow.server.auth.client.AuthServiceClient` does, with the admin's login
given here rather than read from this process's environment).
"""

from __future__ import annotations

from collections.abc import Mapping

from mlflow.server.auth.routes import CREATE_USER, GET_USER, UPDATE_USER_PASSWORD
from mlflow.utils.rest_utils import MlflowHostCreds, http_request, verify_rest_response

from airloop.core.errors import ConfigError


def sync_readers(url: str, admin: tuple[str, str], readers: Mapping[str, str]) -> list[str]:
    """Give every ``{user: password}`` in ``readers`` a read-only MLflow account with that password, signed in as
    ``admin`` (user, password); the users created (the others had their password set again). Safe to repeat."""
    if admin[0] in readers:
        raise ConfigError(
            f"Airflow user {admin[0]!r} has the MLflow service user's name: rename one of them "
            "(setting airflow_users, or MLFLOW_TRACKING_USERNAME)"
        )
    creds = MlflowHostCreds(url, username=admin[0], password=admin[1])
    created = []
    for user, password in readers.items():
        found = http_request(creds, GET_USER, "GET", params={"username": user})
        if found.status_code == 404:
            answer = http_request(creds, CREATE_USER, "POST", json={"username": user, "password": password})
            verify_rest_response(answer, CREATE_USER)
            created.append(user)
        else:
            verify_rest_response(found, GET_USER)
            answer = http_request(
                creds, UPDATE_USER_PASSWORD, "PATCH", json={"username": user, "password": password}
            )
            verify_rest_response(answer, UPDATE_USER_PASSWORD)
    return created
