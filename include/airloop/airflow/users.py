"""The stack's Airflow users in the FAB auth manager's tables: each created with its role and password, or given
them again (a password changed through ``AIRLOOP_PASSWORD_<USER>`` takes effect on the next start).

Run as ``python -m airloop.airflow.users`` with the stack's environment (after ``airflow db migrate``), the
users as JSON on stdin, ``[{"username": ..., "role": ..., "password": ...}]``: passwords never go on a command
line. It prints the names of the users it created, as JSON. It works through the FAB provider's application
builder and security manager, as the provider's own ``airflow users`` commands do
(``tests/integration/test_airflow_users.py`` pins that).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping

from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder

from airloop.core.settings import MIN_PASSWORD_LENGTH


def sync_users(users: Iterable[Mapping[str, str]]) -> list[str]:
    """Create each user, or set its role and password again; the names of the users created."""
    created = []
    with get_application_builder() as appbuilder:
        security = appbuilder.sm
        for user in users:
            if len(user.get("password") or "") < MIN_PASSWORD_LENGTH:
                raise SystemExit(
                    f"user {user['username']!r} needs a password of {MIN_PASSWORD_LENGTH} characters or more"
                )
            role = security.find_role(user["role"])
            if role is None:
                raise SystemExit(f"Airflow has no role {user['role']!r} for user {user['username']!r}")
            found = security.find_user(username=user["username"])
            if found is None:
                added = security.add_user(
                    username=user["username"],
                    first_name=user["username"],
                    last_name="(airloop)",
                    email=f"{user['username']}@airloop.invalid",
                    role=role,
                    password=user["password"],
                )
                if not added:
                    raise SystemExit(f"Airflow did not add user {user['username']!r}")
                created.append(user["username"])
            else:
                found.roles = [role]
                security.update_user(found)
                security.reset_password(found.id, user["password"])
    return created


def main() -> None:
    created = sync_users(json.load(sys.stdin))
    sys.stdout.write(json.dumps(created) + "\n")


if __name__ == "__main__":
    main()
