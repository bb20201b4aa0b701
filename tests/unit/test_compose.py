"""``docker-compose.yml`` and the ``Dockerfile``: the file validates (Debian's docker-compose, no daemon needed), and
it runs the topology of the tested Celery profile with the same settings, so the two cannot drift apart.

Every setting the local stack gives its components with ``executor: celery`` (:func:`airloop.local.env.stack_env`)
must be set in the compose file's Airflow environment, with the same value unless it is one of
:data:`DEPLOYMENT_SPECIFIC` (a host, a URL, a secret: set per deployment) or :data:`LOCAL_ONLY` (what only a stack
of processes on one machine needs, each with the reason). A new setting of the profile fails this test until the
compose file has it too or it is listed here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from airloop.core.settings import load_settings
from airloop.local.components import stack_components
from airloop.local.env import FAB_AUTH_MANAGER, MLFLOW_SERVER_ONLY, stack_env

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
AIRFLOW_SERVICES = {
    "api-server": "airflow-apiserver",
    "scheduler": "airflow-scheduler",
    "dag-processor": "airflow-dag-processor",
    "triggerer": "airflow-triggerer",
    "worker-1": "airflow-worker",
}
#: Set in both, with values of their own deployment.
DEPLOYMENT_SPECIFIC = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW__CELERY__BROKER_URL",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
    "AIRFLOW__API__BASE_URL",
    "AIRFLOW__API__SECRET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
    "AIRFLOW__CORE__PARALLELISM",
    "AIRFLOW_CONN_AIRLOOP_WAREHOUSE",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_PASSWORD",
    "OMP_NUM_THREADS",
    "AIRLOOP_HOME",
    "AIRLOOP_WAREHOUSE_URL",
    "AIRLOOP_MLFLOW_TRACKING_URI",
    "AIRLOOP_CELERY_BROKER_URL",
    "AIRLOOP_PARALLELISM",
}
#: What only the local stack of processes needs, and why.
LOCAL_ONLY = {
    "AIRFLOW_HOME": "the image's own (/opt/airflow)",
    "AIRFLOW__API__HOST": "loopback on one machine; the api-server container listens on its network (0.0.0.0)",
    "AIRFLOW__API__PORT": "the container's port is fixed (8080); the host port is in `ports`",
    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "loopback for the local log server; containers are reached by their names",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "Airflow's default in containers (each worker serves its logs)",
    "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": "Airflow's default in containers",
    "MLFLOW_FLASK_SERVER_SECRET_KEY": "the mlflow service's own (MLFLOW_SECRET_KEY in .env)",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "the mlflow service's own",
    "AIRLOOP_ROOT": "the image's (/opt/airloop, in the Dockerfile)",
    "AIRLOOP_CONFIG": "config/airloop.yaml of the image",
    "AIRLOOP_MODELS_DIR": "config/models of the image",
    "AIRLOOP_MLFLOW_ARTIFACTS_DIR": "the mlflow service's --artifacts-destination",
    "AIRLOOP_LANDING_DIR": "under AIRLOOP_HOME, the shared state volume",
    "AIRLOOP_QUARANTINE_DIR": "under AIRLOOP_HOME, the shared state volume",
    "AIRLOOP_REPORTS_DIR": "under AIRLOOP_HOME, the shared state volume",
    "AIRLOOP_AIRFLOW_PORT": "the local stack's ports",
    "AIRLOOP_MLFLOW_PORT": "the local stack's ports",
    "AIRLOOP_AIRFLOW_USERS": "AIRLOOP_USERS_JSON of the init service, with the passwords",
    "AIRLOOP_ALERT_OUTBOX_SCHEDULE": "config/airloop.yaml's default",
    "AIRLOOP_CELERY_WORKERS": "`docker compose up --scale airflow-worker=N`",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def profile() -> dict[str, str]:
    """What the tested Celery profile gives its components (the keys that configure Airflow, MLflow and airloop)."""
    base = {
        "AIRLOOP_EXECUTOR": "celery",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql+psycopg2://postgres@127.0.0.1/airflow",
        "PATH": "/usr/bin",
    }
    settings = load_settings(env={**base, "AIRLOOP_HOME": "/tmp/airloop-compose-test"})
    env = stack_env(settings, base)
    return {
        key: value
        for key, value in env.items()
        if key.startswith(
            ("AIRFLOW__", "AIRFLOW_CONN_", "AIRLOOP_", "MLFLOW_", "GX_", "OMP_", "AIRFLOW_HOME")
        )
        and key not in MLFLOW_SERVER_ONLY
    }


def test_the_compose_file_validates_with_docker_compose(tmp_path) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        message = "docker-compose missing: `make test` installs Debian's docker-compose package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    shutil.copy(COMPOSE, tmp_path / "docker-compose.yml")
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    # deploy/example.env with every value filled in, as a deployment fills it.
    example = (ROOT / "deploy" / "example.env").read_text()
    filled = re.sub(r"^([A-Z_]+)=$", r"\1=filled-in", example, flags=re.MULTILINE)
    (tmp_path / ".env").write_text(filled)
    checked = subprocess.run([binary, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    # A required secret left out is refused, naming it.
    (tmp_path / ".env").write_text("\n".join(line for line in filled.splitlines() if "FERNET" not in line))
    refused = subprocess.run([binary, "config", "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode != 0 and "AIRFLOW_FERNET_KEY" in refused.stderr


def test_every_setting_of_the_tested_profile_is_in_the_compose_file(compose, profile) -> None:
    environment = compose["x-airflow-env"]
    missing = sorted(set(profile) - set(environment) - set(LOCAL_ONLY))
    assert not missing, f"set by the tested profile, not in docker-compose.yml: {missing}"
    differ = {
        key: (profile[key], environment[key])
        for key in profile
        if key in environment and key not in DEPLOYMENT_SPECIFIC and str(environment[key]) != profile[key]
    }
    assert not differ, f"(profile, compose) differ: {differ}"
    stale = sorted(set(LOCAL_ONLY) & set(environment))
    assert not stale, f"listed as local only but set in docker-compose.yml: {stale}"
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert environment["AIRFLOW__CORE__AUTH_MANAGER"] == FAB_AUTH_MANAGER


def test_the_services_run_the_profile_s_components_with_the_same_commands(compose, profile) -> None:
    services = compose["services"]
    settings = load_settings(
        env={"AIRLOOP_EXECUTOR": "celery", "AIRLOOP_HOME": "/tmp/airloop-compose-test", "PATH": "/usr/bin"}
    )
    components = {c.name: c.argv for c in stack_components(settings, {**profile, "PATH": "/usr/bin"})}

    def words(argv: list[str]) -> list[str]:  # the program and its subcommands, before the first option
        return argv[: next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))]

    for component, service in AIRFLOW_SERVICES.items():
        command = services[service]["command"]
        assert words(command) == words(components[component]), (service, command)
        assert services[service]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    worker = services["airflow-worker"]
    assert "container_name" not in worker and "ports" not in worker, "scales with --scale"
    mlflow = services["mlflow"]
    assert mlflow["command"][:6] == ["python", "-m", "mlflow", "server", "--app-name", "basic-auth"]
    assert "mlflow:5000" in mlflow["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"], "the workers' Host header"
    assert "--backend-store-uri" not in mlflow["command"], "stores through the environment"
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql")
    assert {"postgres", "redis", "alert-catcher", "airflow-init", "mlflow-init"} <= set(services)
    assert services["airflow-init"]["restart"] == services["mlflow-init"]["restart"] == "no"
    assert "airloop.local.mlflow_users" in services["mlflow-init"]["command"][-1]
    for service in AIRFLOW_SERVICES.values():
        assert (
            services[service]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        )
    published = [port for s in services.values() for port in s.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published), published


def test_no_secret_is_written_in_the_compose_file(compose) -> None:
    def leaves(node, key=None):  # (the key that holds it, a scalar value), at any depth
        if isinstance(node, dict):
            for inner, value in node.items():
                yield from leaves(value, inner)
        elif isinstance(node, list):
            for item in node:
                yield from leaves(item, key)
        else:
            yield key, node

    secret_names = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$")
    checked = []
    for key, value in leaves(compose):
        if isinstance(key, str) and secret_names.search(key):
            checked.append(key)
            assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", str(value)), (
                f"{key} is written in docker-compose.yml"
            )
    assert {"POSTGRES_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "MLFLOW_AUTH_ADMIN_PASSWORD"} <= set(checked)
    for url in re.findall(r"postgresql\+psycopg2://[^\s'\"]+", COMPOSE.read_text()):
        assert ":" not in url.split("//", 1)[1].split("@")[0], f"a password in {url}"


def test_the_image_is_the_official_airflow_image_of_the_lock_with_airloop_installed_from_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    lock = (ROOT / "requirements.lock").read_text()
    [airflow] = re.findall(r"^apache-airflow==([\d.]+)$", lock, re.MULTILINE)
    [base] = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert base == f"apache/airflow:{airflow}-python3.11"
    assert "pip install --no-deps -r /opt/airloop/requirements-runtime.lock" in dockerfile
    for folder in ("include", "dags", "plugins", "config", "deploy"):
        assert f"COPY --chown=airflow:root {folder} /opt/airloop/{folder}" in dockerfile


def test_each_service_signs_in_to_postgresql_as_its_own_role(compose) -> None:
    services = compose["services"]
    users = lambda text: set(re.findall(r"postgresql\+psycopg2://(\w+)@", text))  # noqa: E731
    environment = compose["x-airflow-env"]
    assert users(yaml.safe_dump(environment)) == {"airflow"}
    assert json.loads(environment["AIRFLOW_CONN_AIRLOOP_WAREHOUSE"])["login"] == "airflow"
    assert environment["PGPASSWORD"] == "${AIRFLOW_DB_PASSWORD:?set AIRFLOW_DB_PASSWORD in .env}"
    mlflow = services["mlflow"]["environment"]
    auth_ini = (ROOT / "deploy" / "mlflow-auth.ini").read_text()
    assert users(yaml.safe_dump(mlflow)) == users(auth_ini) == {"mlflow"}
    assert mlflow["PGPASSWORD"] == "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD in .env}"
    # The superuser's password is the postgres service's alone.
    holders = [name for name, service in services.items() if "POSTGRES_PASSWORD" in yaml.safe_dump(service)]
    assert holders == ["postgres"] and "POSTGRES_PASSWORD" not in yaml.safe_dump(environment)
    # The roles are made by deploy/postgres-init.sh (the script tests/integration/test_compose_roles.py runs).
    mounts = services["postgres"]["volumes"]
    script = (ROOT / "deploy" / "postgres-init.sh").read_text()
    [sql_mount] = [m for m in mounts if m.startswith("./deploy/postgres-init.sql:")]
    assert "./deploy/postgres-init.sh:/docker-entrypoint-initdb.d/airloop.sh:ro" in mounts
    assert f"--file {sql_mount.split(':')[1]}" in script
    # What the SQL includes lies beside it in the container too.
    folder = sql_mount.split(":")[1].rsplit("/", 1)[0]
    included = re.findall(r"^\\ir (\S+)", (ROOT / "deploy" / "postgres-init.sql").read_text(), re.MULTILINE)
    assert included and all(f"./deploy/{name}:{folder}/{name}:ro" in mounts for name in included)
    # Every name the SQL uses, set to the names the services sign in with.
    names = dict(re.findall(r"--set (\w+)=(\w+)", script))
    assert names == {
        "airflow_role": "airflow",
        "airflow_db": "airflow",
        "warehouse_db": "warehouse",
        "mlflow_role": "mlflow",
        "mlflow_db": "mlflow",
        "mlflow_auth_db": "mlflow_auth",
    }
    assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres:5432/airflow")
    assert environment["AIRLOOP_WAREHOUSE_URL"].endswith("@postgres:5432/warehouse")
    assert mlflow["MLFLOW_BACKEND_STORE_URI"].endswith("@postgres:5432/mlflow") and "/mlflow_auth" in auth_ini
    assert services["postgres"]["healthcheck"]["test"][2:4] == ["-h", "127.0.0.1"], "over TCP, after the init"
    assert not [m for m in mounts if m.endswith(".sql:ro") and "docker-entrypoint-initdb.d" in m]


def _pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", path.read_text(), re.MULTILINE))


def test_the_image_s_lock_is_the_lock_without_the_dev_tools() -> None:
    full, runtime = _pins(ROOT / "requirements.lock"), _pins(ROOT / "requirements-runtime.lock")
    differ = {
        name: (full.get(name), version) for name, version in runtime.items() if full.get(name) != version
    }
    assert not differ, f"requirements-runtime.lock differs from requirements.lock (run `make lock`): {differ}"
    dev = re.search(r"^dev = \[(.*?)\]", (ROOT / "pyproject.toml").read_text(), re.MULTILINE | re.DOTALL)
    tools = set(re.findall(r'"([A-Za-z0-9_.-]+)', dev.group(1)))
    assert tools and tools <= set(full) and not tools & set(runtime), tools & set(runtime)
    assert {"apache-airflow", "mlflow", "great-expectations", "evidently"} <= set(runtime)
