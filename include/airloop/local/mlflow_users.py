"""People's MLflow accounts, kept in step with the stack's Airflow users: the same names and passwords, read-only.

The MLflow server runs its basic-auth app (:func:`airloop.local.env.write_mlflow_auth_config`): anonymous requests
get 401, every signed-in user may read everything, and only the service user (its admin, which creates the
registered models) may change a model or move its aliases. The calls go through MLflow's own REST helpers and
its auth app's routes (what :class:`mlflow.server.auth.client.AuthServiceClient` does, with the admin's login
given here rather than read from this process's environment).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping

from mlflow.server.auth.routes import CREATE_USER, GET_USER, UPDATE_USER_PASSWORD
from mlflow.utils.rest_utils import MlflowHostCreds, http_request, verify_rest_response

from airloop.core.errors import ConfigError
from airloop.core.settings import MIN_PASSWORD_LENGTH


def check_readers(service_user: str, readers: Mapping[str, str]) -> None:
    """Refuse, before anything is made, readers MLflow would refuse: a password shorter than
    :data:`MIN_PASSWORD_LENGTH`, or a reader named like the service user."""
    if service_user in readers:
        raise ConfigError(
            f"Airflow user {service_user!r} has the MLflow service user's name: rename one of them "
            "(setting airflow_users, or MLFLOW_TRACKING_USERNAME)"
        )
    short = [user for user, password in readers.items() if len(password) < MIN_PASSWORD_LENGTH]
    if short:
        raise ConfigError(
            f"the password of {', '.join(short)} is shorter than {MIN_PASSWORD_LENGTH} characters, which MLflow "
            "refuses: set a longer one (AIRLOOP_PASSWORD_<USER>)"
        )


def sync_readers(url: str, admin: tuple[str, str], readers: Mapping[str, str]) -> list[str]:
    """Give every ``{user: password}`` in ``readers`` a read-only MLflow account with that password, signed in as
    ``admin`` (user, password); the users created (the others had their password set again). Safe to repeat.

    The MLflow server makes its admin once, with the password it is first given: a different one later is refused
    here with what to do, not after a task's first call."""
    check_readers(admin[0], readers)
    creds = MlflowHostCreds(url, username=admin[0], password=admin[1])
    created = []
    for user, password in readers.items():
        found = http_request(creds, GET_USER, "GET", params={"username": user})
        if found.status_code in (401, 403):
            raise ConfigError(
                f"MLflow at {url} refuses the service user {admin[0]!r} ({found.status_code}): its password is not "
                "the one the MLflow server made its admin with, which the server keeps. Set "
                "MLFLOW_TRACKING_PASSWORD back, or change the admin's password in MLflow (its update-password "
                "API, signed in with the old one)"
            )
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


def main() -> None:
    """``python -m airloop.local.mlflow_users``: the users on stdin (``[{"username", "password", ...}]``, the
    Airflow users' JSON), the server and the service user's login from ``MLFLOW_TRACKING_*`` (a deployment's
    init step; ``airloop up`` calls :func:`sync_readers` itself)."""
    users = {user["username"]: user["password"] for user in json.load(sys.stdin)}
    admin = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"])
    created = sync_readers(os.environ["MLFLOW_TRACKING_URI"], admin, users)
    sys.stdout.write(json.dumps(created) + "\n")


if __name__ == "__main__":
    main()
