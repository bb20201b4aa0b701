"""The stack's Airflow users in the FAB auth manager's tables, set up as ``airloop up`` does it (the module run with
the stack's environment, the users on stdin), checked through FAB's own security manager: this pins the FAB
provider's application builder and user calls that :mod:`airloop.airflow.users` relies on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from airloop.core.settings import load_settings
from airloop.local.env import FAB_AUTH_MANAGER, component_env, isolated_env, stack_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

#: The roles of each (user, password) that matches the stored password hash, as FAB's login checks it.
CHECK = """
import json, sys
from airflow.providers.fab.auth_manager.cli_commands.utils import get_application_builder
from werkzeug.security import check_password_hash
asked = json.load(sys.stdin)
with get_application_builder() as appbuilder:
    answers = {}
    for username, password in asked:
        user = appbuilder.sm.find_user(username=username)
        good = user is not None and check_password_hash(user.password, password)
        answers[f"{username}:{password}"] = [role.name for role in user.roles] if good else None
print(json.dumps(answers))
"""


@pytest.fixture
def fab_env(tmp_path: Path) -> dict[str, str]:
    base = isolated_env(tmp_path / "home", ROOT)
    env = component_env("users", stack_env(load_settings(env=base), base))
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == FAB_AUTH_MANAGER
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env=env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    return env


def _sync(env: dict[str, str], users: list[dict[str, str]]) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-m", "airloop.airflow.users"],
        env=env,
        input=json.dumps(users),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _sign_in(env: dict[str, str], attempts: list[tuple[str, str]]) -> dict[str, list[str] | None]:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], env=env, input=json.dumps(attempts), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_users_are_created_with_their_role_then_given_a_new_password_and_role(fab_env) -> None:
    first = [
        {"username": "ana", "role": "Admin", "password": "ana-first-pass"},
        {"username": "vic", "role": "Viewer", "password": "vic-first-pass"},
    ]
    assert _sync(fab_env, first) == ["ana", "vic"]
    assert _sign_in(fab_env, [("ana", "ana-first-pass"), ("vic", "vic-first-pass"), ("vic", "wrong")]) == {
        "ana:ana-first-pass": ["Admin"],
        "vic:vic-first-pass": ["Viewer"],
        "vic:wrong": None,
    }

    again = [{"username": "vic", "role": "Op", "password": "vic-second-pass"}]
    assert _sync(fab_env, again) == [], "an existing user is updated, not created"
    assert _sign_in(fab_env, [("vic", "vic-first-pass"), ("vic", "vic-second-pass")]) == {
        "vic:vic-first-pass": None,
        "vic:vic-second-pass": ["Op"],
    }


def test_an_unknown_role_stops_the_set_up_naming_it(fab_env) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airloop.airflow.users"],
        env=fab_env,
        input=json.dumps([{"username": "x", "role": "Superhero", "password": "whatever-123"}]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode != 0
    assert "no role 'Superhero' for user 'x'" in done.stdout + done.stderr
