"""The MLflow server as the stack runs it (its command, its environment, its auth configuration): anonymous
requests are refused, people read but cannot move the champion, the service user can; people's accounts follow
the Airflow users' passwords."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from airloop.core.settings import Settings, load_settings
from airloop.local.components import stack_components
from airloop.local.env import component_env, isolated_env, stack_env, write_mlflow_auth_config
from airloop.local.health import mlflow_problem
from airloop.local.mlflow_users import sync_readers
from airloop.local.processes import executable, tail

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
MODEL = "guarded_model"


class GuardedMlflow:
    def __init__(self, settings: Settings, env: dict[str, str]) -> None:
        self.settings = settings
        self.env = env
        self.url = f"http://127.0.0.1:{settings.mlflow_port}"
        self.service = (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"])


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[GuardedMlflow]:
    base = isolated_env(tmp_path / "home", ROOT)
    settings = load_settings(env=base)
    env = stack_env(settings, base)
    (settings.home / "mlflow").mkdir(parents=True)
    write_mlflow_auth_config(settings)
    [mlflow] = [c for c in stack_components(settings, env) if c.name == "mlflow"]
    log = tmp_path / "mlflow.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [executable(mlflow.argv[0], env), *mlflow.argv[1:]],
            env=component_env("mlflow", env),
            cwd=settings.home,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = GuardedMlflow(settings, env)
    try:
        deadline = time.monotonic() + 90
        while mlflow_problem(server.url):
            assert process.poll() is None, f"mlflow exited:\n{tail(log)}"
            assert time.monotonic() < deadline, f"mlflow not healthy:\n{tail(log)}"
            time.sleep(0.3)
        yield server
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _champion(url: str, auth: tuple[str, str]) -> str:
    answer = httpx.get(f"{url}/api/2.0/mlflow/registered-models/get", params={"name": MODEL}, auth=auth)
    assert answer.status_code == 200, answer.text
    [alias] = [a for a in answer.json()["registered_model"]["aliases"] if a["alias"] == "champion"]
    return alias["version"]


def test_anonymous_requests_get_401_people_read_but_only_the_service_user_moves_the_champion(
    guarded: GuardedMlflow, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    url = guarded.url
    assert sync_readers(url, guarded.service, {"admin": "admin-pass-1234", "ana": "ana-pass-12345"}) == [
        "admin",
        "ana",
    ]
    # The tasks' way in: the MLflow client signed in through the environment, as the stack's components are.
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(key, guarded.env[key])
    client = MlflowClient(url)
    client.create_registered_model(MODEL)
    run = client.create_run(client.create_experiment(MODEL)).info.run_id
    for _ in range(2):
        client.create_model_version(MODEL, source=f"runs:/{run}/model", run_id=run)
    client.set_registered_model_alias(MODEL, "champion", "2")

    move_to_v1 = {"name": MODEL, "alias": "champion", "version": "1"}
    alias_route = f"{url}/api/2.0/mlflow/registered-models/alias"
    anonymous = httpx.post(alias_route, json=move_to_v1)
    assert anonymous.status_code == 401
    assert httpx.get(f"{url}/api/2.0/mlflow/experiments/search", params={"max_results": 5}).status_code == 401
    assert httpx.get(f"{url}/").status_code == 401, "the UI too"
    assert httpx.get(f"{url}/health").status_code == 200, "health checks need no login"

    person = ("admin", "admin-pass-1234")
    assert _champion(url, person) == "2", "a person reads the registry"
    refused = httpx.post(alias_route, json=move_to_v1, auth=person)
    assert refused.status_code == 403, refused.text
    assert (
        httpx.delete(alias_route, params={"name": MODEL, "alias": "champion"}, auth=person).status_code == 403
    )
    assert httpx.post(alias_route, json=move_to_v1, auth=("admin", "wrong-password")).status_code == 401
    assert _champion(url, person) == "2"

    assert httpx.post(alias_route, json=move_to_v1, auth=guarded.service).status_code == 200
    assert _champion(url, person) == "1"


def test_people_s_accounts_follow_the_airflow_passwords_on_every_start(guarded: GuardedMlflow) -> None:
    url = guarded.url
    search = f"{url}/api/2.0/mlflow/experiments/search"
    assert sync_readers(url, guarded.service, {"admin": "first-password-1"}) == ["admin"]
    assert httpx.get(search, params={"max_results": 1}, auth=("admin", "first-password-1")).status_code == 200

    assert sync_readers(url, guarded.service, {"admin": "second-password-2"}) == [], "updated, not created"
    assert httpx.get(search, params={"max_results": 1}, auth=("admin", "first-password-1")).status_code == 401
    assert (
        httpx.get(search, params={"max_results": 1}, auth=("admin", "second-password-2")).status_code == 200
    )


def test_an_airflow_user_named_like_the_service_user_is_refused(guarded: GuardedMlflow) -> None:
    from airloop.core.errors import ConfigError

    with pytest.raises(ConfigError, match="service user's name"):
        sync_readers(guarded.url, guarded.service, {guarded.service[0]: "whatever-1234"})


def test_a_service_password_other_than_the_admin_s_is_refused_with_what_to_do(guarded: GuardedMlflow) -> None:
    from airloop.core.errors import ConfigError

    with pytest.raises(ConfigError, match="refuses the service user 'airloop' \\(401\\).*keeps"):
        sync_readers(guarded.url, (guarded.service[0], "not-the-first-password"), {"ana": "ana-pass-12345"})


def test_a_short_password_is_refused_before_anything_is_made(guarded: GuardedMlflow) -> None:
    from airloop.core.errors import ConfigError

    with pytest.raises(ConfigError, match="password of ana is shorter than 12 characters"):
        sync_readers(guarded.url, guarded.service, {"ana": "short", "bo": "long-enough-pass"})
    answer = httpx.get(
        f"{guarded.url}/api/2.0/mlflow/users/get", params={"username": "bo"}, auth=guarded.service
    )
    assert answer.status_code == 404, "no account made before the check"
